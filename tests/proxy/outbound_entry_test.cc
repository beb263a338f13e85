// The outbound entry through ProxyCore, driven by curl: HTTP proxy
// (absolute-form and CONNECT), SOCKS5, to a local workload (in-memory
// short-circuit) and over HBONE (the pool dialing this node's own server).
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "proxy/base/tcp_stream.h"
#include "proxy/proxy_core.h"
#include "tests/proxy/fake_directory.h"

namespace podless::proxy {
namespace {

using testing::Capture;
using testing::FakeDirectory;
using testing::FreePort;
using testing::Ip;
using testing::RunLoopDuring;
using testing::RunUntil;

struct CoreFixture {
  CoreFixture() {
    http_port = FreePort();
    tcp_port = FreePort();
    directory.AddReplica("127.64.0.5", "web", "shop", "web",
                         {{"http", http_port, workloads::Protocol::kHTTP},
                          {"tcp", tcp_port, workloads::Protocol::kTCP}});
    directory.AddReplica("127.64.0.7", "frontend", "shop", "frontend", {});
    directory.AddCredentials("frontend", "s3cret", "127.64.0.7");
    ProxyConfig config;
    config.hbone.listen.port = 0;
    config.outbound.listen.port = 0;
    config.SetHandshakeTimeout(3000);
    config.pool.connect_timeout_ms = 2000;
    auto created = ProxyCore::Create(loop.get(), directory, config, registry);
    REQUIRE(created.ok());
    core = std::move(created).value();
    directory.hbone_port = core->hbone_port();
  }
  ~CoreFixture() { core->Close(); }

  std::string Curl(const std::string& args) {
    std::string out;
    RunLoopDuring(loop.get(), [&] { out = Capture("curl -s -S --max-time 10 " + args + " 2>&1"); });
    return out;
  }
  std::string Proxy(const std::string& user = "frontend:s3cret") {
    return "--proxy http://" + user + "@127.0.0.1:" + std::to_string(core->outbound_port());
  }
  std::string WebUrl(const std::string& path = "/hi") {
    return "http://127.64.0.5:" + std::to_string(http_port) + path;
  }

