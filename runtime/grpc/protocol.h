// What the gRPC over HTTP/2 protocol prescribes beyond framing
// (runtime/grpc/framing.h) and status codes (runtime/grpc/status.h), in one place for every
// gRPC client and server of the agent (the API server, the CLI's client, the
// etcd client): the grpc-timeout header, and the status of a call whose
// response carries none (an HTTP error, a reset stream, a cut response).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/grpc/framing.h"
#include "runtime/grpc/status.h"
#include "workloads/result.h"

namespace podless::runtime {

// grpc-timeout: a positive integer of at most 8 digits and a unit; the
// finest unit that fits (milliseconds, then seconds, then hours), never 0
// (an expired deadline is sent as 1 ms).
std::string EncodeGrpcTimeout(std::chrono::milliseconds timeout);
// Milliseconds, rounded up so a tiny timeout never means "no timeout";
// nullopt for a malformed value.
std::optional<uint64_t> ParseGrpcTimeoutMs(std::string_view text);

// The gRPC spec's mapping for responses that carry no grpc-status ...
GrpcCode CodeForHttpStatus(int status);
// ... and for streams reset without trailers (an HTTP/2 error code).
GrpcCode CodeForResetStream(uint32_t error_code);

// What a client call's stream received, for its final status.
struct GrpcResponseState {
  explicit GrpcResponseState(size_t max_message_size = kDefaultMaxGrpcMessageSize)
      : decoder(max_message_size) {}
  GrpcMessageDecoder decoder;
  int http_status = 0;
  std::optional<GrpcCode> grpc_status;
  std::string grpc_message;
  std::optional<Error> local_error;  // decided on this side; wins over the wire
  uint32_t reset_code = 0;           // RST_STREAM's error code; 0 (NO_ERROR): none
};

// The call's final code and message from what its stream received; `peer`
// names the server in the messages ("the agent", "etcd").
GrpcCode FinalCode(const GrpcResponseState& response, std::string_view peer, std::string* message);
// The same as a Status; the gRPC name prefixes a message whose code the
// podless ErrorCode folds together with others.
Status FinalStatus(const GrpcResponseState& response, std::string_view peer);
Status StatusOf(GrpcCode code, std::string message);

}  // namespace podless::runtime
