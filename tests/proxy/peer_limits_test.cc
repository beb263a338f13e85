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

#include "proxy/base/tcp_stream.h"
#include "proxy/connection_limits.h"
#include "proxy/proxy_core.h"
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

// web-0 (127.64.0.5, a TCP port: the one returned) and frontend-0
// (127.64.0.7, outbound credentials frontend:s3cret), in namespace shop.
uint16_t AddShopReplicas(FakeDirectory& directory) {
  const uint16_t tcp_port = FreePort();
  directory.AddReplica("127.64.0.5", "web", "shop", "web",
                       {{"tcp", tcp_port, workloads::Protocol::kTCP}});
  directory.AddReplica("127.64.0.7", "frontend", "shop", "frontend", {});
  directory.AddCredentials("frontend", "s3cret", "127.64.0.7");
  return tcp_port;
}

struct LimitsFixture {
  explicit LimitsFixture(const ProxyConfig& limits) {
    tcp_port = AddShopReplicas(directory);
    ProxyConfig config = limits;
    config.hbone.listen.port = 0;
    config.outbound.listen.port = 0;
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

// The per-peer count of every loopback client (PeerKey: 127/8 is one peer).
constexpr const char* kLoopbackPeer = "127.0.0.0";

TEST_CASE("Limits: HBONE connections per peer IP; the slot is freed when one closes") {
  ProxyConfig config;
  config.hbone.max_connections_per_peer = 2;
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

TEST_CASE("Limits: the HBONE per-peer limit counts a /24, and all of loopback as one peer") {
  CHECK(PeerKey(Ip("10.1.2.3")) == PeerKey(Ip("10.1.2.200")));
  CHECK(PeerKey(Ip("10.1.2.3")) != PeerKey(Ip("10.1.3.3")));
  CHECK(PeerKey(Ip("127.0.0.1")) == PeerKey(Ip("127.200.3.4")));
  ProxyConfig config;
  config.hbone.max_connections_per_peer = 2;
  LimitsFixture f(config);
  // Spreading over loopback addresses does not step around the limit.
  RawSocket a(Ip("127.0.0.1"), f.core->hbone_port(), 0, Ip("127.0.0.2"));
  RawSocket b(Ip("127.0.0.1"), f.core->hbone_port(), 0, Ip("127.9.8.7"));
  CHECK(f.StaysOpen(a));
  CHECK(f.StaysOpen(b));
  RawSocket c(Ip("127.0.0.1"), f.core->hbone_port(), 0, Ip("127.1.1.1"));
  CHECK(RunUntil(
      f.loop.get(), [&] { return c.PeerClosed(); }, 2000));
  CHECK(f.Refused("hbone_connections_per_peer") == 1);
}

TEST_CASE("Limits: plaintext ports count connections per peer (all of loopback as one)") {
  ProxyConfig config;
  config.plaintext.max_connections_per_peer = 2;
  LimitsFixture f(config);
  REQUIRE(f.core->SyncPlaintextPorts({{0, f.tcp_port}}).ok());
  // web-0's echo app holds each connection open; sources spread over 127/8.
  auto a = std::make_unique<RawSocket>(Ip("127.64.0.5"), f.tcp_port, 0, Ip("127.0.0.2"));
  RawSocket b(Ip("127.64.0.5"), f.tcp_port, 0, Ip("127.9.8.7"));
  CHECK(f.StaysOpen(*a));
  CHECK(f.StaysOpen(b));
  RawSocket c(Ip("127.64.0.5"), f.tcp_port, 0, Ip("127.1.1.1"));
  CHECK(RunUntil(
      f.loop.get(), [&] { return c.PeerClosed(); }, 2000));
  CHECK(f.Refused("plaintext_connections_per_peer") == 1);
  CHECK(f.Refused("hbone_connections_per_peer") == 0);  // a count of its own
  // One closes: its slot is given back when the connection ends.
  a.reset();
  RunUntil(
      f.loop.get(), [] { return false; }, 100);
  RawSocket d(Ip("127.64.0.5"), f.tcp_port, 0, Ip("127.3.3.3"));
  CHECK(f.StaysOpen(d));
  CHECK(f.Refused("plaintext_connections_per_peer") == 1);
  CHECK(f.core->Stats().inbound_connections.at(Ip("127.64.0.5")) == 2);
}

TEST_CASE("Limits: connections not yet authenticated are capped node-wide, HBONE and outbound") {
  ProxyConfig config;
  config.SetMaxUnauthenticatedConnections(2);
  LimitsFixture f(config);
  // One HBONE connection in the handshake, one outbound one without
  // credentials: the cap is theirs together.
  auto hbone = std::make_unique<RawSocket>(Ip("127.0.0.1"), f.core->hbone_port());
  RawSocket outbound(Ip("127.0.0.1"), f.core->outbound_port());
  CHECK(f.StaysOpen(*hbone));
  CHECK(f.StaysOpen(outbound));
  RawSocket third(Ip("127.0.0.1"), f.core->hbone_port());
  CHECK(RunUntil(
      f.loop.get(), [&] { return third.PeerClosed(); }, 2000));
  RawSocket fourth(Ip("127.0.0.1"), f.core->outbound_port());
  CHECK(RunUntil(
      f.loop.get(), [&] { return fourth.PeerClosed(); }, 2000));
  CHECK(f.Refused("unauthenticated_connections") == 2);
  // One goes: there is room again, and an authenticated connection no
  // longer counts.
  hbone.reset();
  RunUntil(
      f.loop.get(), [] { return false; }, 100);
  RawSocket fifth(Ip("127.0.0.1"), f.core->outbound_port());
  fifth.Send("CONNECT 127.64.0.5:" + std::to_string(f.tcp_port) +
             " HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic " + kCredentials + "\r\n\r\n");
  RunUntil(f.loop.get(), [&] {
    fifth.PeerClosed();  // reads what arrived
    return fifth.received().find("\r\n\r\n") != std::string::npos;
  });
  CHECK(fifth.received().substr(0, 12) == "HTTP/1.1 200");
  RawSocket sixth(Ip("127.0.0.1"), f.core->hbone_port());
  CHECK(f.StaysOpen(sixth));
}

TEST_CASE("Limits: streams over SETTINGS_MAX_CONCURRENT_STREAMS are refused, and counted") {
  ProxyConfig config;
  config.hbone.max_streams_per_connection = 2;
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
  config.outbound.max_connections_per_workload = 2;
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

// Two cores on one loop sharing one ConnectionLimits, as the agent's worker
// threads do (each worker a core with its own listeners): a limit is the
// node's, not each core's.
struct SharedLimitsFixture {
  explicit SharedLimitsFixture(const ProxyConfig& limits_config) {
    tcp_port = AddShopReplicas(directory);
    ProxyConfig config = limits_config;
    config.hbone.listen.port = 0;
    config.outbound.listen.port = 0;
    config.limits = limits;
    for (int i = 0; i < 2; ++i) {
      auto created = ProxyCore::Create(loop.get(), directory, config, registry[i]);
      REQUIRE(created.ok());
      core[i] = std::move(created).value();
    }
  }
  ~SharedLimitsFixture() {
    for (auto& c : core) c->Close();
  }

  double Refused(int i, const std::string& limit) {
    return MetricValue(registry[i].Render(),
                       "podless_limit_refused_total{limit=\"" + limit + "\"}");
  }
  bool StaysOpen(RawSocket& socket, int ms = 200) {
    return !RunUntil(
        loop.get(), [&] { return socket.PeerClosed(); }, ms);
  }
  bool Closes(RawSocket& socket) {
    return RunUntil(
        loop.get(), [&] { return socket.PeerClosed(); }, 2000);
  }
  // Runs the loop until `counts` has `expected` for `key`.
  bool CountBecomes(const SharedCounts& counts, const char* key, uint32_t expected) {
    return RunUntil(
        loop.get(), [&] { return counts.Count(Ip(key)) == expected; }, 3000);
  }
  // Sends an outbound-entry CONNECT to `target` as frontend; the status line.
  std::string Connect(RawSocket& socket, const std::string& target) {
    socket.Send("CONNECT " + target + " HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic " +
                kCredentials + "\r\n\r\n");
    RunUntil(loop.get(), [&] {
      socket.PeerClosed();
      return socket.received().find("\r\n\r\n") != std::string::npos;
    });
    return socket.received().substr(0, 12);
  }
  std::string WebTarget() const { return "127.64.0.5:" + std::to_string(tcp_port); }
  SharedCounts& per_peer() { return limits->hbone_connections_per_peer; }
  SharedCounts& per_workload() { return limits->outbound_connections_per_workload; }

  UvLoop loop;
  FakeDirectory directory;
  ConnectionLimitsPtr limits = std::make_shared<ConnectionLimits>();
  Registry registry[2];
  ProxyCorePtr core[2];
  uint16_t tcp_port = 0;
};

TEST_CASE("Limits: two cores sharing ConnectionLimits admit max_connections_per_peer together") {
  ProxyConfig config;
  config.hbone.max_connections_per_peer = 2;
  SharedLimitsFixture f(config);
  // One connection to each core: the peer is at its limit.
  auto a = std::make_unique<RawSocket>(Ip("127.0.0.1"), f.core[0]->hbone_port());
  RawSocket b(Ip("127.0.0.1"), f.core[1]->hbone_port());
  CHECK(f.StaysOpen(*a));
  CHECK(f.StaysOpen(b));
  CHECK(f.per_peer().Count(PeerKey(Ip("127.0.0.1"))) == 2);
  // Neither core takes a third, though each has only one of its own.
  RawSocket c(Ip("127.0.0.1"), f.core[0]->hbone_port());
  RawSocket d(Ip("127.0.0.1"), f.core[1]->hbone_port());
  CHECK(f.Closes(c));
  CHECK(f.Closes(d));
  CHECK(f.Refused(0, "hbone_connections_per_peer") == 1);
  CHECK(f.Refused(1, "hbone_connections_per_peer") == 1);
  // Closing the one on core 0 frees a slot that core 1 may use.
  a.reset();
  CHECK(f.CountBecomes(f.per_peer(), kLoopbackPeer, 1));
  RawSocket e(Ip("127.0.0.1"), f.core[1]->hbone_port());
  CHECK(f.StaysOpen(e));
  CHECK(f.Refused(1, "hbone_connections_per_peer") == 1);
}

TEST_CASE("Limits: HBONE peer slots come back after a failed handshake, a close, and Close()") {
  ProxyConfig config;
  config.hbone.max_connections_per_peer = 8;
  SharedLimitsFixture f(config);
  {
    // Not TLS: the handshake fails and the server ends the connection.
    RawSocket garbage(Ip("127.0.0.1"), f.core[0]->hbone_port());
    garbage.Send(std::string(64, 'x'));
    CHECK(f.Closes(garbage));
    CHECK(f.CountBecomes(f.per_peer(), kLoopbackPeer, 0));
  }
  {
    // A full HBONE session, then the client goes.
    StreamProbe probe;
    int status = 0;
    auto client = std::make_unique<HboneTestClient>(
        f.core[1]->dispatcher(), f.directory, "127.64.0.5", f.core[1]->hbone_port(), kWebIdentity);
    REQUIRE(RunUntil(f.loop.get(), [&] { return client->handshake_done() || client->failed(); }));
    REQUIRE(client->handshake_done());
    client->StartSession();
    client->Open(f.WebTarget(), probe, &status);
    REQUIRE(RunUntil(f.loop.get(), [&] { return status != 0; }));
    CHECK(status == 200);
    CHECK(f.per_peer().Count(PeerKey(Ip("127.0.0.1"))) == 1);
    client.reset();
    CHECK(f.CountBecomes(f.per_peer(), kLoopbackPeer, 0));
  }
  // One connection handshaking on core 0, one open session on core 1:
  // closing the cores gives both back.
  RawSocket handshaking(Ip("127.0.0.1"), f.core[0]->hbone_port());
  CHECK(f.StaysOpen(handshaking));
  StreamProbe probe;
  int status = 0;
  HboneTestClient client(f.core[1]->dispatcher(), f.directory, "127.64.0.5",
                         f.core[1]->hbone_port(), kWebIdentity);
  REQUIRE(RunUntil(f.loop.get(), [&] { return client.handshake_done() || client.failed(); }));
  REQUIRE(client.handshake_done());
  client.StartSession();
  client.Open(f.WebTarget(), probe, &status);
  REQUIRE(RunUntil(f.loop.get(), [&] { return status != 0; }));
  CHECK(f.per_peer().Count(PeerKey(Ip("127.0.0.1"))) == 2);
  f.core[0]->Close();
  f.core[1]->Close();
  CHECK(f.CountBecomes(f.per_peer(), kLoopbackPeer, 0));
}

TEST_CASE(
    "Limits: two cores sharing ConnectionLimits admit max_connections_per_workload together") {
  ProxyConfig config;
  config.outbound.max_connections_per_workload = 2;
  SharedLimitsFixture f(config);
  auto first = std::make_unique<RawSocket>(Ip("127.0.0.1"), f.core[0]->outbound_port());
  RawSocket second(Ip("127.0.0.1"), f.core[1]->outbound_port());
  RawSocket third(Ip("127.0.0.1"), f.core[0]->outbound_port());
  RawSocket fourth(Ip("127.0.0.1"), f.core[1]->outbound_port());
  CHECK(f.Connect(*first, f.WebTarget()) == "HTTP/1.1 200");
  CHECK(f.Connect(second, f.WebTarget()) == "HTTP/1.1 200");
  CHECK(f.per_workload().Count(Ip("127.64.0.7")) == 2);
  // Each core has one open tunnel of frontend's; together they are full.
  CHECK(f.Connect(third, f.WebTarget()) == "HTTP/1.1 429");
  CHECK(f.Connect(fourth, f.WebTarget()) == "HTTP/1.1 429");
  CHECK(f.Refused(0, "outbound_connections_per_workload") == 1);
  CHECK(f.Refused(1, "outbound_connections_per_workload") == 1);
  // The tunnel on core 0 closes: core 1 takes one more.
  first.reset();
  CHECK(f.CountBecomes(f.per_workload(), "127.64.0.7", 1));
  RawSocket fifth(Ip("127.0.0.1"), f.core[1]->outbound_port());
  CHECK(f.Connect(fifth, f.WebTarget()) == "HTTP/1.1 200");
  fifth.Send("ping");
  CHECK(RunUntil(f.loop.get(), [&] {
    fifth.PeerClosed();
    return fifth.received().find("ping") != std::string::npos;
  }));
}

TEST_CASE("Limits: every end of an outbound connection gives its workload slot back once") {
  ProxyConfig config;
  config.outbound.max_connections_per_workload = 4;
  SharedLimitsFixture f(config);
  SharedCounts& counts = f.per_workload();
  {
    // Failed setup: the name does not resolve (502); the slot is held until
    // the refused client goes.
    RawSocket unknown(Ip("127.0.0.1"), f.core[0]->outbound_port());
    CHECK(f.Connect(unknown, "nowhere.invalid:80") == "HTTP/1.1 502");
    // Failed setup: nobody listens at the plain-TCP destination.
    RawSocket refused(Ip("127.0.0.1"), f.core[1]->outbound_port());
    CHECK(f.Connect(refused, "127.0.0.1:" + std::to_string(FreePort())) == "HTTP/1.1 502");
  }
  CHECK(f.CountBecomes(counts, "127.64.0.7", 0));
  {
    // Refused by the limit: nothing was acquired, nothing is given back.
    std::vector<std::unique_ptr<RawSocket>> open;
    for (int i = 0; i < 4; ++i) {
      open.push_back(std::make_unique<RawSocket>(Ip("127.0.0.1"), f.core[i % 2]->outbound_port()));
      CHECK(f.Connect(*open.back(), f.WebTarget()) == "HTTP/1.1 200");
    }
    RawSocket over(Ip("127.0.0.1"), f.core[0]->outbound_port());
    CHECK(f.Connect(over, f.WebTarget()) == "HTTP/1.1 429");
    CHECK(f.Closes(over));
    CHECK(counts.Count(Ip("127.64.0.7")) == 4);
    // Closed after success, by the client.
  }
  CHECK(f.CountBecomes(counts, "127.64.0.7", 0));
  // Closed by the agent: the replica's connections (core 0), then Close()
  // (core 1).
  RawSocket by_replica(Ip("127.0.0.1"), f.core[0]->outbound_port());
  CHECK(f.Connect(by_replica, f.WebTarget()) == "HTTP/1.1 200");
  RawSocket by_close(Ip("127.0.0.1"), f.core[1]->outbound_port());
  CHECK(f.Connect(by_close, f.WebTarget()) == "HTTP/1.1 200");
  CHECK(counts.Count(Ip("127.64.0.7")) == 2);
  f.core[0]->CloseConnectionsFor(Ip("127.64.0.7"));
  CHECK(f.Closes(by_replica));
  CHECK(f.CountBecomes(counts, "127.64.0.7", 1));
  f.core[1]->Close();
  CHECK(f.Closes(by_close));
  CHECK(f.CountBecomes(counts, "127.64.0.7", 0));
  f.core[0]->Close();
  CHECK(counts.size() == 0);
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
