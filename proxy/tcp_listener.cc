#include "proxy/tcp_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

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
// full. Shared by every listener: only one needs it at a time.
std::atomic<int> g_reserve_fd{-1};

void EnsureReserveFd() {
  if (g_reserve_fd.load() >= 0) return;
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  int expected = -1;
  if (!g_reserve_fd.compare_exchange_strong(expected, fd)) ::close(fd);
}

// Accepts and resets every connection pending on `listen_fd`; returns how
// many were shed.
uint64_t ShedPending(int listen_fd) {
  int reserve = g_reserve_fd.exchange(-1);
  if (reserve < 0) return 0;
  ::close(reserve);
  uint64_t shed = 0;
  for (int i = 0; i < 4096; ++i) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      break;
    }
    // A reset, not a FIN: the client must see a refusal, not an empty answer.
    linger abort{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    ::close(fd);
    ++shed;
  }
  EnsureReserveFd();
  return shed;
}

const char* ErrnoName(int err) {
  switch (err) {
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

void LogToStderr(const std::string& message) {
  std::fprintf(stderr, "podless: %s\n", message.c_str());
  std::fflush(stderr);
}

Result<TcpListenerPtr> TcpListener::Create(Dispatcher& dispatcher, Options options,
                                           AcceptCallback on_accept) {
  TcpListenerPtr listener(new TcpListener(dispatcher, std::move(options), std::move(on_accept)));
  TcpListener& self = *listener;
  std::string where = self.options_.bind + ":" + std::to_string(self.options_.port);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(self.options_.port);
  if (::inet_pton(AF_INET, self.options_.bind.c_str(), &addr.sin_addr) != 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bind address \"" + self.options_.bind + "\" is not IPv4");
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot listen on " + where + ": socket: " + std::strerror(errno));
  }
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, self.options_.backlog) != 0) {
    int err = errno;
    ::close(fd);
    return MakeError(ErrorCode::kUnavailable,
                     "cannot listen on " + where + ": " + uv_strerror(uv_translate_sys_error(err)));
  }
  sockaddr_in bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  self.port_ = ntohs(bound.sin_port);
  self.fd_ = fd;
  int rc = uv_poll_init_socket(dispatcher.loop(), self.poll_.get(), fd);
  if (rc == 0) {
    self.poll_->data = &self;
    rc = uv_poll_start(self.poll_.get(), UV_READABLE, [](uv_poll_t* poll, int, int) {
      if (poll->data != nullptr) static_cast<TcpListener*>(poll->data)->OnReadable();
    });
  }
  if (rc != 0) {
    self.Close();
    return MakeError(ErrorCode::kUnavailable,
                     "cannot listen on " + where + ": " + std::string(uv_strerror(rc)));
  }
  uv_timer_init(dispatcher.loop(), self.backoff_timer_.get());
  self.backoff_timer_->data = &self;
  EnsureReserveFd();
  return listener;
}

TcpListener::~TcpListener() { Close(); }

std::string TcpListener::address() const { return options_.bind + ":" + std::to_string(port_); }

void TcpListener::Close() {
  // Closing the poll handle stops watching at once, so the descriptor can be
  // closed right after.
  poll_.Close();
  backoff_timer_.Close();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void TcpListener::OnReadable() {
  for (int i = 0; i < kAcceptsPerWakeup && fd_ >= 0; ++i) {
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      // The client gave up before we got to it; nothing to do.
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      OnAcceptError(err);
      return;
    }
    if (failing_) {
      failing_ = false;
      options_.log(options_.name + " listener " + address() + ": accepting connections again");
    }
    backoff_ms_ = 0;
    TcpStream* stream = TcpStream::Adopt(dispatcher_, fd);
    if (stream != nullptr) on_accept_(stream);
  }
}

void TcpListener::OnAcceptError(int err) {
  ++accept_errors_;
  if (options_.metrics != nullptr)
    options_.metrics->AcceptError(options_.name, ErrnoName(err)).Inc();
  uint64_t shed = 0;
  if (err == EMFILE || err == ENFILE) shed = ShedPending(fd_);
  backoff_ms_ = backoff_ms_ == 0 ? kFirstBackoffMs : std::min(backoff_ms_ * 2, kMaxBackoffMs);
  uint64_t now = uv_now(dispatcher_.loop());
  if (!failing_ || now - last_log_ms_ >= kLogIntervalMs) {
    std::string message = "error: " + options_.name + " listener " + address() +
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
  // Level-triggered: a socket with connections still pending stays readable,
  // so watching it now would spin. Look again after the backoff.
  uv_poll_stop(poll_.get());
  uv_timer_start(
      backoff_timer_.get(),
      [](uv_timer_t* timer) {
        if (timer->data != nullptr) static_cast<TcpListener*>(timer->data)->Resume();
      },
      backoff_ms_, 0);
}

void TcpListener::Resume() {
  if (fd_ < 0) return;
  uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* poll, int, int) {
    if (poll->data != nullptr) static_cast<TcpListener*>(poll->data)->OnReadable();
  });
}

}  // namespace podless::proxy
