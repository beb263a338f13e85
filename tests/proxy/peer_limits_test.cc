// Per-peer and per-workload limits of ProxyCore (issue 8): HBONE
// connections per peer IP, streams per HBONE connection (SETTINGS_MAX_
// CONCURRENT_STREAMS, enforced), outbound-entry connections per workload.
// What a limit refuses is counted in podless_limit_refused_total{limit}, and
// a freed slot is usable again.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/proxy_core.h"
#include "proxy/tcp_stream.h"
#include "tests/proxy/fake_directory.h"
#include "tests/proxy/peer_helpers.h"

namespace podless::proxy {
namespace {

using testing::FakeDirectory;
using testing::FreePort;
using testing::HboneTestClient;
using testing::Ip;
using testing::MetricValue;
using testing::RawSocket;
using testing::RunUntil;
using testing::StreamProbe;

constexpr char kWebIdentity[] = "spiffe://cluster.local/ns/shop/sa/web";
// "Proxy-Authorization: Basic frontend:s3cret"
constexpr char kCredentials[] = "ZnJvbnRlbmQ6czNjcmV0";

struct LimitsFixture {
  explicit LimitsFixture(const ProxyConfig& limits) {
    tcp_port = FreePort();
    directory.AddReplica("127.64.0.5", "web", "shop", "web",
                         {{"tcp", tcp_port, workloads::Protocol::kTCP}});
    directory.AddReplica("127.64.0.7", "frontend", "shop", "frontend", {});
    directory.AddCredentials("frontend", "s3cret", "127.64.0.7");
    ProxyConfig config = limits;
    config.hbone_port = 0;
    config.outbound_port = 0;
    auto created = ProxyCore::Create(loop.get(), directory, config, registry);
    REQUIRE(created.ok());
    core = std::move(created).value();
    directory.hbone_port = core->hbone_port();
  }
  ~LimitsFixture() { core->Close(); }

  double Refused(const std::string& limit) {
    return MetricValue(registry.Render(), "podless_limit_refused_total{limit=\"" + limit + "\"}");
  }
  // Stays open for `ms` (the loop running): not refused.
  bool StaysOpen(RawSocket& socket, int ms = 200) {
    return !RunUntil(
        loop.get(), [&] { return socket.PeerClosed(); }, ms);
  }

