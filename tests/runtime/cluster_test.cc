// Cluster join and follow (runtime/cluster/cluster.h) on an in-memory etcd
// (tests/runtime/fake_etcd.h): no etcd process, no root. Each test runs the
// nodes' loop until the cluster layer has done what it covers, with a bound
// (RunUntil), so broken logic fails a check instead of hanging.
#include "runtime/cluster/cluster.h"

#include <doctest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "proxy/base/metrics.h"
#include "proxy/base/uv_handle.h"
#include "tests/runtime/cluster_test_records.h"
#include "tests/runtime/fake_etcd.h"
#include "tests/testing/files.h"
#include "tests/testing/run_loop.h"
#include "tests/testing/temp_dir.h"
#include "workloads/certificate_authority.h"
#include "workloads/ipam.h"

namespace podless::runtime {
namespace {

using namespace std::chrono_literals;
using podless::testing::RunFor;
using podless::testing::RunUntil;
using testing::FakeEtcd;
using workloads::Kind;
using workloads::ObjectKey;

// A loop, an in-memory etcd on it, and a cluster root CA in that etcd (as
// `podless ca init --store-root-key` leaves it).
struct Etcd {
  proxy::UvLoop loop;
  FakeEtcd etcd{loop.get()};
  ClusterKeys keys{"/podless/"};
  podless::testing::TempDir root_dir{"podless-cluster-root"};

  Etcd() {
    auto root = workloads::CertificateAuthority::LoadOrCreate(root_dir.path(), "cluster.local");
    REQUIRE(root.ok());
    etcd.Put(keys.RootCert(), (*root)->BundlePem());
    etcd.Put(keys.RootKey(), podless::testing::ReadFile(root_dir / "ca.key"));
  }

  Result<NodeRecord> NodeOf(const std::string& name) const {
    const mvccpb::KeyValue* kv = etcd.Find(keys.Node(name));
    if (kv == nullptr) return MakeError(ErrorCode::kNotFound, "no record of node " + name);
    return DecodeNodeRecord(kv->value());
  }
  int64_t LeaseOf(const std::string& key) const {
    const mvccpb::KeyValue* kv = etcd.Find(key);
    return kv == nullptr ? 0 : kv->lease();
  }
};

// One agent in cluster mode: its state dir, config, agent and cluster.
struct Node {
  Etcd& e;
  podless::testing::TempDir dir{"podless-cluster-node"};
  AgentConfig flags;   // what `podless run` parsed
  AgentConfig config;  // flags, then as Join left them
  proxy::Registry metrics;
  AgentPtr agent;
  ClusterPtr cluster;
  int view_changes = 0;

  Node(Etcd& etcd, const std::string& name, const std::string& address) : e(etcd) {
    config.state_dir = dir.path();
    config.node_name = name;
    config.hbone_address = address + ":15008";
    config.cluster.etcd_endpoints = {"http://etcd.invalid:2379"};
    config.cluster.node_address = address;
    config.cluster.cluster_cidr = "10.200.0.0/16";
    config.cluster.node_cidr_prefix = 24;
    config.cluster.lease_ttl = 3s;
    flags = config;
  }

