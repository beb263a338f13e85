#include "api/kube/request_body.h"

#include <algorithm>
#include <utility>

namespace podless::api::kube {
namespace {

// A chunk-size line or trailer line longer than this is not a client's.
constexpr size_t kMaxLineBytes = 4096;

}  // namespace

RequestBody::RequestBody(int64_t content_length, bool chunked, size_t limit)
    : phase_(chunked ? Phase::kSize : Phase::kLength), limit_(limit) {
  if (!chunked) {
    if (content_length < 0) content_length = 0;
    remaining_ = static_cast<uint64_t>(content_length);
    // A length over the limit is refused before a byte is read.
    if (remaining_ > limit_) state_ = State::kTooLarge;
    if (remaining_ == 0 && state_ == State::kIncomplete) state_ = State::kDone;
  }
}

RequestBody::State RequestBody::Fail(std::string message) {
  error_ = std::move(message);
  state_ = State::kError;
  return state_;
}

RequestBody::State RequestBody::Feed(std::string_view bytes, size_t* consumed) {
  *consumed = 0;
  while (state_ == State::kIncomplete && *consumed < bytes.size()) {
    std::string_view rest = bytes.substr(*consumed);
    if (phase_ == Phase::kLength || phase_ == Phase::kData) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
      body_.append(rest.data(), n);
      *consumed += n;
      remaining_ -= n;
      if (remaining_ > 0) continue;
      if (phase_ == Phase::kLength) {
        state_ = State::kDone;
      } else {
        phase_ = Phase::kDataEnd;
      }
      continue;
    }
    // A line: chunk size, the CRLF after a chunk's data, or a trailer.
    const size_t lf = rest.find('\n');
    const size_t take = lf == std::string_view::npos ? rest.size() : lf + 1;
    line_.append(rest.data(), take);
    *consumed += take;
    if (line_.size() > kMaxLineBytes) return Fail("chunked body: a line too long");
    if (lf == std::string_view::npos) continue;
    OnLine();
    line_.clear();
  }
  return state_;
}

RequestBody::State RequestBody::OnLine() {
  if (line_.size() < 2 || line_[line_.size() - 2] != '\r') {
    return Fail("chunked body: a line does not end in CRLF");
  }
  const std::string_view line(line_.data(), line_.size() - 2);
  switch (phase_) {
    case Phase::kDataEnd:
      if (!line.empty()) return Fail("chunked body: chunk data longer than its size");
      phase_ = Phase::kSize;
      return state_;
    case Phase::kTrailer:
      if (line.empty()) state_ = State::kDone;
      return state_;
    case Phase::kSize: {
      uint64_t size = 0;
      size_t i = 0;
      for (; i < line.size(); ++i) {
        const char c = line[i];
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        if (digit < 0) break;
        if (size > (uint64_t{1} << 40)) return Fail("chunked body: chunk size too large");
        size = size * 16 + static_cast<uint64_t>(digit);
      }
      if (i == 0 || (i < line.size() && line[i] != ';' && line[i] != ' ' && line[i] != '\t')) {
        return Fail("chunked body: invalid chunk size");
      }
      if (size == 0) {
        phase_ = Phase::kTrailer;
        return state_;
      }
      if (body_.size() + size > limit_) {
        state_ = State::kTooLarge;
        return state_;
      }
      remaining_ = size;
      phase_ = Phase::kData;
      return state_;
    }
    default:
      return state_;
  }
}

}  // namespace podless::api::kube
