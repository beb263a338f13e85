// HboneServer end to end, driven by an independent client: Python's ssl
// (OpenSSL) + h2, see hbone_interop_client.py.
#include <doctest/doctest.h>

#include <openssl/pem.h>

#include <ctime>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/base/uv_handle.h"
#include "proxy/connection_metrics.h"
#include "proxy/hbone_server.h"
#include "proxy/inbound.h"
#include "proxy/tracked_connection.h"
#include "tests/proxy/fake_directory.h"

namespace podless::proxy {
namespace {

using testing::Capture;
using testing::FakeDirectory;
using testing::RunLoopDuring;
using testing::TempDir;
using testing::WriteFile;

const std::string kClientScript = std::string(PODLESS_PROXY_TEST_DIR) + "/hbone_interop_client.py";

struct ServerFixture {
  ServerFixture()
      : dispatcher(loop.get()),
        directory(dir.path(), "cluster.local"),
        metrics(registry),
        tracker(dispatcher),
        inbound(dispatcher, directory, metrics, tracker) {
    directory.AddReplica(
        "127.64.0.5", "web", "shop", "web",
        {{"tcp", 9000, workloads::Protocol::kTCP}, {"http", 8080, workloads::Protocol::kHTTP}});
    HboneServerOptions options;
    options.listen.bind = "0.0.0.0";
    options.listen.port = 0;
    auto created = HboneServer::Create(dispatcher, directory, inbound, metrics, options);
    REQUIRE(created.ok());
    server = std::move(created).value();
    // The client's identity, from the same CA.
    WriteCredentials(directory.ca(), "client", "shop", "frontend", std::chrono::hours(1));
  }
  ~ServerFixture() {
    server.reset();
    tracker_close();
  }
  void tracker_close() {}

  void WriteCredentials(workloads::CertificateAuthority& ca, const std::string& name,
                        const std::string& ns, const std::string& sa, std::chrono::seconds ttl) {
    auto svid =
        ca.IssueSvid(workloads::SpiffeId::ForServiceAccount(ca.trust_domain(), ns, sa), ttl);
    REQUIRE(svid.ok());
    WriteFile(dir.path() + "/" + name + ".crt", (*svid)->CertificateChainPem());
    WriteFile(dir.path() + "/" + name + ".key", (*svid)->PrivateKeyPem());
    WriteFile(dir.path() + "/ca.crt", directory.ca().BundlePem());
  }

  std::string ClientCommand(const std::string& name, const std::vector<std::string>& authorities,
                            const std::string& extra = "") {
    std::string cmd = "/usr/bin/python3 " + kClientScript +
                      " --connect 127.64.0.5:" + std::to_string(server->port()) + " --ca " +
                      dir.path() + "/ca.crt --cert " + dir.path() + "/" + name + ".crt --key " +
                      dir.path() + "/" + name + ".key " + extra;
    for (const auto& a : authorities) cmd += " --authority '" + a + "'";
    return cmd;
  }

  std::string RunClient(const std::string& command) {
    std::string out;
    RunLoopDuring(loop.get(), [&] { out = Capture(command + " 2>&1"); });
    return out;
  }

