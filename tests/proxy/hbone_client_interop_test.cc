// podless' HBONE client (HbonePool) against an independent HBONE server
// (tests/proxy/hbone_interop_server.py: Python ssl + h2), so the client side
// of the wire format is checked by someone else's reading of RFC 9113.
#include <doctest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "fake_directory.h"
#include "proxy/base/dispatcher.h"
#include "proxy/connection_metrics.h"
#include "proxy/connection_pool.h"
#include "proxy/hbone_session.h"
#include "workloads/certificate_authority.h"

namespace podless::proxy {
namespace {

using testing::FakeDirectory;
using testing::Ip;
using testing::RunUntil;

constexpr char kServerIdentity[] = "spiffe://cluster.local/ns/ext/sa/server";

struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-hbone-interop") {}
};

using testing::WriteFile;

// Collects what a stream delivers.
struct Collector final : StreamHandler {
  std::string data;
  bool ended = false;
  bool closed = false;
  void OnData(std::string_view bytes) override { data.append(bytes); }
  void OnEnd() override { ended = true; }
  void OnClosed(bool) override { closed = true; }
};

// The Python server, started with a certificate from the test's CA.
struct InteropServer {
  FILE* pipe = nullptr;
  uint16_t port = 0;
  InteropServer(const std::string& dir, int connections) {
    const std::string command = "/usr/bin/python3 " PODLESS_PROXY_TEST_DIR
                                "/hbone_interop_server.py --ca " +
                                dir + "/ca.crt --cert " + dir + "/server.pem --key " + dir +
                                "/server.key --connections " + std::to_string(connections);
    pipe = popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char line[64] = {};
    REQUIRE(std::fgets(line, sizeof(line), pipe) != nullptr);
    REQUIRE(std::sscanf(line, "PORT %hu", &port) == 1);
  }
  ~InteropServer() {
    if (pipe != nullptr) pclose(pipe);
  }
};

TEST_CASE("HbonePool: talks HBONE to an independent server (Python ssl + h2)") {
  TempDir dir;
  FakeDirectory directory(dir.path(), "cluster.local");
  const LocalReplica& source =
      directory.AddReplica("127.64.0.7", "frontend", "shop", "frontend", {});

  // The server's SVID from the same CA, for the Python side.
  auto ca = workloads::CertificateAuthority::LoadOrCreate(dir.path(), "cluster.local");
  REQUIRE(ca.ok());
  auto svid = (*ca)->IssueSvid(*workloads::SpiffeId::Parse(kServerIdentity), std::chrono::hours(1));
  REQUIRE(svid.ok());
  WriteFile(dir.path() + "/server.pem", (*svid)->CertificateChainPem());
  WriteFile(dir.path() + "/server.key", (*svid)->PrivateKeyPem());

  InteropServer server(dir.path(), /*connections=*/1);
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  Registry registry;
  ProxyMetrics metrics(registry);
  auto pool = HbonePool::Create(dispatcher, directory, metrics, {});
  REQUIRE(pool.ok());

  Endpoint endpoint;
  endpoint.address = Ip("127.0.0.1");
  endpoint.port = 8080;
  endpoint.spiffe_id = kServerIdentity;
  endpoint.hbone_port = server.port;

  SUBCASE("two streams on one pooled connection, bytes both ways, half-close") {
    Collector a, b;
    HboneStream* streams[2] = {nullptr, nullptr};
    int opened = 0;
    std::string errors;
    HboneRequestPtr requests[2];
    Collector* collectors[2] = {&a, &b};
    for (int i = 0; i < 2; ++i) {
      requests[i] = (*pool)->Open(
          source, endpoint, [&, i](HboneStream* stream, int status, const std::string& error) {
            if (stream == nullptr) {
              errors += std::to_string(status) + " " + error + ";";
              return;
            }
            streams[i] = stream;
            stream->SetHandler(collectors[i]);
            stream->Write(i == 0 ? "first stream" : "second stream");
            stream->End();
            ++opened;
          });
    }
    REQUIRE(RunUntil(
        loop.get(), [&] { return (a.closed && b.closed) || !errors.empty(); }, 15000));
    CHECK(errors.empty());
    CHECK(opened == 2);
    // The server saw our SPIFFE ID and the CONNECT authority we asked for.
    CHECK(a.data ==
          "peer=spiffe://cluster.local/ns/shop/sa/frontend authority=127.0.0.1:8080\n"
          "first stream");
    CHECK(b.data.find("second stream") != std::string::npos);
    CHECK(a.ended);
    CHECK((*pool)->connection_count() == 1);
  }

  SUBCASE("a server whose identity is not the expected one is refused") {
    endpoint.spiffe_id = "spiffe://cluster.local/ns/ext/sa/someone-else";
    std::string error;
    bool done = false;
    HboneRequestPtr request =
        (*pool)->Open(source, endpoint, [&](HboneStream* stream, int status, const std::string& e) {
          CHECK(stream == nullptr);
          CHECK(status == 0);
          error = e;
          done = true;
        });
    REQUIRE(RunUntil(
        loop.get(), [&] { return done; }, 15000));
    CHECK_FALSE(error.empty());
  }
  (*pool)->Close();
  RunUntil(
      loop.get(), [] { return false; }, 50);
}

}  // namespace
}  // namespace podless::proxy