  Result<ClusterPtr> TryJoin() {
    return Cluster::Join(
        e.loop.get(), config,
        [this](uv_loop_t*, const AgentConfig&) -> Result<EtcdKvPtr> { return e.etcd.Connect(); });
  }
  void Join() {
    auto joined = TryJoin();
    REQUIRE_MESSAGE(joined.ok(), (joined.ok() ? "" : joined.error().message));
    cluster = std::move(*joined);
  }
  // Opens the agent on the joined config and follows the cluster.
  void Start() {
    auto opened = Agent::Open(config);
    REQUIRE_MESSAGE(opened.ok(), (opened.ok() ? "" : opened.error().message));
    agent = std::move(*opened);
    cluster->Start(*agent, metrics, [this] { ++view_changes; });
    REQUIRE(RunUntil(e.loop.get(), [this] { return cluster->connected(); }));
  }
  void JoinAndStart() {
    Join();
    Start();
  }
  // The agent dies without a word: its lease stays until etcd expires it.
  // A new process would parse its flags again.
  void Crash() {
    cluster.reset();
    agent.reset();
    config = flags;
  }
  void Run(const std::string& name, uint32_t replicas) {
    workloads::Workload w = testing::MakeWorkload(name, replicas);
    REQUIRE(agent->Apply({w}, false).ok());
  }
  std::vector<uint32_t> AddressesOf(const std::string& name) const {
    const StoredObject* stored = agent->Find(ObjectKey{Kind::kWorkload, "shop", name});
    REQUIRE(stored != nullptr);
    return stored->addresses;
  }
  std::string WorkloadKey(const std::string& name) const {
    return e.keys.Workload(config.node_name, ObjectKey{Kind::kWorkload, "shop", name});
  }
  int64_t lease() const { return e.LeaseOf(e.keys.Node(config.node_name)); }
};

workloads::Service MakeService(const std::string& name) {
  workloads::Service service;
  service.metadata.name = name;
  service.metadata.ns = "shop";
  service.selector = {{"app", name}};
  workloads::ServicePort port;
  port.name = "http";
  port.port = 80;
  service.ports.push_back(port);
  return service;
}

// Runs Cluster::Apply or Cluster::Delete (`start` calls it with the callback)
// to its answer.
Result<std::vector<ObjectChange>> Changes(
    uv_loop_t* loop, const std::function<void(Cluster::ChangesCallback)>& start) {
  std::optional<Result<std::vector<ObjectChange>>> out;
  start([&out](Result<std::vector<ObjectChange>> changes) { out = std::move(changes); });
  REQUIRE(RunUntil(loop, [&] { return out.has_value(); }));
  return std::move(*out);
}

// A Join that must fail with `code`, saying `says`.
void CheckRefused(const Result<ClusterPtr>& joined, ErrorCode code, const std::string& says) {
  REQUIRE_FALSE(joined.ok());
  CHECK(joined.error().code == code);
  CHECK_MESSAGE(joined.error().message.find(says) != std::string::npos, joined.error().message);
}

bool InRange(const std::string& cidr, uint32_t address) {
  auto range = workloads::Cidr::Parse(cidr);
  return range.ok() && range->Contains(address);
}

TEST_CASE("Cluster: a joining node registers under a live lease and claims the first free range") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1"), n2(e, "n2", "192.0.2.2");
  n1.Join();
  n2.Join();

  auto record = e.NodeOf("n1");
  REQUIRE(record.ok());
  CHECK(record->address == "192.0.2.1");
  CHECK(record->hbone_port == 15008);
  CHECK(record->cidr == "10.200.0.0/24");
  CHECK(n1.config.node_cidr == "10.200.0.0/24");
  CHECK(e.etcd.LeaseAlive(n1.lease()));
  REQUIRE(e.etcd.Find(e.keys.Cidr("10.200.0.0/24")) != nullptr);
  CHECK(e.etcd.Find(e.keys.Cidr("10.200.0.0/24"))->value() == "n1");
  // Its intermediate CA is in its state dir, signed by the cluster root.
  CHECK(n1.config.ca_cert == n1.dir / "cluster-ca.crt");
  CHECK(
      podless::testing::ReadFile(n1.config.ca_cert).find(e.etcd.Find(e.keys.RootCert())->value()) !=
      std::string::npos);

  // The second node takes the next range, under a lease of its own.
  CHECK(n2.config.node_cidr == "10.200.1.0/24");
  CHECK(e.NodeOf("n2")->cidr == "10.200.1.0/24");
  CHECK(n2.lease() != n1.lease());
  CHECK(e.etcd.LeaseAlive(n2.lease()));
}

TEST_CASE(
    "Cluster: a live node's name is refused to another agent; its own state dir takes it "
    "back") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1");
  n1.Join();
  const NodeRecord first = *e.NodeOf("n1");

