// TcpListener: a listening TCP socket that hands each accepted connection
// over as a TcpStream, and survives running out of file descriptors.
//
// Accepting, and what happens on EMFILE (logged once per episode, counted
// in podless_accept_errors_total{listener, error}, pending connections
// shed, accepting paused instead of spinning), is SocketAcceptor's; see
// socket_acceptor.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/base/socket_acceptor.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/uv_handle.h"
#include "proxy/connection_metrics.h"
#include "workloads/result.h"

namespace podless::proxy {

// Where a listener binds: part of every server's options (HBONE, outbound
// entry, plaintext ports), handed down to its TcpListener as it is.
struct ListenOptions {
  std::string bind = "0.0.0.0";
  uint16_t port = 0;                              // 0: any free port
  PortSharing sharing = PortSharing::kExclusive;  // worker threads share the port
  int backlog = 1024;
};

class TcpListener {
 public:
  using AcceptCallback = std::function<void(TcpStream* stream)>;

  struct Options {
    std::string name;  // "hbone", "outbound", "plaintext": the metric label
    ListenOptions listen;
    ProxyMetrics* metrics = nullptr;  // may be null (no counting)
    LogFunction log = LogToStderr;
  };

  // Binds and listens (SO_REUSEADDR, like uv_tcp_bind); `on_accept` gets
  // every accepted connection, on the loop.
  static Result<std::unique_ptr<TcpListener>> Create(Dispatcher& dispatcher, Options options,
                                                     AcceptCallback on_accept);
  // Accepts on a copy (dup) of `listen_fd`, a socket already bound and
  // listening, which may live in another network namespace (proxy/base/netns.h).
  static Result<std::unique_ptr<TcpListener>> Adopt(Dispatcher& dispatcher, int listen_fd,
                                                    Options options, AcceptCallback on_accept);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  uint16_t port() const { return port_; }
  // "0.0.0.0:15008"
  std::string address() const;
  // accept() failures since the start (any errno but EAGAIN/ECONNABORTED).
  uint64_t accept_errors() const { return acceptor_ ? acceptor_->accept_errors() : 0; }
  // Stops listening (the socket is closed). Idempotent.
  void Close();

 private:
  TcpListener(Dispatcher& dispatcher, Options options, AcceptCallback on_accept)
      : dispatcher_(dispatcher), options_(std::move(options)), on_accept_(std::move(on_accept)) {}

  // Watches `fd` (bound and listening; owned from here on).
  Status Watch(int fd);

  Dispatcher& dispatcher_;
  Options options_;
  AcceptCallback on_accept_;
  uint16_t port_ = 0;
  SocketAcceptorPtr acceptor_;
};

using TcpListenerPtr = std::unique_ptr<TcpListener>;

}  // namespace podless::proxy
