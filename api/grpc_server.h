// GrpcServer: gRPC over HTTP/2 (nghttp2, prior knowledge, no TLS) on a Unix
// socket, driven by one libuv loop (the agent's). Handlers are synchronous and
// run on the loop thread; a server-streaming handler may keep its
// ServerStream and write to it later, from the loop thread.
//
// We cannot link libgrpc++ (it pulls in system OpenSSL, which clashes with
// BoringSSL), so the protocol is written here, on the agent's gRPC library:
// framing in runtime/grpc/framing.h, status codes in runtime/grpc/status.h.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/socket_acceptor.h"
#include "proxy/base/uv_handle.h"
#include "runtime/grpc/framing.h"
#include "runtime/grpc/status.h"
#include "workloads/result.h"

namespace podless::api {

// What a handler knows about its call.
struct CallContext {
  std::string method;  // "/package.Service/Method"
  // Request headers other than pseudo-headers and the gRPC protocol's own
  // (content-type, te, grpc-timeout, grpc-encoding, ...); names lower-case.
  std::multimap<std::string, std::string> metadata;
  // Peer credentials of the connection (SO_PEERCRED), for authorization.
  // The pid is still the process that connected, not a later one with the
  // same number: a call whose connecting process has exited is refused
  // before its handler runs (start_time is compared, /proc/<pid>/stat).
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t start_time = 0;  // of `pid`, in clock ticks since boot
};

// The server side of one server-streaming call. Every method must be called
// on the loop thread. Holding the shared_ptr keeps the call open; dropping the
// last reference without Finish() finishes the call with OK.
class ServerStream {
 public:
  virtual ~ServerStream() = default;

  // Queues one serialized message. Returns false if the call is over
  // (finished, cancelled by the client, deadline passed, connection gone) or
  // if this write would leave more than the per-stream buffer limit queued for
  // a reader that is not keeping up; in that case the call is ended with
  // RESOURCE_EXHAUSTED and the cancel callback fires.
  virtual bool Write(std::string_view message_bytes) = 0;
  // Ends the call with `status` (grpc-status/grpc-message trailers after the
  // queued messages). Later calls are ignored.
  virtual void Finish(const Status& status) = 0;
  // True once the call ended other than through Finish().
  virtual bool cancelled() const = 0;
  // Called once when the call ends other than through Finish(): the client
  // cancelled or disconnected, the deadline passed, the server closed, or the
  // reader fell too far behind. Called at once if that already happened.
  virtual void OnCancel(std::function<void()> callback) = 0;
  // Bytes queued in this call and not yet handed to HTTP/2 (a producer may
  // use it to slow down).
  virtual size_t buffered_bytes() const = 0;
};

using UnaryHandler =
    std::function<Result<std::string>(const CallContext&, std::string_view request_bytes)>;
using ServerStreamingHandler = std::function<void(
    const CallContext&, std::string_view request_bytes, std::shared_ptr<ServerStream>)>;

// A ServerStream that writes protobuf messages of one type. Cheap to copy.
template <typename Resp>
class ServerStreamWriter {
 public:
  explicit ServerStreamWriter(std::shared_ptr<ServerStream> stream) : stream_(std::move(stream)) {}

  bool Write(const Resp& message) {
    std::string bytes;
    if (!message.SerializeToString(&bytes)) return false;
    return stream_->Write(bytes);
  }
  void Finish(const Status& status) { stream_->Finish(status); }
  bool cancelled() const { return stream_->cancelled(); }
  void OnCancel(std::function<void()> callback) { stream_->OnCancel(std::move(callback)); }
  size_t buffered_bytes() const { return stream_->buffered_bytes(); }
  const std::shared_ptr<ServerStream>& raw() const { return stream_; }