  Node impostor(e, "n1", "192.0.2.9");
  CheckRefused(impostor.TryJoin(), ErrorCode::kAlreadyExists,
               "in use by another live agent at 192.0.2.1");
  CHECK(e.NodeOf("n1")->address == "192.0.2.1");

  // The same state dir restarting while its old lease lives: same instance,
  // same range, a new lease.
  const int64_t old_lease = n1.lease();
  n1.Crash();
  n1.Join();
  auto again = e.NodeOf("n1");
  REQUIRE(again.ok());
  CHECK(again->instance_id == first.instance_id);
  CHECK(again->cidr == first.cidr);
  CHECK(n1.lease() != old_lease);
}

TEST_CASE("Cluster: a --node-cidr overlapping another node's range is refused, naming the node") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1"), n2(e, "n2", "192.0.2.2");
  n1.Join();
  n2.config.node_cidr = "10.200.0.128/25";
  n2.config.node_cidr_set = true;
  CheckRefused(n2.TryJoin(), ErrorCode::kAlreadyExists, "overlaps 10.200.0.0/24 of node \"n1\"");
  CHECK(e.etcd.Find(e.keys.Node("n2")) == nullptr);
}

TEST_CASE("Cluster: a node that loses the race for a free range claims the next one") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1");
  // Another node claims 10.200.0.0/24 between n1's read and its claim.
  e.etcd.BeforeNext("Txn", [&e] { e.etcd.Put(e.keys.Cidr("10.200.0.0/24"), "racer"); });
  n1.Join();
  CHECK(n1.config.node_cidr == "10.200.1.0/24");
  CHECK(e.etcd.Find(e.keys.Cidr("10.200.0.0/24"))->value() == "racer");
  CHECK(e.etcd.Find(e.keys.Cidr("10.200.1.0/24"))->value() == "n1");
}

TEST_CASE("Cluster: a node cannot join a cluster whose CA is not in etcd") {
  Etcd e;
  e.etcd.Delete(e.keys.RootCert());
  Node n1(e, "n1", "192.0.2.1");
  CheckRefused(n1.TryJoin(), ErrorCode::kFailedPrecondition, "podless ca init");
}

TEST_CASE("Cluster: another node's workloads enter the view and leave it with that node's lease") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1"), n2(e, "n2", "192.0.2.2");
  n1.JoinAndStart();
  n2.JoinAndStart();
  REQUIRE(RunUntil(e.loop.get(), [&] { return n1.cluster->view().nodes().size() == 2; }));

  n2.Run("web", 2);
  const std::vector<uint32_t> addresses = n2.AddressesOf("web");
  REQUIRE(addresses.size() == 2);
  CHECK(InRange(n2.config.node_cidr, addresses[0]));
  const int changes = n1.view_changes;
  REQUIRE(RunUntil(e.loop.get(),
                   [&] { return n1.cluster->view().FindReplica(addresses[1]) != nullptr; }));
  CHECK(n1.view_changes > changes);
  CHECK(n1.cluster->view().FindReplica(addresses[1])->ordinal == 1);
  CHECK(n1.cluster->view().WorkloadCountOf("n2") == 1);
  // The record is under n2's lease, so it dies with n2.
  CHECK(e.LeaseOf(n2.WorkloadKey("web")) == n2.lease());
  // A node never puts its own workloads in its view.
  CHECK(n2.cluster->view().FindReplica(addresses[0]) == nullptr);

  // Scaled down: the replica leaves the other node's view.
  n2.Run("web", 1);
  REQUIRE(RunUntil(e.loop.get(),
                   [&] { return n1.cluster->view().FindReplica(addresses[1]) == nullptr; }));
  CHECK(n1.cluster->view().FindReplica(addresses[0]) != nullptr);

  // n2 dies; once etcd expires its lease it leaves n1's view entirely.
  const int64_t lease = n2.lease();
  n2.Crash();
  RunFor(e.loop.get(), 50ms);
  CHECK(n1.cluster->view().FindReplica(addresses[0]) != nullptr);
  e.etcd.ExpireLease(lease);
  REQUIRE(RunUntil(e.loop.get(), [&] {
    return n1.cluster->view().FindReplica(addresses[0]) == nullptr &&
           n1.cluster->view().FindNode("n2") == nullptr;
  }));
  CHECK(n1.cluster->view().workloads().empty());
}

