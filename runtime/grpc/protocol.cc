#include "runtime/grpc/protocol.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>

namespace podless::runtime {

std::string EncodeGrpcTimeout(std::chrono::milliseconds timeout) {
  constexpr int64_t kMaxValue = 99'999'999;
  const int64_t ms = std::max<int64_t>(timeout.count(), 1);
  if (ms <= kMaxValue) return std::to_string(ms) + "m";
  if ((ms + 999) / 1000 <= kMaxValue) return std::to_string((ms + 999) / 1000) + "S";
  return std::to_string(std::min<int64_t>((ms + 3'599'999) / 3'600'000, kMaxValue)) + "H";
}

std::optional<uint64_t> ParseGrpcTimeoutMs(std::string_view text) {
  if (text.size() < 2 || text.size() > 9) return std::nullopt;
  uint64_t value = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  switch (text.back()) {
    case 'H':
      return value * 3'600'000;
    case 'M':
      return value * 60'000;
    case 'S':
      return value * 1'000;
    case 'm':
      return value;
    case 'u':
      return (value + 999) / 1'000;
    case 'n':
      return (value + 999'999) / 1'000'000;
    default:
      return std::nullopt;
  }
}

GrpcCode CodeForHttpStatus(int status) {
  switch (status) {
    case 400:
      return GrpcCode::kInternal;
    case 401:
      return GrpcCode::kUnauthenticated;
    case 403:
      return GrpcCode::kPermissionDenied;
    case 404:
      return GrpcCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode::kUnavailable;
    default:
      return GrpcCode::kUnknown;
  }
}

GrpcCode CodeForResetStream(uint32_t error_code) {
  switch (error_code) {
    case NGHTTP2_CANCEL:
      return GrpcCode::kCancelled;
    case NGHTTP2_REFUSED_STREAM:
      return GrpcCode::kUnavailable;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return GrpcCode::kResourceExhausted;
    case NGHTTP2_INADEQUATE_SECURITY:
      return GrpcCode::kPermissionDenied;
    default:
      return GrpcCode::kInternal;
  }
}

GrpcCode FinalCode(const GrpcResponseState& response, std::string_view peer, std::string* message) {
  message->clear();
  if (response.local_error) {
    *message = response.local_error->message;
    return ToGrpcCode(response.local_error->code);
  }
  if (response.grpc_status) {
    *message = response.grpc_message;
    if (*response.grpc_status == GrpcCode::kOk && !response.decoder.at_message_boundary()) {
      *message = std::string(peer) + "'s response ended inside a grpc message";
      return GrpcCode::kInternal;
    }
    return *response.grpc_status;
  }
  if (response.reset_code != NGHTTP2_NO_ERROR) {
    *message = std::string(peer) + " reset the stream (HTTP/2 " +
               nghttp2_http2_strerror(response.reset_code) + ")";
    return CodeForResetStream(response.reset_code);
  }
  if (response.http_status != 200 && response.http_status != 0) {
    *message = std::string(peer) + " answered HTTP " + std::to_string(response.http_status);
    return CodeForHttpStatus(response.http_status);
  }
  *message = std::string(peer) + "'s response ended without a grpc-status";
  return GrpcCode::kInternal;
}

Status StatusOf(GrpcCode code, std::string message) {
  if (code == GrpcCode::kOk) return {};
  if (message.empty()) message = GrpcCodeName(code);
  // Keep the gRPC name where ErrorCode folds several codes together.
  if (!IsExactErrorCode(code)) message = std::string(GrpcCodeName(code)) + ": " + message;
  return MakeError(FromGrpcCode(code), std::move(message));
}

Status FinalStatus(const GrpcResponseState& response, std::string_view peer) {
  if (response.local_error) return *response.local_error;
  std::string message;
  GrpcCode code = FinalCode(response, peer, &message);
  return StatusOf(code, std::move(message));
}

}  // namespace podless::runtime
