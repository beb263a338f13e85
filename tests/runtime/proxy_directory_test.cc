#include "runtime/node/proxy_directory.h"

#include <doctest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/testing/temp_dir.h"

namespace podless::runtime {
namespace {

using workloads::Kind;
using workloads::ObjectKey;

workloads::Workload WebWorkload(const std::string& name, uint32_t replicas,
                                workloads::AppSpec app) {
  workloads::Workload w;
  w.metadata.name = name;
  w.metadata.labels = {{"app", "web"}};
  w.spec.replicas = replicas;
  w.spec.service_account = name;
  w.spec.ports = {{"http", 8080, workloads::Protocol::kTCP}};
  w.spec.app = std::move(app);
  return w;
}

struct Fixture {
  testing::TempDir dir{"podless-directory-test"};
  AgentPtr agent;
  Fixture() {
    AgentConfig config;
    config.state_dir = dir.path();
    config.node_name = "test";
    auto opened = Agent::Open(config);
    REQUIRE(opened.ok());
    agent = std::move(*opened);
  }
  ~Fixture() { agent.reset(); }
  const std::vector<uint32_t>& AddressesOf(const std::string& name) const {
    const StoredObject* stored = agent->Find(ObjectKey{Kind::kWorkload, "default", name});
    REQUIRE(stored != nullptr);
    return stored->addresses;
  }
};

TEST_CASE("ProxyDirectory: a Service over a million replicas resolves to an index, not a list") {
  Fixture f;
  workloads::ExecApp exec;
  exec.command = {"/bin/true"};
  workloads::Service service;
  service.metadata.name = "web";
  service.selector = {{"app", "web"}};
  service.ports = {{"http", 80, {0, "http"}, workloads::Protocol::kTCP}};
  REQUIRE(f.agent
              ->Apply({WebWorkload("big", 1'000'000, workloads::EchoApp{}),
                       WebWorkload("procs", 3, exec), service},
                      false)
              .ok());
  const auto& big = f.AddressesOf("big");
  const auto& procs = f.AddressesOf("procs");
  // Of the exec replicas only those their supervisor reported ready count.
  f.agent->SetReplicaReady(procs[2], true);

  ProxyDirectory directory(*f.agent, 15008);
  auto destination = directory.Resolve("web.default.svc", 80);
  REQUIRE(destination.ok());
  CHECK(destination->service == "web.default.svc.cluster.local");
  CHECK(destination->endpoints.empty());  // nothing listed: the set answers by index
  REQUIRE(destination->endpoint_count() == 1'000'001);
  for (size_t i : {size_t{0}, size_t{123'456}, size_t{999'999}}) {
    CHECK(destination->endpoint_address(i) == big[i]);
    proxy::Endpoint endpoint = destination->endpoint(i);
    CHECK(endpoint.address == big[i]);
    CHECK(endpoint.port == 8080);  // the named targetPort
    CHECK(endpoint.workload == "big");
    CHECK(endpoint.spiffe_id == "spiffe://cluster.local/ns/default/sa/big");
  }
  // The last index is the one ready exec replica (workloads in name order).
  CHECK(destination->endpoint_address(1'000'000) == procs[2]);
  CHECK(destination->endpoint(1'000'000).workload == "procs");

  f.agent->SetReplicaReady(procs[0], true);
  directory.Invalidate();
  auto again = directory.Resolve("web.default.svc", 80);
  REQUIRE(again.ok());
  REQUIRE(again->endpoint_count() == 1'000'002);
  CHECK(again->endpoint_address(1'000'000) == procs[0]);
  CHECK(again->endpoint_address(1'000'001) == procs[2]);

  // The selection is kept between connections and redone after a change.
  REQUIRE(f.agent->Apply({WebWorkload("late", 2, workloads::EchoApp{})}, false).ok());
  directory.Invalidate();  // as the Node does on every object change
  auto after_change = directory.Resolve("web.default.svc", 80);
  REQUIRE(after_change.ok());
  CHECK(after_change->endpoint_count() == 1'000'004);
  CHECK(after_change->endpoint(1'000'000).workload == "late");
}

TEST_CASE("ProxyDirectory: a change in one namespace keeps the other namespaces' selections") {
  Fixture f;
  auto in = [](std::string ns, auto object) {
    object.metadata.ns = std::move(ns);
    return object;
  };
  workloads::Service service;
  service.metadata.name = "web";
  service.selector = {{"app", "web"}};
  service.ports = {{"http", 80, {0, "http"}, workloads::Protocol::kTCP}};
  REQUIRE(f.agent
              ->Apply({in("a", WebWorkload("w", 1, workloads::EchoApp{})), in("a", service),
                       in("b", WebWorkload("w", 2, workloads::EchoApp{})), in("b", service)},
                      false)
              .ok());
  ProxyDirectory directory(*f.agent, 15008);
  REQUIRE(directory.Resolve("web.a.svc", 80)->endpoint_count() == 1);
  REQUIRE(directory.Resolve("web.b.svc", 80)->endpoint_count() == 2);
  CHECK(directory.cached_selections() == 2);

  REQUIRE(f.agent->Apply({in("a", WebWorkload("w", 3, workloads::EchoApp{}))}, false).ok());
  directory.InvalidateNamespace("a");         // as the Node does for a change in "a"
  CHECK(directory.cached_selections() == 1);  // b's is kept
  CHECK(directory.Resolve("web.a.svc", 80)->endpoint_count() == 3);
  CHECK(directory.Resolve("web.b.svc", 80)->endpoint_count() == 2);
  CHECK(directory.cached_selections() == 2);

  // A LocalReplica record of the changed workload is rebuilt, not stale.
  const uint32_t a0 = f.agent->Find(ObjectKey{Kind::kWorkload, "a", "w"})->addresses[0];
  REQUIRE(directory.FindLocalReplica(a0) != nullptr);
  auto relabeled = in("a", WebWorkload("w", 3, workloads::EchoApp{}));
  relabeled.metadata.labels = {{"app", "other"}};
  REQUIRE(f.agent->Apply({relabeled}, false).ok());
  directory.InvalidateNamespace("a");
  REQUIRE(directory.FindLocalReplica(a0) != nullptr);
  CHECK(directory.FindLocalReplica(a0)->labels->at("app") == "other");
  CHECK(directory.Resolve("web.a.svc", 80)->endpoint_count() == 0);
}

}  // namespace
}  // namespace podless::runtime