TEST_CASE("Cluster: a node whose lease expires rejoins with the same address and republishes") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1");
  n1.JoinAndStart();
  n1.Run("web", 1);
  REQUIRE(RunUntil(e.loop.get(), [&] { return e.etcd.Find(n1.WorkloadKey("web")) != nullptr; }));
  const NodeRecord before = *e.NodeOf("n1");
  const int64_t lease = n1.lease();
  const int grants = e.etcd.calls("LeaseGrant");

  e.etcd.ExpireLease(lease);
  CHECK(e.etcd.Find(e.keys.Node("n1")) == nullptr);
  CHECK(e.etcd.Find(n1.WorkloadKey("web")) == nullptr);
  REQUIRE(RunUntil(e.loop.get(), [&] {
    return n1.cluster->connected() && e.etcd.Find(n1.WorkloadKey("web")) != nullptr &&
           e.etcd.Find(e.keys.Node("n1")) != nullptr;
  }));
  CHECK(e.etcd.calls("LeaseGrant") == grants + 1);
  const int64_t renewed = n1.lease();
  CHECK(renewed != lease);
  CHECK(e.etcd.LeaseAlive(renewed));
  CHECK(e.LeaseOf(n1.WorkloadKey("web")) == renewed);
  auto after = e.NodeOf("n1");
  REQUIRE(after.ok());
  CHECK(after->address == before.address);
  CHECK(after->cidr == before.cidr);
  CHECK(after->instance_id == before.instance_id);
  auto published = DecodeWorkloadRecord(e.etcd.Find(n1.WorkloadKey("web"))->value());
  REQUIRE(published.ok());
  CHECK(published->addresses == n1.AddressesOf("web"));
}

TEST_CASE("Cluster: a failed keep-alive stream reconnects on the same lease") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1");
  n1.JoinAndStart();
  const int64_t lease = n1.lease();
  const int grants = e.etcd.calls("LeaseGrant");
  const int lists = e.etcd.calls("Range");
  REQUIRE(e.etcd.keepalive_streams() == 1);

  e.etcd.EndKeepAlives(MakeError(ErrorCode::kDeadlineExceeded, "no keep-alive answer"));
  REQUIRE(RunUntil(e.loop.get(), [&] { return !n1.cluster->connected(); }));
  CHECK(n1.cluster->StatusJson().find("no keep-alive answer") != std::string::npos);
  REQUIRE(RunUntil(e.loop.get(), [&] {
    return n1.cluster->connected() && e.etcd.keepalive_streams() == 1 &&
           e.etcd.watch_streams() == 1;
  }));
  CHECK(e.etcd.calls("Range") > lists);  // read everything again
  CHECK(e.etcd.calls("LeaseGrant") == grants);
  CHECK(n1.lease() == lease);
}

TEST_CASE("Cluster: while etcd is down a node keeps its last view; back, it reads it again") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1"), n2(e, "n2", "192.0.2.2");
  n1.JoinAndStart();
  n2.JoinAndStart();
  n2.Run("web", 1);
  const uint32_t address = n2.AddressesOf("web")[0];
  REQUIRE(RunUntil(e.loop.get(), [&] { return n1.cluster->view().FindReplica(address); }));

  e.etcd.SetDown(true);
  REQUIRE(RunUntil(e.loop.get(), [&] { return !n1.cluster->connected(); }));
  CHECK(n1.cluster->StatusJson().find("fake etcd is down") != std::string::npos);
  // Meanwhile n2 dies and its lease runs out: n1 cannot hear it, and keeps
  // routing on what it saw last.
  const int64_t lease = n2.lease();
  n2.Crash();
  e.etcd.ExpireLease(lease);
  RunFor(e.loop.get(), 400ms);
  CHECK_FALSE(n1.cluster->connected());
  CHECK(n1.cluster->view().FindReplica(address) != nullptr);
  CHECK(n1.cluster->view().FindNode("n2") != nullptr);
  CHECK(e.etcd.watch_streams() == 0);

  e.etcd.SetDown(false);
  REQUIRE(RunUntil(e.loop.get(), [&] {
    return n1.cluster->connected() && n1.cluster->view().FindReplica(address) == nullptr;
  }));
  CHECK(n1.cluster->view().FindNode("n2") == nullptr);
  CHECK(e.etcd.Find(e.keys.Node("n1")) != nullptr);
  CHECK(e.etcd.watch_streams() == 1);
}

