// TcpListener: a listening TCP socket that hands each accepted connection
// over as a TcpStream, and survives running out of file descriptors.
//
// libuv's own accept loop (uv_listen) meets EMFILE by silently accepting and
// closing every pending connection: nothing is logged, nothing counted. This
// listener accepts itself (accept4 on a socket watched with uv_poll) so it
// can say what happened: on EMFILE/ENFILE/ENOBUFS/ENOMEM it
//   - counts podless_accept_errors_total{listener, error},
//   - logs one clear line (then at most one every 10 s, with how many
//     accepts failed meanwhile, and one when accepting works again),
//   - sheds the connections pending right now, using a reserved descriptor
//     (closed for the moment of one accept, then reopened), so their
//     clients see a prompt close instead of hanging in the backlog,
//   - stops accepting for a backoff (50 ms, doubling up to 1 s, reset by
//     the next successful accept), so the loop never spins on a socket that
//     stays readable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "proxy/connection_metrics.h"
#include "proxy/dispatcher.h"
#include "proxy/tcp_stream.h"
#include "proxy/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

// Where the proxy writes its few operational messages (the runtime passes
// its logger; the default writes "podless: <message>" to stderr).
using LogFunction = std::function<void(const std::string& message)>;
void LogToStderr(const std::string& message);

class TcpListener {
 public:
  using AcceptCallback = std::function<void(TcpStream* stream)>;

  struct Options {
    std::string name;  // "hbone", "outbound", "plaintext": the metric label
    std::string bind = "0.0.0.0";
    uint16_t port = 0;  // 0: any free port
    int backlog = 1024;
    ProxyMetrics* metrics = nullptr;  // may be null (no counting)
    LogFunction log = LogToStderr;
  };

  // Binds and listens (SO_REUSEADDR, like uv_tcp_bind); `on_accept` gets
  // every accepted connection, on the loop.
  static Result<std::unique_ptr<TcpListener>> Create(Dispatcher& dispatcher, Options options,
                                                     AcceptCallback on_accept);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  uint16_t port() const { return port_; }
  // "0.0.0.0:15008"
  std::string address() const;
  // accept() failures since the start (any errno but EAGAIN/ECONNABORTED).
  uint64_t accept_errors() const { return accept_errors_; }
  // Stops listening (the socket is closed). Idempotent.
  void Close();

 private:
  TcpListener(Dispatcher& dispatcher, Options options, AcceptCallback on_accept)
      : dispatcher_(dispatcher), options_(std::move(options)), on_accept_(std::move(on_accept)) {}

  void OnReadable();
  void OnAcceptError(int err);
  void Resume();

  Dispatcher& dispatcher_;
  Options options_;
  AcceptCallback on_accept_;
  int fd_ = -1;
  uint16_t port_ = 0;
  UvHandle<uv_poll_t> poll_;
  TimerHandle backoff_timer_;
  uint64_t backoff_ms_ = 0;  // 0: not backing off
  uint64_t accept_errors_ = 0;
  uint64_t unlogged_errors_ = 0;
  uint64_t last_log_ms_ = 0;
  bool failing_ = false;  // the last accept failed (for the "accepting again" line)
};

using TcpListenerPtr = std::unique_ptr<TcpListener>;

}  // namespace podless::proxy