namespace podless::runtime {
namespace {

workloads::PeerAuthentication Peer(const std::string& ns, const std::string& name,
                                   workloads::MtlsMode mode, workloads::Labels selector = {},
                                   std::map<uint16_t, workloads::MtlsMode> ports = {}) {
  workloads::PeerAuthentication peer;
  peer.metadata.ns = ns;
  peer.metadata.name = name;
  peer.mode = mode;
  peer.selector = std::move(selector);
  peer.port_level = std::move(ports);
  return peer;
}

TEST_CASE("ProxyDirectory: PeerAuthentication decides plaintext, with Istio's inheritance") {
  using workloads::MtlsMode;
  Fixture f;
  auto web = WebWorkload("web", 1, workloads::EchoApp{});
  web.metadata.ns = "shop";
  web.spec.ports.push_back({"admin", 9090, workloads::Protocol::kTCP});
  REQUIRE(f.agent->Apply({web}, false).ok());
  ProxyDirectory directory(*f.agent, 15008);
  const uint32_t address = f.agent->Find(ObjectKey{Kind::kWorkload, "shop", "web"})->addresses[0];
  auto allowed = [&](uint16_t port) {
    directory.Invalidate();
    const proxy::LocalReplica* replica = directory.FindLocalReplica(address);
    REQUIRE(replica != nullptr);
    return directory.PlaintextAllowed(*replica, port);
  };
  auto apply = [&](workloads::PeerAuthentication peer) {
    REQUIRE(f.agent->Apply({std::move(peer)}, false).ok());
  };
  auto remove = [&](const std::string& ns, const std::string& name) {
    REQUIRE(f.agent->Delete({ObjectKey{Kind::kPeerAuthentication, ns, name}}, false).ok());
  };

  CHECK(allowed(8080));  // no policy: PERMISSIVE
  // The root namespace's, then the namespace's, then the workload's.
  apply(Peer("istio-system", "default", MtlsMode::kStrict));
  CHECK(!allowed(8080));
  apply(Peer("shop", "default", MtlsMode::kPermissive));
  CHECK(allowed(8080));
  apply(Peer("shop", "default", MtlsMode::kUnset));  // UNSET: the root's applies
  CHECK(!allowed(8080));
  apply(Peer("shop", "default", MtlsMode::kStrict));
  apply(Peer("shop", "web", MtlsMode::kDisable, {{"app", "web"}}));  // DISABLE: plaintext ok
  CHECK(allowed(8080));
  // Port level first; UNSET there falls back to the workload level.
  apply(Peer("shop", "web", MtlsMode::kPermissive, {{"app", "web"}},
             {{9090, MtlsMode::kStrict}, {8080, MtlsMode::kUnset}}));
  CHECK(allowed(8080));
  CHECK(!allowed(9090));
  // A selector that does not match leaves it to the namespace (STRICT).
  apply(Peer("shop", "web", MtlsMode::kPermissive, {{"app", "other"}}));
  CHECK(!allowed(8080));
  // A root-namespace policy with a selector is not mesh-wide.
  remove("shop", "default");
  remove("istio-system", "default");
  apply(Peer("istio-system", "picky", MtlsMode::kStrict, {{"app", "web"}}));
  CHECK(allowed(8080));
  // Other namespaces' policies do not apply.
  apply(Peer("elsewhere", "default", MtlsMode::kStrict));
  CHECK(allowed(8080));
}

TEST_CASE("ProxyDirectory: WorkloadEntries are Service endpoints and resolve by address") {
  Fixture f;
  workloads::WorkloadEntry vm;
  vm.metadata.name = "vm";
  vm.address = "10.9.8.7";
  vm.labels = {{"app", "web"}};
  vm.service_account = "legacy";
  vm.ports = {{"http", 18080}};
  vm.hbone_port = 15009;
  workloads::WorkloadEntry bare = vm;  // no port named http: no endpoint of `named`
  bare.metadata.name = "bare";
  bare.address = "10.9.8.6";
  bare.ports.clear();
  workloads::Service named;
  named.metadata.name = "named";
  named.selector = {{"app", "web"}};
  named.ports = {{"http", 80, {0, "http"}, workloads::Protocol::kTCP}};
  workloads::Service numbered = named;
  numbered.metadata.name = "numbered";
  numbered.ports = {{"http", 80, {7000, ""}, workloads::Protocol::kTCP}};
  REQUIRE(
      f.agent
          ->Apply({WebWorkload("web", 1, workloads::EchoApp{}), vm, bare, named, numbered}, false)
          .ok());
  ProxyDirectory directory(*f.agent, 15008);

  auto destination = directory.Resolve("named.default.svc", 80);
  REQUIRE(destination.ok());
  REQUIRE(destination->endpoint_count() == 2);  // the workload's replica and vm
  bool found = false;
  for (size_t i = 0; i < destination->endpoint_count(); ++i) {
    proxy::Endpoint endpoint = destination->endpoint(i);
    if (endpoint.workload != "vm") continue;
    found = true;
    CHECK(destination->endpoint_address(i) == *workloads::ParseIpv4("10.9.8.7"));
    CHECK(endpoint.address == *workloads::ParseIpv4("10.9.8.7"));
    CHECK(endpoint.port == 18080);
    CHECK(endpoint.hbone_port == 15009);
    CHECK(endpoint.spiffe_id == "spiffe://cluster.local/ns/default/sa/legacy");
    CHECK(!endpoint.local);
  }
  CHECK(found);
  // A numeric targetPort is the port on every entry.
  CHECK(directory.Resolve("numbered.default.svc", 80)->endpoint_count() == 3);
  // The Service status lists the entries that serve one of its ports.
  const auto& service = std::get<workloads::Service>(
      f.agent->Find(ObjectKey{Kind::kService, "default", "named"})->object);
  CHECK(f.agent->ServiceEndpoints(service).size() == 2);

  // By its own address.
  auto direct = directory.Resolve("10.9.8.6", 443);
  REQUIRE(direct.ok());
  REQUIRE(direct->endpoints.size() == 1);
  CHECK(direct->endpoints[0].workload == "bare");
  CHECK(direct->endpoints[0].port == 443);
  CHECK(direct->endpoints[0].spiffe_id == "spiffe://cluster.local/ns/default/sa/legacy");
  CHECK(!directory.Resolve("10.9.8.5", 443).ok());

  // Deleted: gone from both after the change is announced.
  REQUIRE(f.agent->Delete({ObjectKey{Kind::kWorkloadEntry, "default", "bare"}}, false).ok());
  directory.InvalidateNamespace("default");
  CHECK(!directory.Resolve("10.9.8.6", 443).ok());
  CHECK(directory.Resolve("numbered.default.svc", 80)->endpoint_count() == 2);
}

}  // namespace
}  // namespace podless::runtime