 private:
  std::shared_ptr<ServerStream> stream_;
};

inline constexpr size_t kDefaultMaxStatusMessageBytes = 4096;

// `message` percent-encoded for the grpc-message trailer (gRPC spec) and at
// most `max_bytes` long: a longer one keeps its beginning, cut before a line
// end when one is in the second half and never inside a UTF-8 character or a
// %XX escape, followed by "\n... (cut to N bytes: the whole message was M
// bytes)". Empty when `message` is.
std::string EncodeGrpcStatusMessage(std::string_view message, size_t max_bytes);

struct GrpcServerOptions {
  // Largest request message accepted; larger ones end the call with
  // RESOURCE_EXHAUSTED before any of it is buffered.
  size_t max_receive_message_size = runtime::kDefaultMaxGrpcMessageSize;
  // Response bytes one call may have queued for a slow reader; a Write()
  // beyond it ends the call with RESOURCE_EXHAUSTED. A single message larger
  // than this is still accepted when nothing else is queued.
  size_t max_buffered_bytes_per_stream = 8u << 20;
  // The longest grpc-message sent, after percent-encoding. A longer status
  // message is cut (at a line end when there is one near) and says so: the
  // trailers must stay well below what clients take in one header block
  // (gRPC's C core starts refusing at 8 KiB of metadata, and nghttp2 sends no
  // header block over 64 KiB). A status that cannot be sent anyway resets the
  // stream (RST_STREAM INTERNAL_ERROR), so the call still ends.
  size_t max_status_message_bytes = kDefaultMaxStatusMessageBytes;
  // A connection must send the HTTP/2 preface and SETTINGS within this time.
  uint64_t handshake_timeout_ms = 10'000;
  uint32_t max_concurrent_streams = 1000;
  size_t max_connections = 4096;
  // Accept failures (EMFILE): accepting is proxy::SocketAcceptor's, which
  // logs them once per episode, sheds pending clients and pauses instead of
  // spinning. The label and log prefix, how they are counted (none when
  // empty) and where they are logged.
  std::string listener_name = "api";
  // The Unix socket's mode. The API's is the agent's alone (0600); the
  // SPIFFE Workload API's is 0666: every sandboxed workload uid connects,
  // and attestation (SO_PEERCRED) decides what a caller gets.
  mode_t socket_mode = 0600;
  // A non-empty answer refuses the call with PERMISSION_DENIED and that
  // message before its handler runs (the API refuses workloads' processes).
  std::function<std::string(const CallContext&)> refuse_caller;
  // Told once per call of a registered method when its stream closes, with
  // the method's name (the path's last part, "Apply") and the code the call
  // ended with: the status sent, CANCELLED when the client went first, the
  // reset's code when the server reset it.
  std::function<void(std::string_view method, runtime::GrpcCode code)> on_call_end;
  proxy::SocketAcceptor::CountFunction count_accept_error;
  proxy::LogFunction log = proxy::LogToStderr;
};

class GrpcConnection;    // grpc_server.cc
class ServerStreamImpl;  // grpc_server.cc
struct GrpcStream;       // grpc_server.cc

class GrpcServer {
 public:
  explicit GrpcServer(uv_loop_t* loop, GrpcServerOptions options = {});
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Registers a handler for "/package.Service/Method". Register before or
  // after Listen(); a later registration of the same method replaces it.
  void AddUnaryRaw(std::string method, UnaryHandler handler);
  void AddServerStreamingRaw(std::string method, ServerStreamingHandler handler);

  // Typed helpers: a request that does not parse as Req fails with
  // INVALID_ARGUMENT before the handler runs.
  template <typename Req, typename Resp>
  void AddUnary(std::string method,
                std::function<Result<Resp>(const CallContext&, const Req&)> handler);
  template <typename Req, typename Resp>
  void AddServerStreaming(
      std::string method,
      std::function<void(const CallContext&, const Req&, ServerStreamWriter<Resp>)> handler);

  // A unary method whose handler answers later (it waits on etcd, say):
  // `reply` may be called once, from any later loop turn. On the wire it is
  // an ordinary unary call.
  template <typename Resp>
  using Reply = std::function<void(Result<Resp>)>;
  template <typename Req, typename Resp>
  void AddAsyncUnary(std::string method,
                     std::function<void(const CallContext&, const Req&, Reply<Resp>)> handler);

