#include "runtime/proxy_directory.h"

#include <doctest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

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
  std::string dir;
  AgentPtr agent;
  Fixture() {
    char tmpl[] = "/tmp/podless-directory-test-XXXXXX";
    dir = mkdtemp(tmpl);
    AgentConfig config;
    config.state_dir = dir;
    config.node_name = "test";
    auto opened = Agent::Open(config);
    REQUIRE(opened.ok());
    agent = std::move(*opened);
  }
  ~Fixture() {
    agent.reset();
    std::filesystem::remove_all(dir);
  }
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

}  // namespace
}  // namespace podless::runtime