TEST_CASE("Cluster: after a compaction cancels its watch a node reads again and misses nothing") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1"), n2(e, "n2", "192.0.2.2");
  n1.JoinAndStart();
  n2.JoinAndStart();
  const int lists = e.etcd.calls("Range");
  e.etcd.Compact(e.etcd.revision());
  // A change made while n1 has no watch.
  n2.Run("web", 1);
  const uint32_t address = n2.AddressesOf("web")[0];
  REQUIRE(RunUntil(e.loop.get(), [&] {
    return n1.cluster->view().FindReplica(address) != nullptr && e.etcd.watch_streams() == 2;
  }));
  CHECK(e.etcd.calls("Range") > lists);
}

TEST_CASE("Cluster: a node whose record is deleted while it lives puts it back") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1");
  n1.JoinAndStart();
  const int64_t lease = n1.lease();
  e.etcd.Delete(e.keys.Node("n1"));
  REQUIRE(RunUntil(e.loop.get(), [&] { return e.etcd.Find(e.keys.Node("n1")) != nullptr; }));
  CHECK(n1.lease() == lease);
  CHECK(e.NodeOf("n1")->address == "192.0.2.1");
}

TEST_CASE(
    "Cluster: etcd away at start: a node that joined before starts on its last range and "
    "registers once etcd answers") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1");
  n1.Join();
  const std::string range = n1.config.node_cidr;
  const int64_t lease = n1.lease();
  n1.Crash();
  e.etcd.ExpireLease(lease);
  REQUIRE(e.etcd.Find(e.keys.Node("n1")) == nullptr);

  e.etcd.SetDown(true);
  n1.Join();
  CHECK(n1.config.node_cidr == range);
  CHECK(n1.config.ca_cert == n1.dir / "cluster-ca.crt");
  auto opened = Agent::Open(n1.config);
  REQUIRE(opened.ok());
  n1.agent = std::move(*opened);
  n1.cluster->Start(*n1.agent, n1.metrics, [] {});
  RunFor(e.loop.get(), 300ms);
  CHECK_FALSE(n1.cluster->connected());
  CHECK(e.etcd.Find(e.keys.Node("n1")) == nullptr);

  e.etcd.SetDown(false);
  REQUIRE(RunUntil(e.loop.get(), [&] { return n1.cluster->connected(); }));
  auto record = e.NodeOf("n1");
  REQUIRE(record.ok());
  CHECK(record->cidr == range);
  CHECK(e.etcd.LeaseAlive(n1.lease()));

  // A state dir that never joined cannot start without etcd.
  e.etcd.SetDown(true);
  Node fresh(e, "n2", "192.0.2.2");
  CheckRefused(fresh.TryJoin(), ErrorCode::kUnavailable, "cannot join the cluster");
}

