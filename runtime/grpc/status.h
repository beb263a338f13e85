// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html),
// the mapping between them and podless::ErrorCode, and the percent-encoding
// the gRPC HTTP/2 protocol prescribes for the `grpc-message` trailer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/base/percent_decode.h"
#include "workloads/result.h"

namespace podless::runtime {

// The numeric values are fixed by the gRPC protocol: they go on the wire as
// the decimal `grpc-status` trailer.
enum class GrpcCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

inline const char* GrpcCodeName(GrpcCode code) {
  switch (code) {
    case GrpcCode::kOk:
      return "OK";
    case GrpcCode::kCancelled:
      return "CANCELLED";
    case GrpcCode::kUnknown:
      return "UNKNOWN";
    case GrpcCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case GrpcCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case GrpcCode::kNotFound:
      return "NOT_FOUND";
    case GrpcCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case GrpcCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case GrpcCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case GrpcCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case GrpcCode::kAborted:
      return "ABORTED";
    case GrpcCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case GrpcCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case GrpcCode::kInternal:
      return "INTERNAL";
    case GrpcCode::kUnavailable:
      return "UNAVAILABLE";
    case GrpcCode::kDataLoss:
      return "DATA_LOSS";
    case GrpcCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

// Every podless ErrorCode has exactly one gRPC counterpart.
inline GrpcCode ToGrpcCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return GrpcCode::kInvalidArgument;
    case ErrorCode::kNotFound:
      return GrpcCode::kNotFound;
    case ErrorCode::kAlreadyExists:
      return GrpcCode::kAlreadyExists;
    case ErrorCode::kFailedPrecondition:
      return GrpcCode::kFailedPrecondition;
    case ErrorCode::kResourceExhausted:
      return GrpcCode::kResourceExhausted;
    case ErrorCode::kPermissionDenied:
      return GrpcCode::kPermissionDenied;
    case ErrorCode::kUnavailable:
      return GrpcCode::kUnavailable;
    case ErrorCode::kDeadlineExceeded:
      return GrpcCode::kDeadlineExceeded;
    case ErrorCode::kInternal:
      return GrpcCode::kInternal;
  }
  return GrpcCode::kUnknown;
}

// The reverse direction is lossy: gRPC has codes podless never produces
// (UNIMPLEMENTED from an older agent, CANCELLED, ...). Those fold into the
// nearest ErrorCode; IsExactErrorCode() tells the caller whether the gRPC code
// name should be kept in the message so nothing is lost for the user.
inline ErrorCode FromGrpcCode(GrpcCode code) {
  switch (code) {
    case GrpcCode::kInvalidArgument:
    case GrpcCode::kOutOfRange:
      return ErrorCode::kInvalidArgument;
    case GrpcCode::kDeadlineExceeded:
      return ErrorCode::kDeadlineExceeded;
    case GrpcCode::kNotFound:
      return ErrorCode::kNotFound;
    case GrpcCode::kAlreadyExists:
      return ErrorCode::kAlreadyExists;
    case GrpcCode::kPermissionDenied:
    case GrpcCode::kUnauthenticated:
      return ErrorCode::kPermissionDenied;
    case GrpcCode::kResourceExhausted:
      return ErrorCode::kResourceExhausted;
    case GrpcCode::kFailedPrecondition:
    case GrpcCode::kAborted:
      return ErrorCode::kFailedPrecondition;
    case GrpcCode::kCancelled:
    case GrpcCode::kUnavailable:
      return ErrorCode::kUnavailable;
    case GrpcCode::kOk:
    case GrpcCode::kUnknown:
    case GrpcCode::kUnimplemented:
    case GrpcCode::kInternal:
    case GrpcCode::kDataLoss:
      return ErrorCode::kInternal;
  }
  return ErrorCode::kInternal;
}

inline bool IsExactErrorCode(GrpcCode code) {
  return code != GrpcCode::kOk && ToGrpcCode(FromGrpcCode(code)) == code;
}

// Parses a `grpc-status` value: a decimal number 0..16. Anything else is
// UNKNOWN, as the gRPC spec asks of clients.
inline GrpcCode ParseGrpcStatus(std::string_view text) {
  if (text.empty() || text.size() > 2) return GrpcCode::kUnknown;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return GrpcCode::kUnknown;
    value = value * 10 + (c - '0');
  }
  if (value > static_cast<int>(GrpcCode::kUnauthenticated)) return GrpcCode::kUnknown;
  return static_cast<GrpcCode>(value);
}

// `grpc-message` is percent-encoded: bytes outside printable ASCII
// (0x20..0x7E) and '%' itself become %XX, so multi-line and UTF-8 messages
// survive HTTP/2 header rules.
inline std::string PercentEncodeGrpcMessage(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7E && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

// Decodes %XX sequences; a malformed sequence is kept as is.
inline std::string PercentDecodeGrpcMessage(std::string_view text) {
  return proxy::PercentDecode(text);
}

}  // namespace podless::runtime
