// TcpStream's write-stall timeout: a peer that stops reading is cut off
// (OnClosed(true), counted) once queued bytes make no progress for the
// timeout; a reader that is slow but keeps taking bytes is never cut off,
// however long one write takes to complete.
#include <doctest/doctest.h>

#include <sys/socket.h>

#include <chrono>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/tcp_listener.h"
#include "tests/proxy/fake_directory.h"
#include "tests/proxy/peer_helpers.h"

namespace podless::proxy {
namespace {

using testing::Ip;
using testing::RawSocket;
using testing::RunUntil;
using testing::StreamProbe;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One accepted connection with a small kernel send buffer (so the proxy's
// queue backs up quickly) and `payload` queued for the client at once.
struct StallFixture {
  StallFixture(uint64_t stall_timeout_ms, size_t payload) : dispatcher(loop.get()) {
    TcpListener::Options options;
    options.name = "test";
    options.listen.bind = "127.0.0.1";
    auto created =
        TcpListener::Create(dispatcher, options, [this](TcpStream* tcp) { server = tcp; });
    REQUIRE(created.ok());
    listener = std::move(created).value();
    client = std::make_unique<RawSocket>(Ip("127.0.0.1"), listener->port(), 4096);
    REQUIRE(RunUntil(loop.get(), [&] { return server != nullptr; }));
    uv_os_fd_t fd = -1;
    REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(server->tcp()), &fd) == 0);
    int small = 16 << 10;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    server->SetHandler(&probe);
    // The stall timer counts from the loop's clock: bring it to now, and
    // measure from the same moment (a slow build, e.g. under TSan, takes
    // tens of ms between the last loop turn and here).
    uv_update_time(loop.get());
    armed_ms = NowMs();
    server->SetWriteStallTimeout(stall_timeout_ms, &fired);
    server->Write(std::string(payload, 'p'));
  }
  ~StallFixture() {
    if (!probe.closed) server->Reset();
    listener->Close();
  }

  UvLoop loop;
  Dispatcher dispatcher;
  TcpListenerPtr listener;
  std::unique_ptr<RawSocket> client;
  TcpStream* server = nullptr;
  StreamProbe probe;
  Counter fired;
  int64_t armed_ms = 0;  // when the stall timer was armed
};

TEST_CASE("TcpStream: a peer that stops reading is cut off after the write-stall timeout") {
  StallFixture f(200, 4 << 20);
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return f.probe.closed; }, 5000));
  int64_t took = NowMs() - f.armed_ms;
  CHECK(f.probe.reset);
  CHECK(f.fired.value() == 1);
  CHECK(took >= 190);
  CHECK(took < 2000);
}

TEST_CASE("TcpStream: a reader that is slow but steady is never cut off") {
  // 384 KiB read 8 KiB every 40 ms: about 2 s, during which the proxy's
  // write stays incomplete far longer than the 200 ms timeout, but every
  // check sees progress.
  const size_t payload = 384 << 10;
  StallFixture f(200, payload);
  size_t received = 0;
  int64_t last_read = 0;
  bool closed = false;
  CHECK(RunUntil(
      f.loop.get(),
      [&] {
        int64_t now = NowMs();
        if (now - last_read >= 40) {
          last_read = now;
          char buf[8 << 10];
          ssize_t n = ::recv(f.client->fd(), buf, sizeof(buf), MSG_DONTWAIT);
          if (n > 0) received += static_cast<size_t>(n);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
        }
        return closed || received >= payload;
      },
      20000));
  CHECK_FALSE(closed);
  CHECK_FALSE(f.probe.closed);
  CHECK(received == payload);
  CHECK(f.fired.value() == 0);
}

TEST_CASE("TcpStream: an idle connection with nothing to send never times out") {
  StallFixture f(100, 0);
  RunUntil(
      f.loop.get(), [] { return false; }, 400);
  CHECK_FALSE(f.probe.closed);
  CHECK(f.fired.value() == 0);
}

}  // namespace
}  // namespace podless::proxy
