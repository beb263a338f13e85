#include "proxy/http_request_gate.h"

#include <algorithm>
#include <utility>

#include "proxy/authorization.h"

namespace podless::proxy {
namespace {

// A chunk-size line with its extensions, or a trailer field line.
constexpr size_t kMaxChunkLineBytes = 8 * 1024;

bool IsHexDigit(char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

std::string ErrorResponse(int status) {
  std::string body = std::string(ReasonPhrase(status)) + "\n";
  return FormatResponseHead(status, "",
                            {{"Content-Length", std::to_string(body.size())},
                             {"Content-Type", "text/plain"},
                             {"Connection", "close"}}) +
         body;
}

bool Upgrades(const Http1Request& request) {
  return request.method == "CONNECT" || request.Header("Upgrade").has_value();
}

}  // namespace

void HttpRequestGate::Refuse(std::string response) {
  state_ = State::kRefused;
  response_ = std::move(response);
}

void HttpRequestGate::StartBody(const Http1Request& request) {
  opaque_after_body_ = Upgrades(request);
  if (request.chunked()) {
    state_ = State::kChunkSize;
  } else {
    int64_t length = request.content_length();
    remaining_ = length > 0 ? static_cast<uint64_t>(length) : 0;
    state_ = State::kBody;
  }
}

HttpRequestGate::Verdict HttpRequestGate::Feed(std::string_view bytes, std::string* forward) {
  if (state_ == State::kRefused) return Verdict::kRefused;
  const size_t forward_before = forward->size();
  size_t pos = 0;
  while (state_ != State::kRefused) {
    if (state_ == State::kBody) {
      // Runs without input too: a request without a body ends at its head.
      size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - pos));
      forward->append(bytes.substr(pos, take));
      pos += take;
      remaining_ -= take;
      if (remaining_ != 0) break;  // every byte taken
      state_ = opaque_after_body_ ? State::kOpaque : State::kHead;
      parser_.Reset();
      continue;
    }
    if (pos == bytes.size()) break;
    if (state_ == State::kOpaque) {
      forward->append(bytes.substr(pos));
      pos = bytes.size();
    } else if (state_ == State::kHead) {
      size_t consumed = 0;
      auto parsed = parser_.Feed(bytes.substr(pos), &consumed);
      head_.append(bytes.substr(pos, consumed));
      pos += consumed;
      if (parsed == Http1RequestParser::State::kIncomplete) continue;
      if (parsed == Http1RequestParser::State::kError) {
        Refuse(ErrorResponse(parser_.error_status() == 0 ? 400 : parser_.error_status()));
        break;
      }
      const Http1Request& request = parser_.request();
      if (!authorize_(request, Upgrades(request))) {
        Refuse(RbacDeniedResponse());
        break;
      }
      forward->append(head_);
      head_.clear();
      StartBody(request);
    } else {
      if (!ScanChunked(bytes, &pos, forward)) {
        Refuse(ErrorResponse(400));
        break;
      }
      if (state_ == State::kHead) {
        parser_.Reset();
        if (opaque_after_body_) state_ = State::kOpaque;
      }
    }
  }
  if (forward->size() > forward_before) forwarded_any_ = true;
  return state_ == State::kRefused ? Verdict::kRefused : Verdict::kPass;
}

bool HttpRequestGate::ScanChunked(std::string_view bytes, size_t* pos, std::string* forward) {
  while (*pos < bytes.size() && state_ != State::kHead) {
    if (state_ == State::kChunkData) {
      size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - *pos));
      forward->append(bytes.substr(*pos, take));
      *pos += take;
      remaining_ -= take;
      if (remaining_ == 0) state_ = State::kChunkDataEnd;
      continue;
    }
    // Line states: one byte at a time until LF.
    char ch = bytes[(*pos)++];
    forward->push_back(ch);
    line_.push_back(ch);
    if (line_.size() > kMaxChunkLineBytes) return false;
    if (ch != '\n') continue;
    if (line_.size() < 2 || line_[line_.size() - 2] != '\r') return false;
    std::string_view line(line_.data(), line_.size() - 2);
    if (state_ == State::kChunkDataEnd) {
      if (!line.empty()) return false;
      state_ = State::kChunkSize;
    } else if (state_ == State::kChunkSize) {
      size_t digits = 0;
      uint64_t size = 0;
      while (digits < line.size() && IsHexDigit(line[digits])) {
        if (digits == 15) return false;  // more than 2^60 bytes
        char c = line[digits];
        size = size * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        ++digits;
      }
      if (digits == 0 || (digits < line.size() && line[digits] != ';' && line[digits] != ' ' &&
                          line[digits] != '\t')) {
        return false;
      }
      remaining_ = size;
      state_ = size == 0 ? State::kTrailer : State::kChunkData;
    } else if (state_ == State::kTrailer) {
      if (line.empty()) state_ = State::kHead;  // the request ends here
    }
    line_.clear();
  }
  return true;
}

}  // namespace podless::proxy
