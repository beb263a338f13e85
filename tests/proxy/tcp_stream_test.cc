// TcpStream's write-stall timeout: a peer that stops reading is cut off
// (OnClosed(true), counted) once queued bytes make no progress for the
// timeout; a reader that is slow but keeps taking bytes is never cut off,
// however long one write takes to complete.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
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

// A listening socket on [::1], port 0.
struct Ipv6Listener {
  Ipv6Listener() {
    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    socklen_t len = sizeof(address);
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) == 0);
    REQUIRE(listen(fd, 4) == 0);
  }
  ~Ipv6Listener() { close(fd); }
  const sockaddr& sockaddr_ref() const { return reinterpret_cast<const sockaddr&>(address); }
  int fd = -1;
  sockaddr_in6 address{};
};

TEST_CASE("TcpConnector: dials an IPv6 address ([::1]) and the stream carries bytes both ways") {
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  Ipv6Listener listener;
  TcpConnector connector(dispatcher);
  std::optional<Result<TcpStream*>> connected;
  connector.Connect(listener.sockaddr_ref(), 5000,
                    [&](Result<TcpStream*> r) { connected.emplace(std::move(r)); });
  REQUIRE(RunUntil(loop.get(), [&] { return connected.has_value(); }));
  REQUIRE_MESSAGE(connected->ok(), (connected->ok() ? "" : connected->error().message));
  TcpStream* stream = **connected;
  StreamProbe probe;
  stream->SetHandler(&probe);
  const int peer = accept(listener.fd, nullptr, nullptr);
  REQUIRE(peer >= 0);
  stream->Write("ping");
  std::string got;
  REQUIRE(RunUntil(loop.get(), [&] {
    char buf[16];
    ssize_t n = recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got.size() >= 4;
  }));
  CHECK(got == "ping");
  REQUIRE(send(peer, "pong", 4, 0) == 4);
  close(peer);
  REQUIRE(RunUntil(loop.get(), [&] { return probe.ended; }));
  CHECK(probe.data == "pong");
  stream->End();
  REQUIRE(RunUntil(loop.get(), [&] { return probe.closed; }));
}

TEST_CASE("TcpConnector: a refused IPv6 address fails, naming [address]:port") {
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  sockaddr_in6 closed{};
  {
    Ipv6Listener gone;  // a port that was just free: nothing listens there now
    closed = gone.address;
  }
  TcpConnector connector(dispatcher);
  std::optional<Result<TcpStream*>> connected;
  connector.Connect(reinterpret_cast<const sockaddr&>(closed), 5000,
                    [&](Result<TcpStream*> r) { connected.emplace(std::move(r)); });
  REQUIRE(RunUntil(loop.get(), [&] { return connected.has_value(); }));
  REQUIRE_FALSE(connected->ok());
  INFO(connected->error().message);
  CHECK(connected->error().code == ErrorCode::kUnavailable);
  CHECK(connected->error().message.find("[::1]:" + std::to_string(ntohs(closed.sin6_port))) !=
        std::string::npos);
}

TEST_CASE("FormatSockaddr: IPv4 as address:port, IPv6 in brackets") {
  sockaddr_in v4 = MakeSockaddr(0x7f000001, 2379);
  CHECK(FormatSockaddr(reinterpret_cast<const sockaddr&>(v4)) == "127.0.0.1:2379");
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(443);
  inet_pton(AF_INET6, "fd00::1", &v6.sin6_addr);
  CHECK(FormatSockaddr(reinterpret_cast<const sockaddr&>(v6)) == "[fd00::1]:443");
}

// TcpStream carries Unix sockets as well (the gRPC API server's connections,
// the CLI's client): the same reads, writes, half-close and close.
TEST_CASE("TcpStream: an adopted Unix socket carries bytes, half-closes and closes") {
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  TcpStream* stream = TcpStream::Adopt(dispatcher, fds[0]);
  REQUIRE(stream != nullptr);
  CHECK(stream->PeerAddress() == 0);  // no IPv4 address to report
  StreamProbe probe;
  stream->SetHandler(&probe);
  stream->SetWriteStallTimeout(1000, nullptr);

  // Bigger than the socket buffer: the rest is queued and written as the
  // peer reads.
  const std::string big(1 << 20, 'u');
  stream->Write(big);
  stream->End();
  std::string got;
  bool eof = false;
  REQUIRE(RunUntil(loop.get(), [&] {
    char buf[64 << 10];
    for (;;) {
      ssize_t n = recv(fds[1], buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) eof = true;
      break;
    }
    return eof;
  }));
  CHECK(got == big);  // every byte, then the FIN of End()

  REQUIRE(send(fds[1], "from peer", 9, 0) == 9);
  close(fds[1]);
  REQUIRE(RunUntil(loop.get(), [&] { return probe.closed; }));
  CHECK(probe.data == "from peer");
  CHECK(probe.ended);
  CHECK_FALSE(probe.reset);  // both directions finished
}

TEST_CASE("TcpStream: Reset of an adopted Unix socket closes it (the peer reads EOF)") {
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  TcpStream* stream = TcpStream::Adopt(dispatcher, fds[0]);
  REQUIRE(stream != nullptr);
  StreamProbe probe;
  stream->SetHandler(&probe);
  stream->Reset();
  char buf[4];
  ssize_t n = -1;
  REQUIRE(RunUntil(loop.get(), [&] {
    n = recv(fds[1], buf, sizeof(buf), MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }));
  CHECK(n == 0);
  CHECK_FALSE(probe.closed);  // no callback after Reset
  close(fds[1]);
}

}  // namespace
}  // namespace podless::proxy
