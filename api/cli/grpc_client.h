// GrpcClient: a blocking gRPC client over a Unix socket, for the CLI.
// A thin wrapper around runtime::GrpcChannel (the HTTP/2 session and framing
// the etcd client uses too) over a proxy::TcpStream on a private libuv loop:
// each call runs that loop until the call finishes or its timeout passes.
// One thread at a time; a client may run several calls at once on its
// connection with ConcurrentStreams().
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "runtime/grpc/channel.h"
#include "runtime/grpc/framing.h"
#include "runtime/grpc/status.h"
#include "workloads/result.h"

namespace podless::api {

struct GrpcClientOptions {
  // Largest response message accepted (RESOURCE_EXHAUSTED beyond).
  size_t max_receive_message_size = runtime::kDefaultMaxGrpcMessageSize;
  // Sent with every call (lower-case names; "-bin" values must be base64).
  std::vector<std::pair<std::string, std::string>> metadata;
};

class GrpcClient;
using GrpcClientPtr = std::unique_ptr<GrpcClient>;

class GrpcClient final : private proxy::StreamHandler, private runtime::GrpcChannel::Output {
 public:
  // Connects to the agent's API socket. A missing or dead agent gives
  // UNAVAILABLE "cannot connect to PATH: REASON (is `podless run` running?)".
  static Result<GrpcClientPtr> Connect(const std::string& socket_path,
                                       std::chrono::milliseconds timeout,
                                       GrpcClientOptions options = {});
  ~GrpcClient();
  GrpcClient(const GrpcClient&) = delete;
  GrpcClient& operator=(const GrpcClient&) = delete;

  // One request, one response. `timeout` is sent as grpc-timeout and bounds
  // the whole call (DEADLINE_EXCEEDED).
  Result<std::string> Unary(std::string_view method, std::string_view request_bytes,
                            std::chrono::milliseconds timeout);

  template <typename Req, typename Resp>
  Result<Resp> Call(std::string_view method, const Req& request, std::chrono::milliseconds timeout);

  // Server streaming: `on_message` runs for each message, in order; returning
  // false cancels the call (RST_STREAM CANCEL), which then counts as success.
  // Returns the call's final status. `on_message` must not use this client.
  using MessageCallback = std::function<bool(std::string_view message_bytes)>;
  Status ServerStream(std::string_view method, std::string_view request_bytes,
                      const MessageCallback& on_message, std::chrono::milliseconds timeout);

  template <typename Req, typename Resp>
  Status ServerStream(std::string_view method, const Req& request,
                      const std::function<bool(const Resp&)>& on_message,
                      std::chrono::milliseconds timeout);

  // Runs one call per request at the same time, one HTTP/2 stream each, on
  // this connection. `on_message(i, bytes)` receives the messages of call i.
  // Returns one final status per request, in order.
  std::vector<Status> ConcurrentStreams(
      std::string_view method, const std::vector<std::string>& requests,
      const std::function<bool(size_t index, std::string_view message_bytes)>& on_message,
      std::chrono::milliseconds timeout);

  // The gRPC code of the last call that finished (OK included); useful where
  // ErrorCode folds several gRPC codes together (UNIMPLEMENTED, CANCELLED).
  runtime::GrpcCode last_code() const { return last_code_; }
  // False once the connection failed; every later call is UNAVAILABLE.
  bool connected() const { return !broken_; }
  const std::string& socket_path() const { return socket_path_; }

 private:
  struct PendingCall;

  GrpcClient(std::string socket_path, GrpcClientOptions options);
  // Adopts the connected socket `fd` and starts the HTTP/2 session on it.
  Status Start(int fd);
  std::vector<Status> RunCalls(
      std::string_view method, const std::vector<std::string_view>& requests,
      const std::function<bool(size_t index, std::string_view message_bytes)>& on_message,
      std::chrono::milliseconds timeout);
  void MarkBroken(std::string reason);
  Status Finalize(PendingCall& call);

  // proxy::StreamHandler: the socket's events feed the channel.
  void OnData(std::string_view bytes) override;
  void OnEnd() override;
  void OnClosed(bool reset) override;
  // runtime::GrpcChannel::Output: the channel's bytes go to the socket.
  Status Send(std::string bytes) override;

  std::string socket_path_;
  GrpcClientOptions options_;
  // The loop outlives everything on it (members die in reverse order).
  proxy::UvLoop loop_;
  proxy::Dispatcher dispatcher_;
  proxy::Timer deadline_timer_;      // sets deadline_passed_
  bool deadline_passed_ = false;     // the running call's deadline (and grace) is over
  proxy::Stream* stream_ = nullptr;  // owns itself; null once closed
  runtime::GrpcChannelPtr channel_;
  bool broken_ = false;
  std::string broken_reason_;
  runtime::GrpcCode last_code_ = runtime::GrpcCode::kOk;
};

template <typename Req, typename Resp>
Result<Resp> GrpcClient::Call(std::string_view method, const Req& request,
                              std::chrono::milliseconds timeout) {
  std::string bytes;
  if (!request.SerializeToString(&bytes)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cannot serialize the request to " + std::string(method));
  }
  Result<std::string> reply = Unary(method, bytes, timeout);
  if (!reply.ok()) return reply.error();
  Resp response;
  if (!response.ParseFromString(*reply)) {
    return MakeError(ErrorCode::kInternal, "cannot parse the response of " + std::string(method) +
                                               " as " + response.GetTypeName());
  }
  return response;
}

template <typename Req, typename Resp>
Status GrpcClient::ServerStream(std::string_view method, const Req& request,
                                const std::function<bool(const Resp&)>& on_message,
                                std::chrono::milliseconds timeout) {
  std::string bytes;
  if (!request.SerializeToString(&bytes)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cannot serialize the request to " + std::string(method));
  }
  bool parse_failed = false;
  Status status = ServerStream(
      method, bytes,
      [&](std::string_view message) {
        Resp response;
        if (!response.ParseFromArray(message.data(), static_cast<int>(message.size()))) {
          parse_failed = true;
          return false;
        }
        return on_message(response);
      },
      timeout);
  if (parse_failed) {
    Resp probe;
    return MakeError(ErrorCode::kInternal, "cannot parse a message of " + std::string(method) +
                                               " as " + probe.GetTypeName());
  }
  return status;
}

}  // namespace podless::api