  UvLoop loop;
  FakeDirectory directory;
  Registry registry;
  ProxyCorePtr core;
  uint16_t tcp_port = 0;
};

TEST_CASE("Limits: HBONE connections per peer IP; the slot is freed when one closes") {
  ProxyConfig config;
  config.max_hbone_connections_per_peer = 2;
  LimitsFixture f(config);
  // Two connections from 127.0.0.1 sit in the TLS handshake.
  auto a = std::make_unique<RawSocket>(Ip("127.0.0.1"), f.core->hbone_port());
  RawSocket b(Ip("127.0.0.1"), f.core->hbone_port());
  CHECK(f.StaysOpen(*a));
  CHECK(f.StaysOpen(b));
  // The third is reset at accept.
  RawSocket c(Ip("127.0.0.1"), f.core->hbone_port());
  CHECK(RunUntil(
      f.loop.get(), [&] { return c.PeerClosed(); }, 2000));
  CHECK(f.Refused("hbone_connections_per_peer") == 1);
  // One closes: a new connection fits again.
  a.reset();
  RunUntil(
      f.loop.get(), [] { return false; }, 100);
  RawSocket d(Ip("127.0.0.1"), f.core->hbone_port());
  CHECK(f.StaysOpen(d));
  CHECK(f.Refused("hbone_connections_per_peer") == 1);
}

TEST_CASE("Limits: streams over SETTINGS_MAX_CONCURRENT_STREAMS are refused, and counted") {
  ProxyConfig config;
  config.max_hbone_streams_per_connection = 2;
  LimitsFixture f(config);
  // Before the client: its streams tell their handlers when it goes.
  StreamProbe probes[5];
  int status[5] = {};
  HboneTestClient client(f.core->dispatcher(), f.directory, "127.64.0.5", f.core->hbone_port(),
                         kWebIdentity);
  REQUIRE(RunUntil(f.loop.get(), [&] { return client.handshake_done() || client.failed(); }));
  REQUIRE(client.handshake_done());
  client.StartSession();
  // Five streams at once, before the server's SETTINGS arrive (so the
  // client cannot know the limit yet): two are served, three refused.
  std::string authority = "127.64.0.5:" + std::to_string(f.tcp_port);
  for (int i = 0; i < 5; ++i) client.Open(authority, probes[i], &status[i]);
  REQUIRE(RunUntil(f.loop.get(), [&] {
    for (int s : status) {
      if (s == 0) return false;
    }
    return true;
  }));
  int served = 0;
  int refused = 0;
  for (int s : status) {
    served += s == 200;
    refused += s == -1;
  }
  CHECK(served == 2);
  CHECK(refused == 3);
  CHECK(f.Refused("hbone_streams_per_connection") == 3);
  CHECK_FALSE(client.session_closed());
}

TEST_CASE("Limits: outbound-entry connections per workload get 429 over the limit") {
  ProxyConfig config;
  config.max_outbound_connections_per_workload = 2;
  LimitsFixture f(config);
  std::string request = "CONNECT 127.64.0.5:" + std::to_string(f.tcp_port) +
                        " HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic " + kCredentials +
                        "\r\n\r\n";
  auto open = [&](RawSocket& socket) {
    socket.Send(request);
    RunUntil(f.loop.get(), [&] {
      socket.PeerClosed();
      return socket.received().find("\r\n\r\n") != std::string::npos;
    });
    return socket.received().substr(0, 12);
  };
  auto first = std::make_unique<RawSocket>(Ip("127.0.0.1"), f.core->outbound_port());
  RawSocket second(Ip("127.0.0.1"), f.core->outbound_port());
  RawSocket third(Ip("127.0.0.1"), f.core->outbound_port());
  CHECK(open(*first) == "HTTP/1.1 200");
  CHECK(open(second) == "HTTP/1.1 200");
  CHECK(open(third) == "HTTP/1.1 429");
  INFO(third.received());
  CHECK(
      third.received().find("workload frontend has 2 outbound connections open, the limit is 2") !=
      std::string::npos);
  CHECK(f.Refused("outbound_connections_per_workload") == 1);
  // The tunnels work, and closing one frees a slot.
  second.Send("ping");
  CHECK(RunUntil(f.loop.get(), [&] {
    second.PeerClosed();
    return second.received().find("ping") != std::string::npos;
  }));
  first.reset();
  RunUntil(
      f.loop.get(), [] { return false; }, 100);
  RawSocket fourth(Ip("127.0.0.1"), f.core->outbound_port());
  CHECK(open(fourth) == "HTTP/1.1 200");
  CHECK(f.Refused("outbound_connections_per_workload") == 1);
}

TEST_CASE("Limits: every limit and timeout series is exported at 0 before it bites") {
  LimitsFixture f(ProxyConfig{});
  for (const char* limit : {"hbone_connections_per_peer", "hbone_streams_per_connection",
                            "outbound_connections_per_workload"}) {
    CHECK(f.Refused(limit) == 0);
  }
  std::string text = f.registry.Render();
  for (const char* timeout : {"hbone_tls_handshake", "hbone_h2_preface", "hbone_stream_stalled",
                              "hbone_write_stalled", "outbound_request", "outbound_setup",
                              "outbound_write_stalled", "plaintext_write_stalled"}) {
    CHECK(MetricValue(
              text, std::string("podless_peer_timeouts_total{timeout=\"") + timeout + "\"}") == 0);
  }
}

}  // namespace
}  // namespace podless::proxy
