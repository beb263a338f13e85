// Slow-loris peers against ProxyCore (issue 8): a TLS handshake never
// finished, an HTTP/2 preface never sent, a CONNECT stream never read, a
// socket never read, an outbound-entry request never completed. Each is cut
// off after its (here shortened) timeout and counted in
// podless_peer_timeouts_total, while a well-behaved client is served in the
// meantime.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "proxy/base/tcp_stream.h"
#include "proxy/connection_pool.h"
#include "proxy/proxy_core.h"
#include "tests/proxy/fake_directory.h"
#include "tests/proxy/peer_helpers.h"

namespace podless::proxy {
namespace {

using testing::Capture;
using testing::FakeDirectory;
using testing::FreePort;
using testing::HboneTestClient;
using testing::Ip;
using testing::MetricValue;
using testing::RawSocket;
using testing::RunLoopDuring;
using testing::RunUntil;
using testing::StreamProbe;

constexpr char kWebIdentity[] = "spiffe://cluster.local/ns/shop/sa/web";
constexpr uint64_t kTimeoutMs = 300;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct SlowFixture {
  explicit SlowFixture(uint64_t timeout_ms = kTimeoutMs,
                       uint64_t idle_timeout_ms = kDefaultHboneServerIdleTimeoutMs) {
    tcp_port = FreePort();
    http_port = FreePort();
    directory.AddReplica("127.64.0.5", "web", "shop", "web",
                         {{"tcp", tcp_port, workloads::Protocol::kTCP},
                          {"http", http_port, workloads::Protocol::kHTTP}});
    directory.AddReplica("127.64.0.7", "frontend", "shop", "frontend", {});
    directory.AddCredentials("frontend", "s3cret", "127.64.0.7");
    ProxyConfig config;
    config.hbone.listen.port = 0;
    config.outbound.listen.port = 0;
    config.SetHandshakeTimeout(timeout_ms);
    config.hbone.preface_timeout_ms = timeout_ms;
    config.hbone.stream_stall_timeout_ms = timeout_ms;
    config.hbone.idle_timeout_ms = idle_timeout_ms;
    config.SetWriteStallTimeout(timeout_ms);
    config.outbound.request_timeout_ms = timeout_ms;
    auto created = ProxyCore::Create(loop.get(), directory, config, registry);
    REQUIRE(created.ok());
    core = std::move(created).value();
    directory.hbone_port = core->hbone_port();
  }
  ~SlowFixture() { core->Close(); }

  double Timeouts(const std::string& kind) {
    return MetricValue(registry.Render(), "podless_peer_timeouts_total{timeout=\"" + kind + "\"}");
  }
  // A good client meanwhile: curl through the outbound entry over HBONE
  // (the pool dials this node's own HBONE server).
  std::string GoodRequest() {
    directory.force_remote = true;
    std::string out;
    RunLoopDuring(loop.get(), [&] {
      out = Capture("curl -s -S --max-time 10 --proxy http://frontend:s3cret@127.0.0.1:" +
                    std::to_string(core->outbound_port()) +
                    " http://127.64.0.5:" + std::to_string(http_port) + "/good 2>&1");
    });
    return out;
  }

  UvLoop loop;
  FakeDirectory directory;
  Registry registry;
  ProxyCorePtr core;
  uint16_t tcp_port = 0;
  uint16_t http_port = 0;
};

TEST_CASE("Slow peers: a TLS handshake never finished is cut off and counted; others are served") {
  SlowFixture f;
  RawSocket silent(Ip("127.64.0.5"), f.core->hbone_port());
  REQUIRE(silent.connected());
  RawSocket half(Ip("127.64.0.5"), f.core->hbone_port());
  half.Send(
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));  // a ClientHello cut short
  int64_t start = NowMs();
  // Meanwhile (and within the timeout) a good client is served.
  std::string good = f.GoodRequest();
  INFO(good);
  CHECK(good.find("\"path\":\"/good\"") != std::string::npos);
  CHECK(RunUntil(
      f.loop.get(), [&] { return silent.PeerClosed() && half.PeerClosed(); }, 5000));
  CHECK(NowMs() - start >= static_cast<int64_t>(kTimeoutMs) - 20);
  CHECK(f.Timeouts("hbone_tls_handshake") == 2);
}

TEST_CASE("Slow peers: a client that never sends the HTTP/2 preface is closed after the timeout") {
  SlowFixture f;
  HboneTestClient client(f.core->dispatcher(), f.directory, "127.64.0.5", f.core->hbone_port(),
                         kWebIdentity);
  REQUIRE(RunUntil(f.loop.get(), [&] { return client.handshake_done() || client.failed(); }));
  REQUIRE(client.handshake_done());
  client.HoldSilent();
  int64_t start = NowMs();
  CHECK(RunUntil(
      f.loop.get(), [&] { return client.tls_closed(); }, 5000));
  CHECK(NowMs() - start >= static_cast<int64_t>(kTimeoutMs) - 50);
  CHECK(f.Timeouts("hbone_h2_preface") == 1);
  CHECK(f.Timeouts("hbone_tls_handshake") == 0);
  CHECK(f.core->Stats().hbone_inbound_connections == 0);
}

TEST_CASE("Slow peers: a CONNECT stream never read is reset; the connection's other streams work") {
  SlowFixture f;
  // Before the client: its streams tell their handlers when it goes.
  StreamProbe stalled;
  StreamProbe good;
  int stalled_status = 0;
  int good_status = 0;
  HboneTestClient client(f.core->dispatcher(), f.directory, "127.64.0.5", f.core->hbone_port(),
                         kWebIdentity);
  REQUIRE(RunUntil(f.loop.get(), [&] { return client.handshake_done() || client.failed(); }));
  REQUIRE(client.handshake_done());
  client.StartSession();
  // The echo app answers every byte; this stream never takes the answers,
  // so its window (4 MiB) shuts and stays shut.
  HboneStream* stream =
      client.Open("127.64.0.5:" + std::to_string(f.tcp_port), stalled, &stalled_status);
  stream->SetReadPaused(true);
  stream->Write(std::string(6 << 20, 'x'));
  REQUIRE(RunUntil(f.loop.get(), [&] { return stalled_status != 0; }));
  CHECK(stalled_status == 200);
  int64_t start = NowMs();
  CHECK(RunUntil(
      f.loop.get(), [&] { return stalled.closed; }, 5000));
  CHECK(stalled.reset);
  CHECK(NowMs() - start >= static_cast<int64_t>(kTimeoutMs) - 50);
  CHECK(f.Timeouts("hbone_stream_stalled") == 1);
  // The same connection still carries a stream that reads.
  HboneStream* next = client.Open("127.64.0.5:" + std::to_string(f.tcp_port), good, &good_status);
  next->Write("still here\n");
  next->End();
  CHECK(RunUntil(
      f.loop.get(), [&] { return good.closed; }, 5000));
  CHECK(good_status == 200);
  CHECK(good.data == "still here\n");
  CHECK(good.ended);
  CHECK_FALSE(client.session_closed());
}

TEST_CASE("Slow peers: an HBONE connection that never carries a stream is closed when idle") {
  SlowFixture f(kTimeoutMs, /*idle_timeout_ms=*/kTimeoutMs);
  HboneTestClient client(f.core->dispatcher(), f.directory, "127.64.0.5", f.core->hbone_port(),
                         kWebIdentity);
  REQUIRE(RunUntil(f.loop.get(), [&] { return client.handshake_done() || client.failed(); }));
  REQUIRE(client.handshake_done());
  client.StartSession();  // preface and SETTINGS, then nothing
  int64_t start = NowMs();
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return f.core->Stats().hbone_inbound_connections == 1; }, 2000));
  CHECK(RunUntil(
      f.loop.get(), [&] { return client.session_closed(); }, 5000));
  CHECK(NowMs() - start >= static_cast<int64_t>(kTimeoutMs) - 50);
  CHECK(f.Timeouts("hbone_idle") == 1);
  CHECK(f.Timeouts("hbone_h2_preface") == 0);
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.core->Stats().hbone_inbound_connections == 0; }, 2000));
}

