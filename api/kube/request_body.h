// A request body being received over HTTP/1.1: Content-Length or chunked
// framing (RFC 9112 section 7.1; chunk extensions and trailers are read and
// dropped), bounded as the Kubernetes API server bounds it (3 MiB: larger
// is 413 RequestEntityTooLarge). Pure: the connection feeds it bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace podless::api::kube {

// The Kubernetes API server's limit on a request body.
inline constexpr size_t kMaxRequestBodyBytes = 3 * 1024 * 1024;

class RequestBody {
 public:
  enum class State { kIncomplete, kDone, kTooLarge, kError };

  // `content_length` >= 0: that many bytes; `chunked`: chunked framing.
  RequestBody(int64_t content_length, bool chunked, size_t limit = kMaxRequestBodyBytes);

  // Takes the body's bytes from the front of `bytes`; `*consumed` is how
  // many were (what follows kDone is the next request's).
  State Feed(std::string_view bytes, size_t* consumed);

  State state() const { return state_; }
  const std::string& error() const { return error_; }
  std::string Take() { return std::move(body_); }

 private:
  enum class Phase { kLength, kSize, kData, kDataEnd, kTrailer };
  State Fail(std::string message);
  // A complete chunk-size, data-end or trailer line in line_.
  State OnLine();

  Phase phase_;
  uint64_t remaining_ = 0;  // bytes of the body or chunk still to come
  size_t limit_;
  std::string line_;
  std::string body_;
  std::string error_;
  State state_ = State::kIncomplete;
};

}  // namespace podless::api::kube