  UvLoop loop;
  FakeDirectory directory;
  Registry registry;
  ProxyCorePtr core;
  uint16_t http_port = 0;
  uint16_t tcp_port = 0;
};

const char kFrontend[] = "\"peer_spiffe_id\":\"spiffe://cluster.local/ns/shop/sa/frontend\"";

TEST_CASE(
    "OutboundEntry: curl --proxy reaches a workload on this node in memory, as its identity") {
  CoreFixture f;
  std::string out = f.Curl(f.Proxy() + " " + f.WebUrl());
  INFO(out);
  CHECK(out.find(kFrontend) != std::string::npos);
  CHECK(out.find("\"path\":\"/hi\"") != std::string::npos);
  CHECK(out.find("\"replica\":\"web-0\"") != std::string::npos);
  CHECK(f.core->Stats().pools.empty());  // no HBONE connection was needed
  std::string metrics = f.registry.Render();
  INFO(metrics);
  CHECK(
      metrics.find(
          "istio_tcp_connections_opened_total{reporter=\"source\",source_workload=\"frontend\"") !=
      std::string::npos);
  CHECK(metrics.find("istio_tcp_connections_opened_total{reporter=\"destination\",source_workload="
                     "\"frontend\"") != std::string::npos);
  // No TLS ran between the two: both reporters say so (README, "Admin").
  CHECK(metrics.find("connection_security_policy=\"mutual_tls\"") == std::string::npos);
  CHECK(metrics.find("connection_security_policy=\"none\"} 1") != std::string::npos);
}

TEST_CASE("OutboundEntry: a remote destination is reached over a pooled HBONE connection") {
  CoreFixture f;
  f.directory.force_remote = true;  // dial HBONE to ourselves
  std::string out =
      f.Curl(f.Proxy() + " " + f.WebUrl() + " " + f.Proxy() + " " + f.WebUrl("/again"));
  INFO(out);
  CHECK(out.find(kFrontend) != std::string::npos);
  CHECK(out.find("\"path\":\"/again\"") != std::string::npos);
  auto stats = f.core->Stats();
  REQUIRE(stats.pools.size() == 1);
  CHECK(stats.pools[0].connections == 1);  // both requests shared one connection
  CHECK(stats.pools[0].identity == "spiffe://cluster.local/ns/shop/sa/web");
  std::string metrics = f.registry.Render();
  CHECK(metrics.find("connection_security_policy=\"mutual_tls\"} 2") != std::string::npos);
}

TEST_CASE("OutboundEntry: CONNECT tunnels and SOCKS5 reach the workload") {
  CoreFixture f;
  std::string tunnel = f.Curl("--proxytunnel " + f.Proxy() + " " + f.WebUrl("/tunnel"));
  INFO(tunnel);
  CHECK(tunnel.find("\"path\":\"/tunnel\"") != std::string::npos);
  CHECK(tunnel.find(kFrontend) != std::string::npos);
  std::string socks =
      f.Curl("--socks5-hostname 127.0.0.1:" + std::to_string(f.core->outbound_port()) +
             " --proxy-user frontend:s3cret " + f.WebUrl("/socks"));
  INFO(socks);
  CHECK(socks.find("\"path\":\"/socks\"") != std::string::npos);
  CHECK(socks.find(kFrontend) != std::string::npos);
}

TEST_CASE("OutboundEntry: missing or wrong credentials get 407, unknown hosts 502, denials 403") {
  CoreFixture f;
  std::string proxy_addr = "127.0.0.1:" + std::to_string(f.core->outbound_port());
  CHECK(f.Curl("-o /dev/null -w '%{http_code}' --proxy http://" + proxy_addr + " " + f.WebUrl()) ==
        "407");
  CHECK(f.Curl("-o /dev/null -w '%{http_code}' " + f.Proxy("frontend:wrong") + " " + f.WebUrl()) ==
        "407");
  CHECK(f.Curl("-o /dev/null -w '%{http_code}' " + f.Proxy() + " http://nowhere.shop.svc:80/") ==
        "502");
  std::string headers = f.Curl("-D - -o /dev/null --proxy http://" + proxy_addr + " " + f.WebUrl());
  CHECK(headers.find("Proxy-Authenticate: Basic realm=\"podless\"") != std::string::npos);
  workloads::AuthorizationPolicy allow_nobody;
  allow_nobody.metadata.name = "allow-nothing";
  allow_nobody.metadata.ns = "shop";
  allow_nobody.action = workloads::PolicyAction::kAllow;
  f.directory.AddPolicy(allow_nobody);
  CHECK(f.Curl("-o /dev/null -w '%{http_code}' " + f.Proxy() + " " + f.WebUrl()) == "403");
  f.directory.force_remote = true;
  CHECK(f.Curl("-o /dev/null -w '%{http_code}' " + f.Proxy() + " " + f.WebUrl()) == "403");
  std::string socks =
      f.Curl("--socks5-hostname " + proxy_addr + " --proxy-user frontend:wrong " + f.WebUrl());
  CHECK(socks.find("curl: (97)") != std::string::npos);
}

TEST_CASE("LoginThrottle: a source failing max_failures times in a window is blocked, doubling") {
  LoginThrottleOptions options;
  options.max_failures = 3;
  options.window_ms = 1000;
  options.first_backoff_ms = 100;
  options.max_backoff_ms = 250;
  LoginThrottle throttle(options);
  const uint64_t a = LoginThrottle::SourceKey(0, Ip("127.0.0.1"));
  const uint64_t b = LoginThrottle::SourceKey(0, Ip("127.0.0.2"));
  uint64_t t = 10'000;
  CHECK(throttle.Failed(a, t) == 0);
  CHECK(throttle.Failed(a, t + 1) == 0);
  CHECK(throttle.BlockedFor(a, t + 1) == 0);
  CHECK(throttle.Failed(a, t + 2) == 100);  // the third: blocked for the first backoff
  CHECK(throttle.BlockedFor(a, t + 2) == 100);
  CHECK(throttle.BlockedFor(a, t + 101) == 1);
  CHECK(throttle.BlockedFor(a, t + 102) == 0);
  CHECK(throttle.BlockedFor(b, t + 2) == 0);  // another source is not
  // Three more within the window of that block: twice as long, then capped.
  t += 200;
  CHECK(throttle.Failed(a, t) == 0);
  CHECK(throttle.Failed(a, t) == 0);
  CHECK(throttle.Failed(a, t) == 200);
  t += 300;
  for (int i = 0; i < 2; ++i) CHECK(throttle.Failed(a, t) == 0);
  CHECK(throttle.Failed(a, t) == 250);
  // Failures spread wider than the window never block.
  for (int i = 0; i < 10; ++i) CHECK(throttle.Failed(b, t + i * 600) == 0);
  // Quiet for a window after its last block: forgiven, the backoff starts over.
  t += 250 + 1000;
  CHECK(throttle.BlockedFor(a, t) == 0);
  for (int i = 0; i < 2; ++i) CHECK(throttle.Failed(a, t) == 0);
  CHECK(throttle.Failed(a, t) == 100);
}

TEST_CASE("LoginThrottle: remembers at most max_sources, forgetting the oldest failure first") {
  LoginThrottleOptions options;
  options.max_failures = 2;
  options.max_sources = 3;
  LoginThrottle throttle(options);
  for (uint32_t peer = 1; peer <= 100; ++peer) {
    (void)throttle.Failed(LoginThrottle::SourceKey(0, peer), 1000 + peer);
  }
  CHECK(throttle.size() == 3);
  // The most recent ones are the ones kept: a second failure blocks them.
  CHECK(throttle.Failed(LoginThrottle::SourceKey(0, 100), 2000) > 0);
  CHECK(throttle.Failed(LoginThrottle::SourceKey(0, 1), 2000) == 0);
  // The same peer through a sandbox's listener is another source.
  CHECK(LoginThrottle::SourceKey(Ip("127.64.0.5"), 1) != LoginThrottle::SourceKey(0, 1));
}

double MetricValue(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::atof(text.c_str() + at + series.size() + 2);
}

TEST_CASE("OutboundEntry: failed logins are counted, and a source failing too many is refused") {
  CoreFixture f;
  const std::string code = "-o /dev/null -w '%{http_code}' ";
  const std::string socks =
      "--socks5-hostname 127.0.0.1:" + std::to_string(f.core->outbound_port()) + " --proxy-user ";
  // The default: 10 failures within a minute block the source for 5 s.
  for (int i = 0; i < 9; ++i) {
    CHECK(f.Curl(code + f.Proxy("frontend:guess" + std::to_string(i)) + " " + f.WebUrl()) == "407");
  }
  std::string socks_out = f.Curl(socks + "frontend:guess9 " + f.WebUrl());
  CHECK(socks_out.find("curl: (97)") != std::string::npos);  // the tenth: now blocked
  std::string metrics = f.registry.Render();
  CHECK(MetricValue(metrics, "podless_outbound_auth_failures_total{protocol=\"http\"}") == 9);
  CHECK(MetricValue(metrics, "podless_outbound_auth_failures_total{protocol=\"socks5\"}") == 1);
  CHECK(MetricValue(metrics, "podless_limit_refused_total{limit=\"outbound_login_failures\"}") ==
        0);

  // Refused unchecked, right credentials too, with when to try again.
  std::string refused = f.Curl("-D - " + f.Proxy("frontend:guess10") + " " + f.WebUrl());
  INFO(refused);
  CHECK(refused.find("HTTP/1.1 429") != std::string::npos);
  CHECK(refused.find("Retry-After: 5") != std::string::npos);
  CHECK(refused.find("too many failed proxy logins") != std::string::npos);
  CHECK(f.Curl(code + f.Proxy() + " " + f.WebUrl()) == "429");
  CHECK(f.Curl(socks + "frontend:s3cret " + f.WebUrl()).find("curl: (97)") != std::string::npos);
  metrics = f.registry.Render();
  CHECK(MetricValue(metrics, "podless_outbound_auth_failures_total{protocol=\"http\"}") == 9);
  CHECK(MetricValue(metrics, "podless_limit_refused_total{limit=\"outbound_login_failures\"}") ==
        3);

  // Another source is not held back by it.
  std::string other = f.Curl("--interface 127.0.0.2 " + f.Proxy() + " " + f.WebUrl("/other"));
  INFO(other);
  CHECK(other.find("\"path\":\"/other\"") != std::string::npos);
  CHECK(other.find(kFrontend) != std::string::npos);
}

TEST_CASE("ProxyCore: plaintext ports are served on the workload's address, without a principal") {
  CoreFixture f;
  REQUIRE(f.core->SyncPlaintextPorts({{0, f.http_port}, {0, f.tcp_port}}).ok());
  std::string out = f.Curl(f.WebUrl("/plain"));
  INFO(out);
  CHECK(out.find("\"peer_spiffe_id\":null") != std::string::npos);
  CHECK(out.find("\"path\":\"/plain\"") != std::string::npos);
  // An address the node does not host: closed.
  std::string refused = f.Curl("http://127.64.0.99:" + std::to_string(f.http_port) + "/");
  CHECK(refused.find("curl: (") != std::string::npos);
  REQUIRE(f.core->SyncPlaintextPorts({}).ok());
  CHECK(f.core->Stats().listeners.size() == 2);
}

TEST_CASE("ProxyCore: CloseConnectionsFor ends a deleted workload's open connection") {
  CoreFixture f;
  REQUIRE(f.core->SyncPlaintextPorts({{0, f.tcp_port}}).ok());
  struct Client : StreamHandler {
    void OnData(std::string_view bytes) override { received.append(bytes); }
    void OnEnd() override {}
    void OnClosed(bool reset) override {
      closed = true;
      was_reset = reset;
    }
    std::string received;
    bool closed = false;
    bool was_reset = false;
  } client;
  TcpStream* stream = nullptr;
  TcpConnector connector(f.core->dispatcher());
  connector.Connect(Ip("127.64.0.5"), f.tcp_port, 2000, [&](Result<TcpStream*> r) {
    REQUIRE(r.ok());
    stream = r.value();
    stream->SetHandler(&client);
    stream->Write("ping");
  });
  REQUIRE(RunUntil(f.loop.get(), [&] { return client.received == "ping"; }));
  CHECK(f.core->Stats().inbound_connections.at(Ip("127.64.0.5")) == 1);
  f.core->CloseConnectionsFor(Ip("127.64.0.5"));
  CHECK(RunUntil(f.loop.get(), [&] { return client.closed; }));
  CHECK(f.core->Stats().inbound_connections.count(Ip("127.64.0.5")) == 0);
}

}  // namespace
}  // namespace podless::proxy
