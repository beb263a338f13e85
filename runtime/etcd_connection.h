// EtcdConnection: one HTTP/2 connection to one etcd endpoint, on a libuv
// loop, carrying gRPC calls as streams: cleartext with prior knowledge (h2c)
// for http://, TLS with ALPN h2 for https:// (runtime/etcd_tls.h).
//
// The split of work: this class owns what is particular to reaching etcd:
// the name resolution (every address in turn), the socket, the TLS session
// with etcd's profile, the connect timeout and the PINGs that find a dead
// peer. The gRPC calls themselves run on a runtime::GrpcChannel (the HTTP/2
// session and the framing, shared with the CLI's client) that this class
// feeds with the plaintext it reads and whose output it writes. It is not a
// proxy::Stream because neither data-plane stream fits: proxy::TcpStream
// dials IPv4 only and proxy::TlsStream speaks the HBONE TLS profile, not
// etcd's (see etcd_tls.h). The client (runtime/etcd_client.cc) owns the
// calls, their deadlines and callbacks, and the choice of endpoint. Nothing
// here calls user code.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/timer.h"
#include "proxy/uv_handle.h"
#include "runtime/etcd_tls.h"
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

class EtcdConnection final : private GrpcChannel::Output {
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
  EtcdConnection(uv_loop_t* loop, EtcdEndpoint endpoint, EtcdTlsContextPtr tls, Listener& listener);
  // Closes the socket; no listener or sink call follows.
  ~EtcdConnection();
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
  static void OnTcpConnected(uv_connect_t* req, int status);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);

  void ConnectNextAddress();
  void StartTls();
  void ContinueHandshake();
  Status StartSession();
  // GrpcChannel::Output: plaintext for etcd, sealed first for https://.
  Status Send(std::string bytes) override;
  // The connection is usable: listener_.OnConnected.
  void OnConnectTimeout();
  void Established();
  // Bytes read from the socket: through TLS first for https://.
  void OnTlsData(std::string_view ciphertext);
  void Receive(std::string_view plaintext);
  // Hands everything the channel wants to send to the socket.
  void Flush();
  // Fails the connection with `status`'s error, if it is one.
  void FailOn(const Status& status);
  // Writes to the socket; false (and failed) if it cannot.
  bool WriteToSocket(std::string bytes);
  // Closes the socket and tells the listener on a later loop turn.
  void Fail(ErrorCode code, std::string reason);
  void Notify();
  void PingTick();

  uv_loop_t* loop_;
  EtcdEndpoint endpoint_;
  EtcdTlsContextPtr tls_context_;  // null for http://
  EtcdTlsSessionPtr tls_;          // https://, once TCP is up
  Listener& listener_;
  State state_ = State::kIdle;
  bool was_up_ = false;
  uint64_t connect_timeout_ms_ = 0;
  std::vector<sockaddr_storage> addresses_;
  size_t next_address_ = 0;
  std::string last_connect_error_;
  ResolveRequest* resolving_ = nullptr;  // owned by libuv until its callback
  proxy::TcpHandle tcp_;
  proxy::Timer connect_timer_;  // OnConnectTimeout
  proxy::Timer notify_timer_;   // Notify, on the turn after a failure
  // While streams are open, a PING every kPingInterval; one still unanswered
  // at the next tick means a dead peer (a half-open TCP connection never
  // errors on its own, and a watch would wait forever).
  proxy::Timer ping_timer_;    // PingTick
  GrpcChannelPtr channel_;     // once TCP (and TLS) is up
  bool received_any_ = false;  // etcd sent bytes: a close after that is no scheme mismatch
  Error failure_;
  char read_buffer_[64 * 1024];
};

using EtcdConnectionPtr = std::unique_ptr<EtcdConnection>;

}  // namespace podless::runtime
