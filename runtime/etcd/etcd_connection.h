// EtcdConnection: one HTTP/2 connection to one etcd endpoint, on a libuv
// loop, carrying gRPC calls as streams: cleartext with prior knowledge (h2c)
// for http://, TLS with ALPN h2 for https:// (runtime/etcd/etcd_tls.h).
//
// The split of work: this class owns what is particular to reaching etcd:
// the name resolution (every address in turn), the connect timeout and the
// PINGs that find a dead peer. The bytes ride on the data plane's streams:
// proxy::TcpConnector dials each address, the proxy::TcpStream it yields
// (with its write-stall timeout and watermarks) carries them, and for
// https:// a proxy::TlsStream with etcd's profile runs over it. The gRPC
// calls run on a runtime::GrpcChannel (the HTTP/2 session and the framing,
// shared with the CLI's client) that this class feeds with the stream's
// bytes and whose output it writes to the stream. The client
// (runtime/etcd/etcd_client.cc) owns the calls, their deadlines and callbacks,
// and the choice of endpoint. Nothing here calls user code.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "proxy/tls_stream.h"
#include "runtime/etcd/etcd_tls.h"
#include "runtime/grpc/channel.h"
#include "workloads/result.h"

namespace podless::runtime {

struct EtcdEndpoint {
  std::string url;   // as given, "http://HOST:PORT" or "https://HOST:PORT"
  std::string host;  // a name or an address literal, without IPv6 brackets
  uint16_t port = 0;
  std::string authority;  // "HOST:PORT" for the :authority header
  bool tls = false;       // https://
};

// Parses "http://HOST[:PORT][/]" or "https://..." (HOST a name, an IPv4
// literal or a bracketed IPv6 literal; PORT defaults to etcd's 2379).
// Anything else is INVALID_ARGUMENT naming the endpoint and what is wrong
// with it.
Result<EtcdEndpoint> ParseEtcdEndpoint(std::string_view url);

class EtcdConnection final : private GrpcChannel::Output, private proxy::StreamHandler {
 public:
  // The listener hears once how the connect ends (OnConnected or
  // OnConnectFailed) and, after OnConnected, at most once that the connection
  // died. Every call comes from a libuv callback of this connection, never
  // from inside one of its methods; the listener must not destroy the
  // connection during the call (retire it and destroy it on a later turn).
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnConnected(EtcdConnection& connection) = 0;
    virtual void OnConnectFailed(EtcdConnection& connection, Error error) = 0;
    // No sink hears anything more from this connection.
    virtual void OnDisconnected(EtcdConnection& connection, Error error) = 0;
  };

  // `tls` is required for an https:// endpoint and ignored otherwise.
  // `dispatcher` (on the loop the connection runs on) must outlive it.
  EtcdConnection(proxy::Dispatcher& dispatcher, EtcdEndpoint endpoint, EtcdTlsContextPtr tls,
                 Listener& listener);
  // Closes the socket; no listener or sink call follows.
  ~EtcdConnection() override;
  EtcdConnection(const EtcdConnection&) = delete;
  EtcdConnection& operator=(const EtcdConnection&) = delete;

  // Resolves the host (every address in turn), connects and, for https://,
  // completes the TLS handshake, all within `timeout`. With TLS the
  // connection is up once etcd's first HTTP/2 bytes arrive: under TLS 1.3
  // the server checks the client certificate after the client considers the
  // handshake done, so a refusal ("certificate required") still counts as a
  // failed connect, not as a connection lost.
  void Connect(std::chrono::milliseconds timeout);

  // Starts a gRPC call to `path` ("/etcdserverpb.KV/Range"); `timeout`, when
  // given, goes out as grpc-timeout. Returns the stream id. The sink must stay
  // alive until its OnGrpcClose or until Cancel.
  Result<int32_t> StartCall(const std::string& path,
                            std::optional<std::chrono::milliseconds> timeout, GrpcStreamSink& sink);
  // The sink of `stream_id` has more to send.
  void Resume(int32_t stream_id);
  // Resets the stream (CANCEL) and forgets its sink: no hook runs for it.
  void Cancel(int32_t stream_id);

  bool up() const { return state_ == State::kUp; }
  const EtcdEndpoint& endpoint() const { return endpoint_; }

 private:
  // kHandshaking: TCP is up, TLS (and then etcd's first bytes) pending.
  enum class State { kIdle, kResolving, kConnecting, kHandshaking, kUp, kFailed };
  struct ResolveRequest;

  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* result);
  void ConnectNextAddress();
  void OnTcpConnected(Result<proxy::TcpStream*> connected);
  void OnTlsHandshake(Status status);
  // The stream is connected (and TLS done): the HTTP/2 session starts on it.
  void StartSession(proxy::Stream* stream);
  // The connection is usable: listener_.OnConnected.
  void Established();
  // Milliseconds left of the connect timeout (at least 1).
  uint64_t ConnectTimeLeft() const;
  // GrpcChannel::Output: plaintext for etcd (the TLS stream seals it).
  Status Send(std::string bytes) override;
  // proxy::StreamHandler: etcd's plaintext, its end, the stream's end.
  void OnData(std::string_view bytes) override;
  void OnEnd() override;
  void OnClosed(bool reset) override;
  // Why the peer went away, with the likely cause when it said nothing.
  std::string ClosedReason(std::string what) const;
  // Hands everything the channel wants to send to the stream.
  void Flush();
  // Fails the connection with `status`'s error, if it is one.
  void FailOn(const Status& status);
  // Closes the stream and tells the listener on a later loop turn.
  void Fail(ErrorCode code, std::string reason);
  void OnConnectTimeout();
  void Notify();
  void PingTick();

  proxy::Dispatcher& dispatcher_;
  uv_loop_t* loop_;
  EtcdEndpoint endpoint_;
  EtcdTlsContextPtr tls_context_;  // null for http://
  Listener& listener_;
  State state_ = State::kIdle;
  bool was_up_ = false;
  uint64_t connect_timeout_ms_ = 0;
  uint64_t connect_deadline_ = 0;  // loop time
  std::vector<sockaddr_storage> addresses_;
  size_t next_address_ = 0;
  std::string last_connect_error_;
  ResolveRequest* resolving_ = nullptr;  // owned by libuv until its callback
  std::unique_ptr<proxy::TcpConnector> connector_;
  // The TLS stream from its start until the Dispatcher deletes it (it may
  // linger after a failed handshake to flush its alert): cleared by its
  // destroy callback, which keeps its failure in tls_failure_.
  proxy::TlsStream* tls_ = nullptr;
  std::string tls_failure_;
  bool tls_lingering_ = false;  // its handshake failed: it closes itself
  // What the channel rides on (the TcpStream, or the TlsStream over it);
  // owns itself, null once closed.
  proxy::Stream* stream_ = nullptr;
  proxy::Timer connect_timer_;  // OnConnectTimeout
  proxy::Timer notify_timer_;   // Notify, on the turn after a failure
  // While streams are open, a PING every kPingInterval; one still unanswered
  // at the next tick means a dead peer (a half-open TCP connection never
  // errors on its own, and a watch would wait forever).
  proxy::Timer ping_timer_;    // PingTick
  GrpcChannelPtr channel_;     // once TCP (and TLS) is up
  bool received_any_ = false;  // etcd sent bytes: a close after that is no scheme mismatch
  Error failure_;
};

using EtcdConnectionPtr = std::unique_ptr<EtcdConnection>;

}  // namespace podless::runtime
