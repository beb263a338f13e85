#include "proxy/base/tcp_stream.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "proxy/base/log.h"
#include "proxy/base/netns.h"

namespace podless::proxy {

namespace {
constexpr size_t kMaxIovecs = 64;
// Writes at least this large skip the queue when it is empty: copying them
// costs more than the system call they get to themselves (a TLS record
// of bulk data is 16 KiB).
constexpr size_t kDirectWriteMin = 8 << 10;

TcpStream* FromHandle(void* data) { return static_cast<TcpStream*>(data); }
}  // namespace

std::string FormatAddressPort(uint32_t address, uint16_t port) {
  return std::to_string(address >> 24) + "." + std::to_string((address >> 16) & 0xff) + "." +
         std::to_string((address >> 8) & 0xff) + "." + std::to_string(address & 0xff) + ":" +
         std::to_string(port);
}

std::string FormatSockaddr(const sockaddr& address) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (address.sa_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(address);
    uv_ip6_name(&a6, ip, sizeof(ip));
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a6.sin6_port));
  }
  if (address.sa_family == AF_INET) {
    const auto& a4 = reinterpret_cast<const sockaddr_in&>(address);
    return FormatAddressPort(ntohl(a4.sin_addr.s_addr), ntohs(a4.sin_port));
  }
  return "?";
}

sockaddr_in MakeSockaddr(uint32_t address, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(address);
  addr.sin_port = htons(port);
  return addr;
}

namespace {
std::atomic<uint64_t> g_next_stream_id{1};
}  // namespace

TcpStream::TcpStream(Dispatcher& dispatcher)
    : dispatcher_(dispatcher), id_(g_next_stream_id.fetch_add(1, std::memory_order_relaxed)) {
  // uv_tcp_init without flags creates no socket and always returns 0.
  (void)uv_tcp_init(dispatcher.loop(), &tcp_);
  tcp_.data = this;
}

TcpStream* TcpStream::Accept(Dispatcher& dispatcher, uv_stream_t* server) {
  auto* stream = new TcpStream(dispatcher);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&stream->tcp_)) != 0) {
    stream->closed_ = true;
    stream->CloseHandle();
    return nullptr;
  }
  stream->SetNoDelay();
  return stream;
}

TcpStream* TcpStream::Adopt(Dispatcher& dispatcher, int fd) {
  auto* stream = new TcpStream(dispatcher);
  if (uv_tcp_open(&stream->tcp_, fd) != 0) {
    ::close(fd);
    stream->closed_ = true;
    stream->CloseHandle();
    return nullptr;
  }
  stream->SetNoDelay();
  return stream;
}

void TcpStream::SetWriteStallTimeout(uint64_t timeout_ms, Counter* fired) {
  stall_timeout_ms_ = timeout_ms;
  stall_fired_ = fired;
  if (timeout_ms == 0 && stall_timer_) stall_timer_->Stop();
  ArmStallTimer();
}

void TcpStream::SetWatermarks(size_t high, size_t low) {
  high_watermark_ = high;
  low_watermark_ = low;
  // Bytes already queued count against the new mark.
  if (out_.size() > high_watermark_) above_high_ = true;
}

uint64_t TcpStream::BytesWritten() const {
  return submitted_ - uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_));
}

void TcpStream::ArmStallTimer() {
  if (stall_timeout_ms_ == 0 || closed_ || in_flight_ == 0) return;
  if (!stall_timer_) {
    // The kernel took every byte already (the usual case: uv_write tries at
    // once): nothing can stall, so an idle connection never gets a timer.
    if (uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_)) == 0) return;
    stall_timer_ = std::make_unique<Timer>(dispatcher_.loop(), [this] { OnStallTick(); });
  }
  if (stall_timer_->IsActive()) return;
  stall_mark_ = BytesWritten();
  stall_since_ = uv_now(dispatcher_.loop());
  // Checked a few times per period: progress is noticed between ticks, so a
  // stall is cut off after between 1 and 1.25 periods.
  uint64_t tick = std::max<uint64_t>(stall_timeout_ms_ / 4, 10);
  stall_timer_->Start(tick, tick);
}

void TcpStream::OnStallTick() {
  if (closed_ || in_flight_ == 0) {
    stall_timer_->Stop();
    return;
  }
  uint64_t now = uv_now(dispatcher_.loop());
  uint64_t written = BytesWritten();
  if (written != stall_mark_) {
    stall_mark_ = written;
    stall_since_ = now;
    return;
  }
  if (now - stall_since_ < stall_timeout_ms_) return;
  stall_timer_->Stop();
  if (stall_fired_ != nullptr) stall_fired_->Inc();
  Fail();
}

