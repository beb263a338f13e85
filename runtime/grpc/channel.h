// GrpcChannel: the client side of gRPC over one HTTP/2 connection, for every
// gRPC client of the agent (the etcd client, runtime/etcd/etcd_connection.h; the
// CLI's client, api/cli/grpc_client.h). It owns the nghttp2 session and the gRPC
// framing of each call's stream: unary and server-streaming calls, with
// grpc-timeout, metadata, a per-call message size limit (the sink's decoder),
// cancel, PINGs and GOAWAY.
//
// It owns no socket. Its owner moves bytes: what the connection read goes to
// Receive(), and what the session wants to send comes out of Output::Send.
// That is what lets one class serve transports that have nothing else in
// common: the etcd client's TCP or TLS connection (name resolution, every
// address in turn, etcd's TLS profile), and the CLI's Unix socket (a
// proxy::TcpStream on a private loop).
//
// Deadlines are the owner's too: the etcd client keeps its own per call
// across reconnects, the CLI's client one per blocking call. The channel
// sends the grpc-timeout it is given, so the server enforces it as well.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/grpc/framing.h"
#include "runtime/grpc/protocol.h"
#include "runtime/grpc/status.h"
#include "workloads/result.h"

struct nghttp2_session;

namespace podless::runtime {

// One gRPC call as its HTTP/2 stream sees it. The two hooks run inside
// nghttp2's callbacks: an implementation records and defers, it never calls
// back into the channel nor destroys it there.
class GrpcStreamSink {
 public:
  explicit GrpcStreamSink(size_t max_message_size = kDefaultMaxGrpcMessageSize)
      : response(max_message_size) {}
  virtual ~GrpcStreamSink() = default;
  // One complete response message.
  virtual void OnGrpcMessage(std::string message) = 0;
  // The stream is over with this status (trailers, HTTP status, a reset or a
  // framing error such as an oversize message). No hook runs after it.
  virtual void OnGrpcClose(Status status) = 0;

  // Request bytes (framed messages) the stream sends next: the owner appends
  // and then calls GrpcChannel::Resume. The channel consumes them.
  std::string outgoing;
  size_t outgoing_sent = 0;
  // The request is complete (unary calls): END_STREAM follows the last byte.
  bool half_close = false;

  // What the channel keeps of the call's response; its decoder's limit is
  // the call's largest accepted message (RESOURCE_EXHAUSTED beyond).
  GrpcResponseState response;
};

struct GrpcChannelOptions {
  // Names the server in messages: "etcd", "the agent".
  std::string peer;
  std::string scheme = "http";  // "https" over TLS
  std::string authority = "localhost";
  std::string user_agent = "podless-grpc/0.1";
  // Sent with every call (lower-case names; "-bin" values must be base64).
  std::vector<std::pair<std::string, std::string>> metadata = {};
};

class GrpcChannel;
using GrpcChannelPtr = std::unique_ptr<GrpcChannel>;

class GrpcChannel {
 public:
  // Where the session's bytes go: the owner's connection.
  class Output {
   public:
    virtual ~Output() = default;
    // Bytes for the server, in order. An error means the connection is gone;
    // the channel reports it from the call that flushed.
    virtual Status Send(std::string bytes) = 0;
  };

  // A client session with our SETTINGS queued (push off, 1 MiB stream and
  // 16 MiB connection windows); they go out with the first Flush.
  static Result<GrpcChannelPtr> Create(GrpcChannelOptions options, Output& output);
  ~GrpcChannel();
  GrpcChannel(const GrpcChannel&) = delete;
  GrpcChannel& operator=(const GrpcChannel&) = delete;

  // Bytes read from the connection; runs the sinks' hooks, then flushes what
  // the session answers. An error (UNAVAILABLE, naming the peer) means the
  // session is unusable: a protocol error, a failed send, the session's end,
  // or a GOAWAY when GOAWAY ends the channel (set_goaway_ends_channel).
  Status Receive(std::string_view bytes);
  // Sends what the session has queued (the preface and SETTINGS, frames).
  Status Flush();

  // Starts a call to `path` ("/etcdserverpb.KV/Range"); `grpc_timeout`, when
  // given, goes out as grpc-timeout. Returns the stream id; the request goes
  // out with the next Flush (so several calls can start in one write). The
  // sink must stay alive until its OnGrpcClose or until Cancel.
  Result<int32_t> StartCall(std::string_view path,
                            std::optional<std::chrono::milliseconds> grpc_timeout,
                            GrpcStreamSink& sink);
  // The sink of `stream_id` has more to send.
  Status Resume(int32_t stream_id);
  // Resets the stream (CANCEL) and forgets its sink: no hook runs for it.
  Status Cancel(int32_t stream_id);
  // Only forgets the sink (the connection is gone, nothing can be sent).
  void Forget(int32_t stream_id);

  // Liveness: a PING, and whether the last one is still unanswered.
  Status SendPing();
  bool ping_outstanding() const { return ping_outstanding_; }
  // Streams started and not yet closed.
  size_t open_streams() const { return open_streams_; }

  // By default a GOAWAY lets the streams it covers finish. The etcd client
  // treats it as a lost connection instead (etcd sends it when it shuts
  // down, and its callers retry on another connection).
  void set_goaway_ends_channel(bool ends) { goaway_ends_channel_ = ends; }
  // Why the server said GOAWAY, once it did.
  const std::optional<Error>& goaway() const { return goaway_; }
  const GrpcChannelOptions& options() const { return options_; }

 private:
  friend struct GrpcChannelCallbacks;
  GrpcChannel(GrpcChannelOptions options, Output& output);
  Status Unavailable(std::string reason) const;

  GrpcChannelOptions options_;
  Output& output_;
  nghttp2_session* session_ = nullptr;
  size_t open_streams_ = 0;
  bool ping_outstanding_ = false;
  bool goaway_ends_channel_ = false;
  std::optional<Error> goaway_;
};

}  // namespace podless::runtime