  // Binds the Unix socket at `socket_path` with mode 0600 and starts
  // accepting. A stale socket file (nobody listening) is replaced; a live one,
  // or a path that is not a socket, is an error.
  Status Listen(const std::string& socket_path);

  // Stops listening, closes every connection (their calls' cancel callbacks
  // fire) and unlinks the socket file. Idempotent; the destructor calls it.
  void Close();

  size_t connection_count() const { return connections_.size(); }
  const std::string& socket_path() const { return socket_path_; }
  const GrpcServerOptions& options() const { return options_; }
  uv_loop_t* loop() const { return loop_; }

 private:
  friend class GrpcConnection;
  friend class ServerStreamImpl;
  friend struct GrpcStream;
  using Method = std::pair<UnaryHandler, ServerStreamingHandler>;  // exactly one is set

  // Serves the accepted descriptor `fd` (takes it over).
  void Accept(int fd);
  // Takes a closed connection out of service; it is destroyed on the next
  // loop turn, never inside one of its own (nghttp2 or libuv) callbacks.
  void Retire(GrpcConnection* connection);
  // Runs `call` on the next loop turn.
  void Defer(std::function<void()> call);
  const Method* FindMethod(const std::string& path) const;

  uv_loop_t* loop_;
  GrpcServerOptions options_;
  std::unordered_map<std::string, Method> methods_;
  proxy::SocketAcceptorPtr acceptor_;
  std::string socket_path_;
  bool listening_ = false;
  std::unordered_map<GrpcConnection*, std::unique_ptr<GrpcConnection>> connections_;
  // The socket file we bound, so Close() unlinks it only if it is still ours.
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  // Deferred calls, flushes and deletions of the connections, and their
  // streams' read buffer. Declared last: destroyed first, so the closed
  // connections it still holds go while the rest of the server lives.
  proxy::Dispatcher dispatcher_;
};

using GrpcServerPtr = std::unique_ptr<GrpcServer>;

template <typename Req, typename Resp>
void GrpcServer::AddUnary(std::string method,
                          std::function<Result<Resp>(const CallContext&, const Req&)> handler) {
  AddUnaryRaw(
      method,
      [method, handler = std::move(handler)](const CallContext& context,
                                             std::string_view bytes) -> Result<std::string> {
        Req request;
        if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return MakeError(ErrorCode::kInvalidArgument, "cannot parse the request to " + method +
                                                            " as " + request.GetTypeName());
        }
        Result<Resp> response = handler(context, request);
        if (!response.ok()) return response.error();
        std::string out;
        if (!response->SerializeToString(&out)) {
          return MakeError(ErrorCode::kInternal, "cannot serialize the response of " + method);
        }
        return out;
      });
}

template <typename Req, typename Resp>
void GrpcServer::AddServerStreaming(
    std::string method,
    std::function<void(const CallContext&, const Req&, ServerStreamWriter<Resp>)> handler) {
  AddServerStreamingRaw(method, [method, handler = std::move(handler)](
                                    const CallContext& context, std::string_view bytes,
                                    std::shared_ptr<ServerStream> stream) {
    Req request;
    if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      stream->Finish(
          MakeError(ErrorCode::kInvalidArgument,
                    "cannot parse the request to " + method + " as " + request.GetTypeName()));
      return;
    }
    handler(context, request, ServerStreamWriter<Resp>(std::move(stream)));
  });
}

template <typename Req, typename Resp>
void GrpcServer::AddAsyncUnary(
    std::string method, std::function<void(const CallContext&, const Req&, Reply<Resp>)> handler) {
  AddServerStreaming<Req, Resp>(
      std::move(method),
      [handler = std::move(handler)](const CallContext& context, const Req& request,
                                     ServerStreamWriter<Resp> writer) {
        handler(context, request, [writer](Result<Resp> response) mutable {
          if (!response.ok()) return writer.Finish(response.error());
          writer.Write(*response);
          writer.Finish({});
        });
      });
}

}  // namespace podless::api
