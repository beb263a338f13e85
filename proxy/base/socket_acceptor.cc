#include "proxy/base/socket_acceptor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "proxy/base/log.h"

namespace podless::proxy {

namespace {

// Accepts per readable event: enough to drain a burst, few enough that one
// busy listener does not starve the rest of the loop.
constexpr int kAcceptsPerWakeup = 128;
constexpr uint64_t kFirstBackoffMs = 50;
constexpr uint64_t kMaxBackoffMs = 1000;
constexpr uint64_t kLogIntervalMs = 10'000;

// One descriptor kept open for the whole process, given up for the moment
// it takes to accept (and close) the connections pending when the table is
// full. Shared by every acceptor: only one needs it at a time.
std::atomic<int> g_reserve_fd{-1};
// Held while the reserve is given up (ShedPending) and around every
// acceptor's accept4: with the proxy's worker threads, another acceptor's
// accept would otherwise take the slot the reserve freed, and the reserve
// could not be reopened while the table stays full (then nothing is shed
// and clients hang in the backlog).
std::mutex g_descriptor_slot;

void EnsureReserveFd() {
  if (g_reserve_fd.load() >= 0) return;
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  int expected = -1;
  if (!g_reserve_fd.compare_exchange_strong(expected, fd)) ::close(fd);
}

// Accepts and closes every connection pending on `listen_fd`; returns how
// many were shed. Without the reserve (lost to another thread's open while
// it was closed) nothing is shed: the backoff still keeps the loop calm.
uint64_t ShedPending(int listen_fd) {
  std::lock_guard<std::mutex> slot(g_descriptor_slot);
  int reserve = g_reserve_fd.exchange(-1);
  if (reserve < 0) {
    EnsureReserveFd();
    return 0;
  }
  ::close(reserve);
  uint64_t shed = 0;
  for (int i = 0; i < 4096; ++i) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      break;
    }
    // TCP: a reset, not a FIN: the client must see a refusal, not an empty
    // answer. (A Unix socket ignores it: its client reads EOF.)
    linger abort{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    ::close(fd);
    ++shed;
  }
  EnsureReserveFd();
  return shed;
}

// OnAcceptError's code for a connection refused to keep the reserve.
constexpr int kReserved = -1;

const char* ErrnoName(int err) {
  switch (err) {
    case kReserved:
      return "reserved";
    case EMFILE:
      return "EMFILE";
    case ENFILE:
      return "ENFILE";
    case ENOBUFS:
      return "ENOBUFS";
    case ENOMEM:
      return "ENOMEM";
    case EPERM:
      return "EPERM";
    default:
      return "other";
  }
}

std::string DescribeAcceptError(int err) {
  if (err == kReserved) {
    return "the last file descriptors of RLIMIT_NOFILE are held back for the API and admin "
           "sockets (raise it with ulimit -n)";
  }
  std::string text = std::string(std::strerror(err)) + " (" + ErrnoName(err) + ")";
  if (err == EMFILE) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      text += ": the process has used all " + std::to_string(limit.rlim_cur) +
              " file descriptors of its RLIMIT_NOFILE (raise it with ulimit -n)";
    }
  } else if (err == ENFILE) {
    text += ": the system-wide file table is full (fs.file-max)";
  }
  return text;
}

}  // namespace

void LogToStderr(const std::string& message) { Log(LogLevel::kWarning, "proxy", message); }

namespace {

uint16_t PortOf(const sockaddr* address) {
  if (address->sa_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(address)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(address)->sin_port);
}

// A bound (not listening) socket, or the error. `reuse_port`: SO_REUSEPORT.
Result<int> BoundSocket(const sockaddr* address, bool reuse_port) {
  int fd = ::socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return MakeError(ErrorCode::kUnavailable, std::string("socket: ") + std::strerror(errno));
  }
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
    int err = errno;
    ::close(fd);
    return MakeError(ErrorCode::kUnavailable,
                     std::string("SO_REUSEPORT: ") + uv_strerror(uv_translate_sys_error(err)));
  }
  socklen_t length = address->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, address, length) != 0) {
    int err = errno;
    ::close(fd);
    return MakeError(ErrorCode::kUnavailable, uv_strerror(uv_translate_sys_error(err)));
  }
  return fd;
}

}  // namespace

Result<int> ListenTcpSocket(const sockaddr* address, int backlog, PortSharing sharing) {
  if (sharing == PortSharing::kReusePortFirst && PortOf(address) != 0) {
    // A bind without SO_REUSEPORT fails on a port anyone holds.
    Result<int> probe = BoundSocket(address, /*reuse_port=*/false);
    if (!probe.ok()) return probe.error();
    ::close(*probe);
  }
  Result<int> fd = BoundSocket(address, sharing != PortSharing::kExclusive);
  if (!fd.ok()) return fd.error();
  if (::listen(*fd, backlog) != 0) {
    int err = errno;
    ::close(*fd);
    return MakeError(ErrorCode::kUnavailable, uv_strerror(uv_translate_sys_error(err)));
  }
  return *fd;
}