void TcpStream::SetNoDelay() {
  // Nagle's algorithm only delays small writes: a socket that refuses
  // TCP_NODELAY still works, so the failure is logged, not fatal.
  int rc = uv_tcp_nodelay(&tcp_, 1);
  if (rc != 0 && LogEnabled(LogLevel::kDebug)) {
    Log(LogLevel::kDebug, "proxy",
        "conn=" + std::to_string(id_) + " TCP_NODELAY: " + uv_strerror(rc));
  }
}

void TcpStream::CloseHandle() {
  if (LogEnabled(LogLevel::kDebug))
    Log(LogLevel::kDebug, "proxy", "conn=" + std::to_string(id_) + " closed");
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
           [](uv_handle_t* handle) { delete FromHandle(handle->data); });
}

uint32_t TcpStream::LocalAddress() const {
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family != AF_INET) return 0;
  return ntohl(reinterpret_cast<sockaddr_in*>(&addr)->sin_addr.s_addr);
}

uint16_t TcpStream::LocalPort() const {
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family != AF_INET) return 0;
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

uint32_t TcpStream::PeerAddress() const {
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family != AF_INET) return 0;
  return ntohl(reinterpret_cast<sockaddr_in*>(&addr)->sin_addr.s_addr);
}

void TcpStream::SetHandler(StreamHandler* handler) {
  handler_ = handler;
  if (!read_paused_) StartReading();
}

void TcpStream::StartReading() {
  if (reading_ || eof_ || closed_ || handler_ == nullptr) return;
  int rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t* handle, size_t, uv_buf_t* buf) {
        *buf = FromHandle(handle->data)->dispatcher_.ReadBuffer();
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        FromHandle(s->data)->OnRead(nread, buf);
      });
  if (rc == 0) {
    reading_ = true;
    return;
  }
  // A socket that cannot be read (not connected, or broken) would hang its
  // handler: it fails on the next turn, never inside the caller's call.
  dispatcher_.Schedule(this);
}

void TcpStream::SetReadPaused(bool paused) {
  read_paused_ = paused;
  if (closed_) return;
  if (paused && reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  } else if (!paused) {
    StartReading();
  }
}

void TcpStream::OnRead(ssize_t nread, const uv_buf_t* buf) {
  if (closed_) return;
  if (nread > 0) {
    handler_->OnData(std::string_view(buf->base, nread));
    return;
  }
  if (nread == UV_EOF) {
    eof_ = true;
    reading_ = false;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    handler_->OnEnd();
    if (!closed_) MaybeFinish();
    return;
  }
  if (nread < 0) Fail();
}

void TcpStream::Write(std::string_view bytes) {
  if (closed_ || end_requested_ || bytes.empty()) return;
  if (bytes.size() >= kDirectWriteMin && out_.empty() && in_flight_ == 0) {
    // Nothing queued ahead: hand the caller's bytes to the kernel now and
    // copy only what the socket does not take (an error is left for the
    // queued write to report, on the next turn). Small writes are queued
    // instead, so many of them in one turn share one writev.
    uv_buf_t buf = uv_buf_init(const_cast<char*>(bytes.data()), bytes.size());
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    if (n > 0) {
      submitted_ += n;
      bytes.remove_prefix(n);
      if (bytes.empty()) return;
    }
  }
  out_.Append(bytes);
  if (out_.size() > high_watermark_) above_high_ = true;
  Flush();
}

void TcpStream::Flush() {
  if (closed_ || in_flight_ > 0) return;
  if (out_.empty()) {
    if (end_requested_ && !shutdown_started_) {
      shutdown_started_ = true;
      shutdown_req_.data = this;
      int rc = uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_),
                           [](uv_shutdown_t* req, int status) {
                             auto* self = FromHandle(req->data);
                             if (self->closed_) return;
                             if (status != 0) {
                               self->Fail();
                               return;
                             }
                             self->shutdown_done_ = true;
                             self->MaybeFinish();
                           });
      if (rc != 0) dispatcher_.Schedule(this);  // fails on the next turn
    }
    return;
  }
  uv_buf_t bufs[kMaxIovecs];
  size_t count = out_.Peek(bufs, kMaxIovecs);
  for (size_t i = 0; i < count; ++i) in_flight_ += bufs[i].len;
  write_req_.data = this;
  int rc =
      uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), bufs, count,
               [](uv_write_t* req, int status) { FromHandle(req->data)->OnWriteDone(status); });
  if (rc != 0) {
    in_flight_ = 0;
    dispatcher_.Schedule(this);  // fails on the next turn, never inside Write()
    return;
  }
  submitted_ += in_flight_;
  ArmStallTimer();
}

