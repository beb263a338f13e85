// SocketAcceptor: accepts on a listening socket (TCP or Unix) and survives
// running out of file descriptors. Shared by every listener of the agent:
// the proxy's (TcpListener), the admin server and the local API sockets.
//
// libuv's own accept loop (uv_listen) meets EMFILE by silently accepting and
// closing every pending connection with one reserved descriptor: nothing is
// logged, nothing counted, and once that descriptor is lost (another thread
// took the slot while it was closed) it loops on the failing accept. This
// acceptor accepts itself (accept4 on a socket watched with uv_poll) so it
// can say what happened: on EMFILE/ENFILE/ENOBUFS/ENOMEM it
//   - counts the failure (Options::count_error, podless_accept_errors_total
//     {listener, error} where the owner wires it),
//   - logs one clear line (then at most one every 10 s, with how many
//     accepts failed meanwhile, and one when accepting works again),
//   - sheds the connections pending right now, using a reserved descriptor
//     (closed for the moment of one accept, then reopened), so their
//     clients see a prompt close instead of hanging in the backlog,
//   - stops accepting for a backoff (50 ms, doubling up to 1 s, reset by
//     the next successful accept), so the loop never spins on a socket that
//     stays readable.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/base/metrics.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

// Where the proxy writes its few operational messages (the runtime passes
// its logger; the default writes "podless: <message>" to stderr).
using LogFunction = std::function<void(const std::string& message)>;
void LogToStderr(const std::string& message);

// How a listening port is shared. The proxy's worker threads (--workers)
// each listen on the same ports with SO_REUSEPORT, and the kernel spreads
// new connections over them.
enum class PortSharing {
  kExclusive,       // the port is this socket's alone
  kReusePortFirst,  // the first socket of a SO_REUSEPORT group
  kReusePortJoin,   // another socket of the group the first one opened
};

// socket() + SO_REUSEADDR + bind() + listen() on a TCP address (IPv4 or
// IPv6), non-blocking and close-on-exec. The error says what failed in
// libuv's words ("address already in use"); callers add the address.
// kReusePortFirst still refuses a port another socket holds, even one with
// SO_REUSEPORT (a second agent on the same port would otherwise silently
// take half of this one's connections).
Result<int> ListenTcpSocket(const sockaddr* address, int backlog,
                            PortSharing sharing = PortSharing::kExclusive);

// What the proxy's listeners leave to the API and admin sockets: an eighth
// of RLIMIT_NOFILE, at most 256.
uint32_t ProxyDescriptorReserve();

class SocketAcceptor {
 public:
  // Gets each accepted descriptor (non-blocking, close-on-exec) and owns it.
  using AcceptCallback = std::function<void(int fd)>;
  // Counts one failed accept; `error` is "EMFILE", "ENFILE", "ENOBUFS",
  // "ENOMEM", "EPERM" or "other".
  using CountFunction = std::function<void(std::string_view error)>;

  struct Options {
    std::string name;           // "hbone", "admin", "api": the metric label and log prefix
    std::string address;        // for log lines: "127.0.0.1:15000", "/state/api.sock"
    CountFunction count_error;  // may be empty
    LogFunction log = LogToStderr;
    // Descriptors this listener leaves to others: a connection accepted onto
    // one of the top `reserve_descriptors` of RLIMIT_NOFILE is closed at
    // once and counted as error "reserved", like EMFILE (shed, paused,
    // logged). The proxy's listeners keep ProxyDescriptorReserve() back, so
    // that the API and admin sockets (reserve 0) still accept while a flood
    // of connections takes the rest.
    uint32_t reserve_descriptors = 0;
  };

  // Takes `listen_fd` (bound and listening) over, on failure too, and
  // watches it on `loop`.
  static Result<std::unique_ptr<SocketAcceptor>> Adopt(uv_loop_t* loop, int listen_fd,
                                                       Options options, AcceptCallback on_accept);
  ~SocketAcceptor();
  SocketAcceptor(const SocketAcceptor&) = delete;
  SocketAcceptor& operator=(const SocketAcceptor&) = delete;

  int fd() const { return fd_; }
  const Options& options() const { return options_; }
  // accept() failures since the start (any errno but EAGAIN/ECONNABORTED).
  uint64_t accept_errors() const { return accept_errors_; }
  // Stops watching and closes the socket. Idempotent.
  void Close();

 private:
  SocketAcceptor(uv_loop_t* loop, Options options, AcceptCallback on_accept)
      : loop_(loop), options_(std::move(options)), on_accept_(std::move(on_accept)) {}

  void Watch();
  void OnReadable();
  void OnAcceptError(int err);

  uv_loop_t* loop_;
  Options options_;
  AcceptCallback on_accept_;
  int fd_ = -1;
  UvHandle<uv_poll_t> poll_;
  TimerPtr backoff_timer_;
  uint64_t backoff_ms_ = 0;        // 0: not backing off
  uint64_t descriptor_limit_ = 0;  // soft RLIMIT_NOFILE when adopted
  uint64_t accept_errors_ = 0;
  uint64_t unlogged_errors_ = 0;
  uint64_t last_log_ms_ = 0;
  bool failing_ = false;  // the last accept failed (for the "accepting again" line)
  // Cleared by the destructor: an accept callback may destroy the acceptor.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

using SocketAcceptorPtr = std::unique_ptr<SocketAcceptor>;

// podless_accept_errors_total{listener, error} in `registry` (the family the
// proxy's listeners count in), as a CountFunction for `listener`.
SocketAcceptor::CountFunction CountAcceptErrors(Registry& registry, std::string listener);
inline constexpr char kAcceptErrorsHelp[] =
    "accept() failures on the agent's listeners (EMFILE: out of file descriptors).";

}  // namespace podless::proxy