SocketAcceptor::CountFunction CountAcceptErrors(Registry& registry, std::string listener) {
  CounterFamily& family =
      registry.AddCounter("podless_accept_errors_total", kAcceptErrorsHelp, {"listener", "error"});
  // Exported at 0 from the start, like the proxy's other failure counters.
  family.WithLabels({listener, "EMFILE"});
  return [&family, listener = std::move(listener)](std::string_view error) {
    family.WithLabels({listener, error}).Inc();
  };
}

Result<SocketAcceptorPtr> SocketAcceptor::Adopt(uv_loop_t* loop, int listen_fd, Options options,
                                                AcceptCallback on_accept) {
  SocketAcceptorPtr acceptor(new SocketAcceptor(loop, std::move(options), std::move(on_accept)));
  acceptor->fd_ = listen_fd;
  rlimit files{};
  acceptor->descriptor_limit_ =
      ::getrlimit(RLIMIT_NOFILE, &files) == 0 ? static_cast<uint64_t>(files.rlim_cur) : 0;
  ::fcntl(listen_fd, F_SETFL, ::fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
  int rc = uv_poll_init_socket(loop, acceptor->poll_.get(), listen_fd);
  if (rc == 0) {
    acceptor->poll_->data = acceptor.get();
    SocketAcceptor* self = acceptor.get();
    acceptor->backoff_timer_ = std::make_unique<Timer>(loop, [self] { self->Watch(); });
    acceptor->Watch();
  }
  if (rc != 0) {
    acceptor->Close();
    return MakeError(ErrorCode::kUnavailable,
                     "cannot watch the listening socket: " + std::string(uv_strerror(rc)));
  }
  EnsureReserveFd();
  return acceptor;
}

SocketAcceptor::~SocketAcceptor() {
  *alive_ = false;
  Close();
}

void SocketAcceptor::Close() {
  // Closing the poll handle stops watching at once, so the descriptor can be
  // closed right after.
  poll_.Close();
  backoff_timer_.reset();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void SocketAcceptor::Watch() {
  if (fd_ < 0 || poll_.get() == nullptr) return;
  int rc = uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* poll, int, int) {
    if (poll->data != nullptr) static_cast<SocketAcceptor*>(poll->data)->OnReadable();
  });
  if (rc != 0) {
    // Only a closing handle or a broken descriptor refuses: accepting is over.
    options_.log("error: " + options_.name + " listener " + options_.address +
                 ": cannot watch the listening socket: " + uv_strerror(rc));
  }
}

void SocketAcceptor::OnReadable() {
  std::shared_ptr<bool> alive = alive_;
  for (int i = 0; i < kAcceptsPerWakeup && fd_ >= 0; ++i) {
    int fd;
    int err;
    {
      std::lock_guard<std::mutex> slot(g_descriptor_slot);
      fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      err = errno;
    }
    if (fd < 0) {
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      // The client gave up before we got to it; nothing to do.
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      OnAcceptError(err);
      return;
    }
    if (failing_) {
      failing_ = false;
      options_.log(options_.name + " listener " + options_.address +
                   ": accepting connections again");
    }
    if (options_.reserve_descriptors != 0 && descriptor_limit_ != 0 &&
        static_cast<uint64_t>(fd) + options_.reserve_descriptors >= descriptor_limit_) {
      // Descriptors are handed out lowest first: this one is among the
      // reserved ones, so nearly all below it are taken.
      ::close(fd);
      OnAcceptError(kReserved);
      return;
    }
    backoff_ms_ = 0;
    on_accept_(fd);
    if (!*alive) return;  // the callback destroyed us
  }
}

void SocketAcceptor::OnAcceptError(int err) {
  ++accept_errors_;
  if (options_.count_error) options_.count_error(ErrnoName(err));
  uint64_t shed = 0;
  if (err == EMFILE || err == ENFILE || err == kReserved) shed = ShedPending(fd_);
  backoff_ms_ = backoff_ms_ == 0 ? kFirstBackoffMs : std::min(backoff_ms_ * 2, kMaxBackoffMs);
  uint64_t now = uv_now(loop_);
  if (!failing_ || now - last_log_ms_ >= kLogIntervalMs) {
    std::string message = "error: " + options_.name + " listener " + options_.address +
                          ": accept failed: " + DescribeAcceptError(err) + "; " +
                          std::to_string(shed) + " pending connection(s) refused, accepting " +
                          "paused for " + std::to_string(backoff_ms_) + " ms";
    if (unlogged_errors_ > 0) {
      message += " (" + std::to_string(unlogged_errors_) + " more accept failures since the " +
                 "last message)";
    }
    options_.log(message);
    last_log_ms_ = now;
    unlogged_errors_ = 0;
  } else {
    ++unlogged_errors_;
  }
  failing_ = true;
  if (poll_.get() == nullptr || !backoff_timer_) return;
  // Level-triggered: a socket with connections still pending stays readable,
  // so watching it now would spin. Look again after the backoff.
  (void)uv_poll_stop(poll_.get());  // Always returns 0.
  backoff_timer_->Start(backoff_ms_);
}

uint32_t ProxyDescriptorReserve() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) return 256;
  return static_cast<uint32_t>(std::min<uint64_t>(256, files.rlim_cur / 8));
}

}  // namespace podless::proxy
