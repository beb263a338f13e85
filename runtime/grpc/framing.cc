#include "runtime/grpc/framing.h"

#include <algorithm>
#include <new>

namespace podless::runtime {

void AppendGrpcFrame(std::string& out, std::string_view message) {
  const auto length = static_cast<uint32_t>(message.size());
  const char header[kGrpcFrameHeaderSize] = {
      0,  // not compressed
      static_cast<char>(length >> 24),
      static_cast<char>(length >> 16),
      static_cast<char>(length >> 8),
      static_cast<char>(length),
  };
  out.append(header, sizeof(header));
  out.append(message);
}

std::string FrameGrpcMessage(std::string_view message) {
  std::string out;
  out.reserve(kGrpcFrameHeaderSize + message.size());
  AppendGrpcFrame(out, message);
  return out;
}

Status GrpcMessageDecoder::Feed(std::string_view bytes, std::vector<std::string>& messages) {
  if (failed_) return error_;
  while (!bytes.empty()) {
    if (!in_body_) {
      const size_t take = std::min(kGrpcFrameHeaderSize - header_fill_, bytes.size());
      std::copy_n(bytes.data(), take, header_ + header_fill_);
      header_fill_ += take;
      bytes.remove_prefix(take);
      if (header_fill_ < kGrpcFrameHeaderSize) break;
      header_fill_ = 0;
      if (header_[0] != 0) {
        failed_ = true;
        error_ = MakeError(ErrorCode::kInternal,
                           header_[0] == 1
                               ? "received a compressed grpc message, but no compression was "
                                 "negotiated (grpc-encoding identity only)"
                               : "invalid grpc message header: compressed-flag byte is " +
                                     std::to_string(header_[0]) + ", expected 0 or 1");
        return error_;
      }
      body_length_ = (size_t{header_[1]} << 24) | (size_t{header_[2]} << 16) |
                     (size_t{header_[3]} << 8) | size_t{header_[4]};
      if (body_length_ > max_message_size_) {
        failed_ = true;
        error_ = MakeError(ErrorCode::kResourceExhausted,
                           "grpc message of " + std::to_string(body_length_) +
                               " bytes exceeds the limit of " + std::to_string(max_message_size_) +
                               " bytes");
        return error_;
      }
      in_body_ = true;
      body_.clear();
    }
    const size_t take = std::min(body_length_ - body_.size(), bytes.size());
    // The body grows with the bytes that arrive (no reserve of the announced
    // length: a peer could announce the limit on many streams and send
    // nothing). Out of memory, the message is refused and the decoder stays
    // failed; nothing else has been touched.
    try {
      body_.append(bytes.data(), take);
      bytes.remove_prefix(take);
      if (body_.size() == body_length_) {
        messages.push_back(std::move(body_));
        body_ = std::string();
        in_body_ = false;
      }
    } catch (const std::bad_alloc&) {
      body_ = std::string();
      failed_ = true;
      error_ =
          MakeError(ErrorCode::kResourceExhausted, "out of memory receiving a grpc message of " +
                                                       std::to_string(body_length_) + " bytes");
      return error_;
    }
  }
  return {};
}

}  // namespace podless::runtime