TEST_CASE("Cluster: a node that shuts down revokes its lease and leaves every view at once") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1"), n2(e, "n2", "192.0.2.2");
  n1.JoinAndStart();
  n2.JoinAndStart();
  n2.Run("web", 1);
  const uint32_t address = n2.AddressesOf("web")[0];
  REQUIRE(RunUntil(e.loop.get(), [&] { return n1.cluster->view().FindReplica(address); }));
  const int64_t lease = n2.lease();

  bool done = false;
  n2.cluster->Shutdown([&] { done = true; });
  REQUIRE(RunUntil(e.loop.get(), [&] { return done; }));
  CHECK_FALSE(e.etcd.LeaseAlive(lease));
  REQUIRE(RunUntil(e.loop.get(), [&] {
    return n1.cluster->view().FindNode("n2") == nullptr &&
           n1.cluster->view().FindReplica(address) == nullptr;
  }));
  // Its range stays claimed: the name keeps it for the next start.
  CHECK(e.etcd.Find(e.keys.Cidr(n2.config.node_cidr)) != nullptr);
}

TEST_CASE(
    "Cluster: Services go through etcd with a VIP, reach every node, and stay put while etcd "
    "is away") {
  Etcd e;
  Node n1(e, "n1", "192.0.2.1"), n2(e, "n2", "192.0.2.2");
  n1.JoinAndStart();
  n2.JoinAndStart();
  const ObjectKey web{Kind::kService, "shop", "web"};

  auto applied = Changes(e.loop.get(), [&](auto done) {
    n1.cluster->Apply({MakeService("web")}, false, std::move(done));
  });
  REQUIRE_MESSAGE(applied.ok(), (applied.ok() ? "" : applied.error().message));
  REQUIRE(applied->size() == 1);
  CHECK((*applied)[0].action == "created");
  // In etcd, with the VIP claimed under its own key.
  const mvccpb::KeyValue* stored = e.etcd.Find(e.keys.Object(web));
  REQUIRE(stored != nullptr);
  auto record = DecodeClusterObjectRecord(stored->value());
  REQUIRE(record.ok());
  REQUIRE(record->vip != 0);
  REQUIRE(e.etcd.Find(e.keys.Vip(record->vip)) != nullptr);
  CHECK(e.etcd.Find(e.keys.Vip(record->vip))->value() == "shop/web");
  // The node that applied it reads its own write; the other gets it from
  // the watch, with the same VIP.
  REQUIRE(n1.agent->Find(web) != nullptr);
  REQUIRE(RunUntil(e.loop.get(), [&] { return n2.agent->Find(web) != nullptr; }));
  CHECK(n2.agent->Find(web)->addresses == std::vector<uint32_t>{record->vip});

  // etcd away: cluster-wide objects cannot change, and stay as they were.
  e.etcd.SetDown(true);
  REQUIRE(RunUntil(e.loop.get(), [&] { return !n1.cluster->connected(); }));
  auto refused = Changes(e.loop.get(), [&](auto done) {
    n1.cluster->Apply({MakeService("api")}, false, std::move(done));
  });
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == ErrorCode::kUnavailable);
  auto kept =
      Changes(e.loop.get(), [&](auto done) { n1.cluster->Delete({web}, false, std::move(done)); });
  REQUIRE_FALSE(kept.ok());
  CHECK(kept.error().code == ErrorCode::kUnavailable);
  CHECK(e.etcd.Find(e.keys.Object(web)) != nullptr);
  CHECK(n1.agent->Find(web) != nullptr);
  CHECK(n2.agent->Find(web) != nullptr);

  // Back: a delete leaves etcd (VIP claim too) and every node.
  e.etcd.SetDown(false);
  REQUIRE(
      RunUntil(e.loop.get(), [&] { return n1.cluster->connected() && n2.cluster->connected(); }));
  auto deleted =
      Changes(e.loop.get(), [&](auto done) { n1.cluster->Delete({web}, false, std::move(done)); });
  REQUIRE(deleted.ok());
  CHECK(e.etcd.Find(e.keys.Object(web)) == nullptr);
  CHECK(e.etcd.Find(e.keys.Vip(record->vip)) == nullptr);
  CHECK(n1.agent->Find(web) == nullptr);
  REQUIRE(RunUntil(e.loop.get(), [&] { return n2.agent->Find(web) == nullptr; }));
}

}  // namespace
}  // namespace podless::runtime