TEST_CASE("Slow peers: an open idle HBONE stream keeps its connection; idle counts from its end") {
  SlowFixture f(kTimeoutMs, /*idle_timeout_ms=*/kTimeoutMs);
  StreamProbe quiet;  // before the client: its streams tell their handlers when it goes
  int status = 0;
  HboneTestClient client(f.core->dispatcher(), f.directory, "127.64.0.5", f.core->hbone_port(),
                         kWebIdentity);
  REQUIRE(RunUntil(f.loop.get(), [&] { return client.handshake_done() || client.failed(); }));
  REQUIRE(client.handshake_done());
  client.StartSession();
  HboneStream* stream = client.Open("127.64.0.5:" + std::to_string(f.tcp_port), quiet, &status);
  REQUIRE(RunUntil(f.loop.get(), [&] { return status != 0; }));
  CHECK(status == 200);
  // Several idle periods with the stream open and silent: nothing closes.
  CHECK_FALSE(RunUntil(
      f.loop.get(), [&] { return client.session_closed() || quiet.closed; },
      4 * static_cast<int>(kTimeoutMs)));
  CHECK(f.Timeouts("hbone_idle") == 0);
  stream->Write("still here\n");
  CHECK(RunUntil(f.loop.get(), [&] { return quiet.data == "still here\n"; }));
  // Once its last stream ended, the connection is idle and closed after the
  // timeout (not earlier: the clock starts at the stream's end).
  stream->End();
  REQUIRE(RunUntil(f.loop.get(), [&] { return quiet.closed; }));
  CHECK(quiet.ended);
  int64_t ended = NowMs();
  CHECK(RunUntil(
      f.loop.get(), [&] { return client.session_closed(); }, 5000));
  CHECK(NowMs() - ended >= static_cast<int64_t>(kTimeoutMs) - 50);
  CHECK(f.Timeouts("hbone_idle") == 1);
}