void TcpStream::OnWriteDone(int status) {
  size_t written = std::exchange(in_flight_, 0);
  if (closed_) return;
  if (status != 0) {
    Fail();
    return;
  }
  out_.Drain(written);
  if (above_high_ && out_.size() < low_watermark_) {
    above_high_ = false;
    handler_->OnWritable();
    if (closed_) return;
  }
  Flush();
}

void TcpStream::End() {
  if (closed_ || end_requested_) return;
  end_requested_ = true;
  Flush();
}

void TcpStream::MaybeFinish() {
  if (closed_ || !eof_ || !shutdown_done_) return;
  closed_ = true;
  StreamHandler* handler = handler_;
  CloseHandle();
  handler->OnClosed(false);
}

void TcpStream::Fail() {
  if (closed_) return;
  closed_ = true;
  StreamHandler* handler = handler_;
  CloseHandle();
  if (handler != nullptr) handler->OnClosed(true);
}

void TcpStream::Reset() {
  if (closed_) return;
  closed_ = true;
  handler_ = nullptr;
  // RST rather than FIN: the peer must see an abort, not a clean end.
  if (uv_tcp_close_reset(&tcp_, [](uv_handle_t* handle) { delete FromHandle(handle->data); }) !=
      0) {
    CloseHandle();
  }
}

void TcpStream::Close() {
  if (closed_) return;
  closed_ = true;
  handler_ = nullptr;
  CloseHandle();
}

// --- TcpConnector ---------------------------------------------------------

TcpConnector::~TcpConnector() {
  if (request_ != nullptr) request_->data = nullptr;  // the request frees itself
  if (stream_ != nullptr) {
    stream_->closed_ = true;
    stream_->CloseHandle();
  }
}

void TcpConnector::Connect(uint32_t address, uint16_t port, uint64_t timeout_ms, Callback callback,
                           int netns_fd) {
  sockaddr_in addr = MakeSockaddr(address, port);
  Connect(reinterpret_cast<const sockaddr&>(addr), timeout_ms, std::move(callback), netns_fd);
}

void TcpConnector::Connect(const sockaddr& address, uint64_t timeout_ms, Callback callback,
                           int netns_fd) {
  callback_ = std::move(callback);
  target_ = FormatSockaddr(address);
  stream_ = new TcpStream(dispatcher_);
  int rc = 0;
  if (address.sa_family != AF_INET && address.sa_family != AF_INET6) rc = UV_EAFNOSUPPORT;
  if (rc == 0 && netns_fd >= 0) {
    Result<int> sock = SocketInNamespace(netns_fd, address.sa_family, SOCK_STREAM);
    rc = sock.ok() ? uv_tcp_open(&stream_->tcp_, *sock) : UV_EACCES;
    if (sock.ok() && rc != 0) ::close(*sock);
  }
  request_ = new uv_connect_t;
  request_->data = this;
  if (rc == 0)
    rc = uv_tcp_connect(request_, &stream_->tcp_, &address, [](uv_connect_t* req, int status) {
      auto* self = static_cast<TcpConnector*>(req->data);
      delete req;
      if (self == nullptr) return;
      self->request_ = nullptr;
      if (status != 0) {
        self->Finish(MakeError(ErrorCode::kUnavailable,
                               "connect to " + self->target_ + " failed: " + uv_strerror(status)));
        return;
      }
      TcpStream* stream = std::exchange(self->stream_, nullptr);
      stream->SetNoDelay();
      self->Finish(stream);
    });
  if (rc != 0) {
    delete request_;
    request_ = nullptr;
    std::string message = "connect to " + target_ + " failed: " + uv_strerror(rc);
    // Never call back from inside Connect().
    timer_ = std::make_unique<Timer>(dispatcher_.loop(), [this, message = std::move(message)] {
      Finish(MakeError(ErrorCode::kUnavailable, message));
    });
    timer_->Start(0);
    return;
  }
  timer_ = std::make_unique<Timer>(dispatcher_.loop(), [this] {
    Finish(MakeError(ErrorCode::kDeadlineExceeded, "connect to " + target_ + " timed out"));
  });
  timer_->Start(timeout_ms);
}

void TcpConnector::Finish(Result<TcpStream*> result) {
  if (!callback_) return;
  if (timer_) timer_->Stop();
  if (!result.ok() && stream_ != nullptr) {
    // Closing the socket cancels a pending connect; its callback sees
    // request->data == null and only frees the request.
    if (request_ != nullptr) {
      request_->data = nullptr;
      request_ = nullptr;
    }
    stream_->closed_ = true;
    stream_->CloseHandle();
    stream_ = nullptr;
  }
  Callback callback = std::move(callback_);
  callback_ = nullptr;
  callback(std::move(result));
}

}  // namespace podless::proxy