  TempDir dir;
  UvLoop loop;
  Dispatcher dispatcher;
  FakeDirectory directory;
  Registry registry;
  ProxyMetrics metrics;
  ConnectionTracker tracker;
  Inbound inbound;
  HboneServerPtr server;
};

// A copy of `svid`'s leaf valid only in the past, re-signed with the CA key
// in `ca_dir` (the CA refuses to issue expired certificates).
std::string ExpiredCopyPem(const workloads::Svid& svid, const std::string& ca_dir) {
  bssl::UniquePtr<BIO> key_bio(BIO_new_file((ca_dir + "/ca.key").c_str(), "r"));
  REQUIRE(key_bio);
  bssl::UniquePtr<EVP_PKEY> ca_key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(ca_key);
  bssl::UniquePtr<X509> leaf = svid.ParseLeaf();
  int64_t now = time(nullptr);
  bssl::UniquePtr<ASN1_TIME> before(ASN1_TIME_set(nullptr, now - 7200));
  bssl::UniquePtr<ASN1_TIME> after(ASN1_TIME_set(nullptr, now - 3600));
  X509_set1_notBefore(leaf.get(), before.get());
  X509_set1_notAfter(leaf.get(), after.get());
  REQUIRE(X509_sign(leaf.get(), ca_key.get(), EVP_sha256()) > 0);
  bssl::UniquePtr<BIO> out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), leaf.get());
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(out.get(), &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

// {name}.crt/.key in the fixture's dir: an SVID of the trusted CA for
// shop/frontend, re-signed to be valid only in the past.
void WriteExpiredCredentials(ServerFixture& f, const std::string& name) {
  auto svid = f.directory.ca().IssueSvid(
      workloads::SpiffeId::ForServiceAccount("cluster.local", "shop", "frontend"),
      std::chrono::hours(1));
  REQUIRE(svid.ok());
  WriteFile(f.dir.path() + "/" + name + ".crt", ExpiredCopyPem(**svid, f.dir.path()));
  WriteFile(f.dir.path() + "/" + name + ".key", (*svid)->PrivateKeyPem());
}

TEST_CASE("HboneServer: an independent h2 client gets 200 and its bytes echoed over CONNECT") {
  ServerFixture f;
  std::string out = f.RunClient(f.ClientCommand("client", {"127.64.0.5:9000"}));
  INFO(out);
  CHECK(out.find("\"peer\": \"spiffe://cluster.local/ns/shop/sa/web\"") != std::string::npos);
  CHECK(out.find("\"alpn\": \"h2\"") != std::string::npos);
  CHECK(out.find("\"status\": 200, \"data\": \"hello hbone\\n\", \"ended\": true") !=
        std::string::npos);
  std::string metrics = f.registry.Render();
  CHECK(metrics.find("istio_tcp_received_bytes_total{reporter=\"destination\",source_workload="
                     "\"unknown\",source_principal=\"spiffe://cluster.local/ns/shop/sa/frontend\","
                     "destination_workload=\"web\",destination_principal=\"spiffe://cluster.local/"
                     "ns/shop/sa/web\",destination_service=\"unknown\",connection_security_policy="
                     "\"mutual_tls\"} 12") != std::string::npos);
}

TEST_CASE(
    "HboneServer: refuses a CONNECT to an address or port the node does not host, per stream") {
  ServerFixture f;
  std::string out =
      f.RunClient(f.ClientCommand("client", {"127.64.0.5:9000", "127.64.0.5:9999",
                                             "127.64.0.99:9000", "web:9000", "127.64.0.5:9000"}));
  INFO(out);
  CHECK(out.find("{\"authority\": \"127.64.0.5:9999\", \"status\": 404") != std::string::npos);
  CHECK(out.find("{\"authority\": \"127.64.0.99:9000\", \"status\": 404") != std::string::npos);
  CHECK(out.find("{\"authority\": \"web:9000\", \"status\": 400") != std::string::npos);
  // The good streams on the same connection are unaffected.
  size_t first = out.find("\"status\": 200, \"data\": \"hello hbone\\n\", \"ended\": true");
  REQUIRE(first != std::string::npos);
  CHECK(out.find("\"status\": 200, \"data\": \"hello hbone\\n\", \"ended\": true", first + 1) !=
        std::string::npos);
}

TEST_CASE("HboneServer: the HTTP echo app names the caller's verified SPIFFE ID") {
  ServerFixture f;
  std::string out = f.RunClient(f.ClientCommand(
      "client", {"127.64.0.5:8080"},
      "--payload 'GET /hello HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n'"));
  INFO(out);
  CHECK(out.find("HTTP/1.1 200 OK") != std::string::npos);
  CHECK(out.find("\\\"peer_spiffe_id\\\":\\\"spiffe://cluster.local/ns/shop/sa/frontend\\\"") !=
        std::string::npos);
  CHECK(out.find("\\\"path\\\":\\\"/hello\\\"") != std::string::npos);
  CHECK(out.find("\\\"replica\\\":\\\"web-0\\\"") != std::string::npos);
}

TEST_CASE("HboneServer: a DENY policy answers 403 on the stream and is counted") {
  ServerFixture f;
  workloads::AuthorizationPolicy deny;
  deny.metadata.name = "block-frontend";
  deny.metadata.ns = "shop";
  deny.action = workloads::PolicyAction::kDeny;
  workloads::PolicyRule rule;
  workloads::PolicySource from;
  from.principals = {"cluster.local/ns/shop/sa/frontend"};
  rule.from.push_back(from);
  workloads::PolicyOperation to;
  to.ports = {9000};
  rule.to.push_back(to);
  deny.rules.push_back(rule);
  f.directory.AddPolicy(deny);
  std::string out = f.RunClient(f.ClientCommand(
      "client", {"127.64.0.5:9000", "127.64.0.5:8080"},
      "--payload 'GET / HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n'"));
  INFO(out);
  CHECK(out.find("{\"authority\": \"127.64.0.5:9000\", \"status\": 403") != std::string::npos);
  CHECK(out.find("{\"authority\": \"127.64.0.5:8080\", \"status\": 200") != std::string::npos);
  CHECK(f.registry.Render().find("podless_authz_denied_total{destination_workload=\"web\","
                                 "destination_namespace=\"shop\"} 1") != std::string::npos);
}

TEST_CASE("HboneServer: TLS failures are refused without hurting a concurrent good connection") {
  ServerFixture f;
  // An SVID from a CA the node does not trust.
  auto other_ca = workloads::CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(other_ca.ok());
  {
    auto svid = (*other_ca)->IssueSvid(
        workloads::SpiffeId::ForServiceAccount("cluster.local", "shop", "frontend"),
        std::chrono::hours(1));
    REQUIRE(svid.ok());
    WriteFile(f.dir.path() + "/untrusted.crt", (*svid)->CertificateChainPem());
    WriteFile(f.dir.path() + "/untrusted.key", (*svid)->PrivateKeyPem());
  }
  // An expired SVID from the trusted CA.
  WriteExpiredCredentials(f, "expired");
  std::string good = f.ClientCommand("client", {"127.64.0.5:9000"});
  std::string cmd =
      "(" + f.ClientCommand("untrusted", {"127.64.0.5:9000"}) + " | sed 's/^/UNTRUSTED /') & (" +
      f.ClientCommand("expired", {"127.64.0.5:9000"}) + " | sed 's/^/EXPIRED /') & (" +
      f.ClientCommand("client", {"127.64.0.5:9000"}, "--alpn http/1.1") +
      " | sed 's/^/ALPN /') & (" + good + " | sed 's/^/GOOD /'); wait";
  std::string out = f.RunClient(cmd);
  INFO(out);
  auto line = [&](const std::string& tag) {
    size_t at = out.find(tag + " ");
    if (at == std::string::npos) return std::string();
    return out.substr(at, out.find('\n', at) - at);
  };
  CHECK(line("UNTRUSTED").find("\"error\"") != std::string::npos);
  CHECK(line("UNTRUSTED").find("\"status\": 200") == std::string::npos);
  CHECK(line("EXPIRED").find("\"error\"") != std::string::npos);
  CHECK(line("EXPIRED").find("\"status\": 200") == std::string::npos);
  CHECK(line("ALPN").find("\"error\"") != std::string::npos);
  CHECK(line("GOOD").find("\"status\": 200, \"data\": \"hello hbone\\n\", \"ended\": true") !=
        std::string::npos);
  CHECK(f.server->handshake_failures() >= 2);
}

TEST_CASE("HboneServer: the last refused handshake is kept with its peer, reason and time") {
  ServerFixture f;
  CHECK(f.server->last_handshake_error().unix_time == 0);
  auto other_ca = workloads::CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(other_ca.ok());
  f.WriteCredentials(**other_ca, "untrusted", "shop", "frontend", std::chrono::hours(1));
  f.WriteCredentials(f.directory.ca(), "fresh", "shop", "frontend", std::chrono::hours(1));
  WriteExpiredCredentials(f, "expired");
  int64_t before = time(nullptr);
  std::string out = f.RunClient(f.ClientCommand("untrusted", {"127.64.0.5:9000"}));
  INFO(out);
  HandshakeFailure untrusted = f.server->last_handshake_error();
  INFO(untrusted.reason);
  CHECK(untrusted.peer == "127.0.0.1");
  CHECK(untrusted.reason.find("peer certificate rejected: untrusted issuer") != std::string::npos);
  CHECK(untrusted.unix_time >= before);
  CHECK(untrusted.unix_time <= time(nullptr));

  out = f.RunClient(f.ClientCommand("expired", {"127.64.0.5:9000"}));
  HandshakeFailure expired = f.server->last_handshake_error();
  INFO(expired.reason);
  CHECK(expired.reason.find("peer certificate rejected: certificate expired") != std::string::npos);
  // Said once, not twice ("rejected: peer certificate rejected: ...").
  CHECK(expired.reason.find("rejected: peer certificate rejected") == std::string::npos);

  // A good handshake leaves the last failure as it was.
  out = f.RunClient(f.ClientCommand("fresh", {"127.64.0.5:9000"}));
  CHECK(out.find("\"status\": 200") != std::string::npos);
  CHECK(f.server->last_handshake_error().reason == expired.reason);
  CHECK(f.server->handshake_failures() == 2);
}

}  // namespace
}  // namespace podless::proxy