TEST_CASE("HbonePool: a connection whose every request gave up before it was up closes when idle") {
  SlowFixture f;
  Registry registry;
  ProxyMetrics metrics(registry);
  HbonePoolOptions options;
  options.idle_timeout_ms = kTimeoutMs;
  auto pool = HbonePool::Create(f.core->dispatcher(), f.directory, metrics, options);
  REQUIRE(pool.ok());
  const LocalReplica* source = f.directory.FindLocalReplica(Ip("127.64.0.7"));
  REQUIRE(source != nullptr);
  Endpoint endpoint;
  endpoint.address = Ip("127.64.0.5");
  endpoint.port = f.tcp_port;
  endpoint.spiffe_id = kWebIdentity;
  endpoint.hbone_port = f.core->hbone_port();
  bool called = false;
  HboneRequestPtr request = (*pool)->Open(
      *source, endpoint, [&](HboneStream*, int, const std::string&) { called = true; });
  REQUIRE((*pool)->connection_count() == 1);
  request.reset();  // the caller gives up while the connection is dialed
  // The connection still comes up (the server sees it), carries no stream...
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return f.core->Stats().hbone_inbound_connections == 1; }, 5000));
  int64_t up = NowMs();
  // ...and is closed by the pool's idle timeout, not left open for good.
  CHECK(RunUntil(
      f.loop.get(), [&] { return (*pool)->connection_count() == 0; }, 5000));
  CHECK(NowMs() - up >= static_cast<int64_t>(kTimeoutMs) - 100);
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.core->Stats().hbone_inbound_connections == 0; }, 5000));
  CHECK_FALSE(called);
  (*pool)->Close();
}

TEST_CASE("Slow peers: a client that stops reading its socket is disconnected (write stall)") {
  SlowFixture f;
  // Plain TCP to the echo port, with a small receive buffer, never read:
  // the echo backs up into the kernel buffers, then nothing moves.
  REQUIRE(f.core->SyncPlaintextPorts({{0, f.tcp_port}}).ok());
  RawSocket reader(Ip("127.64.0.5"), f.tcp_port, /*receive_buffer=*/4096);
  REQUIRE(reader.connected());
  std::string chunk(64 << 10, 'y');
  int64_t sent = 0;
  // Keep writing until the proxy stops taking bytes (its queue is full).
  CHECK(RunUntil(
      f.loop.get(),
      [&] {
        ssize_t n = ::send(reader.fd(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) sent += n;
        return n < 0 && (errno == EPIPE || errno == ECONNRESET);
      },
      10000));
  CHECK(sent > (1 << 20));
  CHECK(f.Timeouts("plaintext_write_stalled") == 1);
}

TEST_CASE("Slow peers: an outbound-entry request never completed gets 408 and is counted") {
  SlowFixture f;
  RawSocket http(Ip("127.0.0.1"), f.core->outbound_port());
  http.Send("CONNECT 127.64.0.5:" + std::to_string(f.tcp_port) + " HTTP/1.1\r\nHost: x\r\n");
  RawSocket socks(Ip("127.0.0.1"), f.core->outbound_port());
  socks.Send(std::string("\x05\x01", 2));  // a greeting cut short
  RawSocket nothing(Ip("127.0.0.1"), f.core->outbound_port());
  int64_t start = NowMs();
  CHECK(RunUntil(
      f.loop.get(), [&] { return http.PeerClosed() && socks.PeerClosed() && nothing.PeerClosed(); },
      5000));
  CHECK(NowMs() - start >= static_cast<int64_t>(kTimeoutMs) - 50);
  CHECK(http.received().rfind("HTTP/1.1 408 ", 0) == 0);
  CHECK(socks.received().empty());
  CHECK(f.Timeouts("outbound_request") == 3);
  // The entry still serves.
  std::string good = f.GoodRequest();
  INFO(good);
  CHECK(good.find("\"path\":\"/good\"") != std::string::npos);
}

}  // namespace
}  // namespace podless::proxy
