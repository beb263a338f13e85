// gRPC message framing (the "Length-Prefixed-Message" of the gRPC HTTP/2
// protocol): a 1-byte compressed flag, a 4-byte big-endian length, then the
// message. The decoder is incremental because HTTP/2 DATA frames split and
// join messages arbitrarily.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/result.h"

namespace podless::runtime {

inline constexpr size_t kGrpcFrameHeaderSize = 5;
inline constexpr size_t kDefaultMaxGrpcMessageSize = 64u << 20;  // 64 MiB

// Appends one uncompressed framed message to `out`.
void AppendGrpcFrame(std::string& out, std::string_view message);
std::string FrameGrpcMessage(std::string_view message);

class GrpcMessageDecoder {
 public:
  explicit GrpcMessageDecoder(size_t max_message_size = kDefaultMaxGrpcMessageSize)
      : max_message_size_(max_message_size) {}

  // Consumes `bytes` and appends every message it completes to `messages`.
  // A message longer than the limit fails with RESOURCE_EXHAUSTED as soon as
  // its header is seen (nothing of it is buffered); a compressed message fails
  // with INTERNAL since podless negotiates no compression. After an error the
  // decoder stays failed.
  Status Feed(std::string_view bytes, std::vector<std::string>& messages);

  // True when no partial message is buffered: the stream may end here.
  bool at_message_boundary() const { return !failed_ && header_fill_ == 0 && !in_body_; }
  size_t max_message_size() const { return max_message_size_; }

 private:
  size_t max_message_size_;
  uint8_t header_[kGrpcFrameHeaderSize] = {};
  size_t header_fill_ = 0;
  bool in_body_ = false;
  size_t body_length_ = 0;
  std::string body_;
  bool failed_ = false;
  Error error_;
};

}  // namespace podless::runtime
