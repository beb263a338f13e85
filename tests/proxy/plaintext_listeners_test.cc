// PlaintextListeners' bindings: a port served on a replica's own address
// leaves it to other programs on every other address; served on the bind
// address (0.0.0.0) it is taken host-wide. Sync closes before it binds, so
// a port can move from one to the other in one call.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "proxy/base/tcp_stream.h"
#include "proxy/proxy_core.h"
#include "tests/proxy/fake_directory.h"
#include "tests/proxy/peer_helpers.h"

namespace podless::proxy {
namespace {

using testing::FakeDirectory;
using testing::FreeWildcardPort;
using testing::Ip;
using testing::RawSocket;
using testing::RunUntil;

// Whether another program could listen on address:port now.
bool CanListen(const char* address, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = MakeSockaddr(Ip(address), port);
  bool ok =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && ::listen(fd, 1) == 0;
  ::close(fd);
  return ok;
}

struct ListenersFixture {
  ListenersFixture() {
    // Bound on 0.0.0.0 below: a port no client socket elsewhere can hold.
    port = FreeWildcardPort();
    REQUIRE(port != 0);
    directory.AddReplica("127.64.0.5", "web", "shop", "web",
                         {{"tcp", port, workloads::Protocol::kTCP}});
    ProxyConfig config;
    config.hbone.listen.port = 0;
    config.outbound.listen.port = 0;
    auto created = ProxyCore::Create(loop.get(), directory, config, registry);
    REQUIRE(created.ok());
    core = std::move(created).value();
  }
  ~ListenersFixture() { core->Close(); }

  // An echo round trip to web-0 on the port.
  bool Echoes() {
    RawSocket s(Ip("127.64.0.5"), port);
    if (!s.connected()) return false;
    s.Send("ping");
    return RunUntil(
               loop.get(), [&] { return s.PeerClosed() || s.received() == "ping"; }, 2000) &&
           s.received() == "ping";
  }

  UvLoop loop;
  FakeDirectory directory;
  Registry registry;
  ProxyCorePtr core;
  uint16_t port = 0;
};

TEST_CASE("PlaintextListeners: a replica-address socket leaves the port to others elsewhere") {
  ListenersFixture f;
  REQUIRE(f.core->SyncPlaintextPorts({{Ip("127.64.0.5"), f.port}}).ok());
  CHECK(f.Echoes());
  CHECK(CanListen("127.0.0.1", f.port));
  CHECK(!CanListen("127.64.0.5", f.port));
  CHECK(f.core->Stats().listeners.back().address == "127.64.0.5:" + std::to_string(f.port));
}

TEST_CASE("PlaintextListeners: on the bind address the port is taken host-wide; moves both ways") {
  ListenersFixture f;
  REQUIRE(f.core->SyncPlaintextPorts({{Ip("127.64.0.5"), f.port}}).ok());
  // To 0.0.0.0 in one Sync: the replica's socket closes first.
  REQUIRE(f.core->SyncPlaintextPorts({{0, f.port}}).ok());
  CHECK(f.Echoes());
  CHECK(!CanListen("127.0.0.1", f.port));
  CHECK(f.core->Stats().listeners.back().address == "0.0.0.0:" + std::to_string(f.port));
  // And back.
  REQUIRE(f.core->SyncPlaintextPorts({{Ip("127.64.0.5"), f.port}}).ok());
  CHECK(f.Echoes());
  CHECK(CanListen("127.0.0.1", f.port));
}

TEST_CASE("PlaintextListeners: a port the directory closes to plaintext is refused and counted") {
  ListenersFixture f;
  REQUIRE(f.core->SyncPlaintextPorts({{Ip("127.64.0.5"), f.port}}).ok());
  CHECK(f.Echoes());
  f.directory.strict_ports.insert({Ip("127.64.0.5"), f.port});  // PeerAuthentication STRICT
  CHECK(!f.Echoes());
  CHECK(f.registry.Render().find("podless_authz_denied_total{destination_workload=\"web\","
                                 "destination_namespace=\"shop\"} 1") != std::string::npos);
  f.directory.strict_ports.clear();  // PERMISSIVE again: the next connection is served
  CHECK(f.Echoes());
}

TEST_CASE("PlaintextListeners: a socket another program holds is reported with its address") {
  ListenersFixture f;
  int holder = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = MakeSockaddr(Ip("0.0.0.0"), f.port);
  REQUIRE(::bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(holder, 1) == 0);
  Status status = f.core->SyncPlaintextPorts({{Ip("127.64.0.5"), f.port}});
  REQUIRE(!status.ok());
  CHECK(status.error().message.find("127.64.0.5:" + std::to_string(f.port)) != std::string::npos);
  CHECK(status.error().message.find("address already in use") != std::string::npos);
  CHECK(f.core->plaintext_ports().empty());
  ::close(holder);
  CHECK(f.core->SyncPlaintextPorts({{Ip("127.64.0.5"), f.port}}).ok());
  CHECK(f.Echoes());
}

}  // namespace
}  // namespace podless::proxy
