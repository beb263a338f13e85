#include "runtime/state/agent.h"

#include <doctest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "tests/testing/temp_dir.h"

namespace podless::runtime {
namespace {

using workloads::Kind;
using workloads::ObjectKey;

struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-agent-test") {}
};

AgentConfig ConfigIn(const TempDir& dir) {
  AgentConfig config;
  config.state_dir = dir.path();
  config.node_name = "test";
  return config;
}

workloads::Workload MakeWorkload(const std::string& name, uint32_t replicas) {
  workloads::Workload w;
  w.metadata.name = name;
  w.metadata.labels = {{"app", name}};
  w.spec.replicas = replicas;
  w.spec.service_account = name;
  return w;
}

AgentPtr OpenAgent(const AgentConfig& config) {
  auto agent = Agent::Open(config);
  REQUIRE_MESSAGE(agent.ok(), (agent.ok() ? "" : agent.error().message));
  return std::move(*agent);
}

std::vector<uint32_t> AddressesOf(const Agent& agent, const std::string& name) {
  const StoredObject* stored = agent.Find(ObjectKey{Kind::kWorkload, "default", name});
  REQUIRE(stored != nullptr);
  return stored->addresses;
}

TEST_CASE("Agent: re-issues an SVID once past half of its lifetime, not before") {
  TempDir dir;
  AgentConfig config = ConfigIn(dir);
  config.svid_ttl = std::chrono::seconds(2);
  AgentPtr agent = OpenAgent(config);
  REQUIRE(agent->Apply({MakeWorkload("web", 2)}, false).ok());

  CertificateManager& certificates = agent->certificates();
  auto certificate = [&](const std::string& replica) {
    auto spiffe_id = agent->SpiffeIdOfReplica("default", replica);
    REQUIRE(spiffe_id.ok());
    return certificates.Certificate(*spiffe_id);
  };
  auto first = certificate("web-0");
  REQUIRE(first.ok());
  auto same = certificate("web-1");  // one certificate per identity
  REQUIRE(same.ok());
  CHECK((*same)->serial_hex == (*first)->serial_hex);
  CHECK(certificates.issued() == 1);
  CHECK(agent->SpiffeIdOfReplica("default", "web-2").error().code == ErrorCode::kNotFound);

  // Half of the configured lifetime before expiry is the rotation mark.
  const int64_t half = (*first)->not_after - 1;
  while (std::time(nullptr) < half) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto rotated = certificate("web-0");
  REQUIRE(rotated.ok());
  CHECK((*rotated)->serial_hex != (*first)->serial_hex);
  CHECK(certificates.issued() == 2);
}

TEST_CASE("Agent: an apply that runs out of addresses changes nothing") {
  TempDir dir;
  AgentConfig config = ConfigIn(dir);
  config.node_cidr = "127.71.0.0/29";  // 6 usable addresses
  AgentPtr agent = OpenAgent(config);
  REQUIRE(agent->Apply({MakeWorkload("a", 4)}, false).ok());
  const auto before = AddressesOf(*agent, "a");

  auto result = agent->Apply({MakeWorkload("a", 5), MakeWorkload("b", 3)}, false);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ErrorCode::kResourceExhausted);
  CHECK(result.error().message.find("127.71.0.0/29") != std::string::npos);
  CHECK(AddressesOf(*agent, "a") == before);
  CHECK(agent->Find(ObjectKey{Kind::kWorkload, "default", "b"}) == nullptr);
  // The rolled-back addresses are free again: two more replicas fit.
  CHECK(agent->Apply({MakeWorkload("b", 2)}, false).ok());
}

TEST_CASE(
    "Agent: scaling keeps surviving replicas' addresses and does not reuse freed ones at once") {
  TempDir dir;
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  REQUIRE(agent->Apply({MakeWorkload("web", 3)}, false).ok());
  const auto three = AddressesOf(*agent, "web");
  REQUIRE(agent->Apply({MakeWorkload("web", 1)}, false).ok());
  CHECK(AddressesOf(*agent, "web") == std::vector<uint32_t>{three[0]});
  REQUIRE(agent->Apply({MakeWorkload("web", 3)}, false).ok());
  const auto again = AddressesOf(*agent, "web");
  CHECK(again[0] == three[0]);
  CHECK(again[1] != three[1]);  // next-fit: freed addresses wait for the wrap
  CHECK(again[2] != three[2]);
}

TEST_CASE("Agent: state and addresses survive reopening the state dir") {
  TempDir dir;
  std::vector<uint32_t> before;
  {
    AgentPtr agent = OpenAgent(ConfigIn(dir));
    REQUIRE(agent->Apply({MakeWorkload("web", 2), MakeWorkload("db", 1)}, false).ok());
    before = AddressesOf(*agent, "web");
  }
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  CHECK(AddressesOf(*agent, "web") == before);
  CHECK(agent->workload_count() == 2);
  // Restored addresses are reserved: a new workload never gets one of them.
  REQUIRE(agent->Apply({MakeWorkload("new", 1)}, false).ok());
  const auto fresh = AddressesOf(*agent, "new");
  CHECK(std::find(before.begin(), before.end(), fresh[0]) == before.end());
}

TEST_CASE("Agent: each change takes the next revision, kept by what it wrote and by restarts") {
  TempDir dir;
  auto revision_of = [](const Agent& agent, const std::string& name) {
    const StoredObject* stored = agent.Find(ObjectKey{Kind::kWorkload, "default", name});
    REQUIRE(stored != nullptr);
    return stored->generation;
  };
  {
    AgentPtr agent = OpenAgent(ConfigIn(dir));
    CHECK(agent->revision() == 0);
    REQUIRE(agent->Apply({MakeWorkload("web", 2), MakeWorkload("db", 1)}, false).ok());
    CHECK(agent->revision() == 1);
    CHECK(revision_of(*agent, "web") == 1);
    CHECK(revision_of(*agent, "db") == 1);
    // Unchanged objects and dry runs take no revision.
    REQUIRE(agent->Apply({MakeWorkload("web", 2)}, false).ok());
    REQUIRE(agent->Apply({MakeWorkload("web", 5)}, /*dry_run=*/true).ok());
    CHECK(agent->revision() == 1);
    REQUIRE(agent->Apply({MakeWorkload("web", 3)}, false).ok());
    CHECK(agent->revision() == 2);
    CHECK(revision_of(*agent, "web") == 2);
    CHECK(revision_of(*agent, "db") == 1);
    std::vector<uint64_t> deleted;
    agent->AddWatcher([&](WatchEventType type, const StoredObject& object) {
      if (type == WatchEventType::kDeleted) deleted.push_back(object.generation);
    });
    REQUIRE(agent->Delete({ObjectKey{Kind::kWorkload, "default", "db"}}, false).ok());
    CHECK(agent->revision() == 3);
    CHECK(deleted == std::vector<uint64_t>{3});
    REQUIRE(agent->Apply({MakeWorkload("api", 1)}, false).ok());
    CHECK(agent->revision() == 4);
  }
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  CHECK(agent->revision() == 4);
  CHECK(revision_of(*agent, "web") == 2);
  REQUIRE(agent->Apply({MakeWorkload("web", 1)}, false).ok());
  CHECK(revision_of(*agent, "web") == 5);
}

TEST_CASE("Agent: status watchers hear of a replica's readiness change, with its workload") {
  TempDir dir;
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  REQUIRE(agent->Apply({MakeWorkload("web", 2)}, false).ok());
  const std::vector<uint32_t> addresses = AddressesOf(*agent, "web");
  std::vector<std::string> told;
  const uint64_t id = agent->AddStatusWatcher([&](const StoredObject& workload) {
    told.push_back(workloads::MetaOf(workload.object).name);
  });
  agent->SetReplicaReady(addresses[1], true);
  agent->SetReplicaReady(addresses[1], true);  // no change: nothing to tell
  agent->SetReplicaReady(addresses[1], false);
  CHECK(told == std::vector<std::string>{"web", "web"});
  agent->RemoveStatusWatcher(id);
  agent->SetReplicaReady(addresses[0], true);
  CHECK(told.size() == 2);
}

TEST_CASE("Agent: outbound credentials die with their workload") {
  TempDir dir;
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  REQUIRE(agent->Apply({MakeWorkload("web", 1)}, false).ok());
  auto ref = agent->FindReplicaByName("default", "web-0");
  REQUIRE(ref.ok());
  const ProxyCredentials creds = agent->CredentialsFor(*ref);
  CHECK(agent->Authenticate(creds.user, creds.password).has_value());
  CHECK_FALSE(agent->Authenticate(creds.user, creds.password + "x").has_value());
  CHECK_FALSE(agent->Authenticate("web-1.default", creds.password).has_value());

  REQUIRE(agent->Delete({ObjectKey{Kind::kWorkload, "default", "web"}}, false).ok());
  CHECK_FALSE(agent->Authenticate(creds.user, creds.password).has_value());
  REQUIRE(agent->Apply({MakeWorkload("web", 1)}, false).ok());
  // Same name again, new secret: the old credentials are not replayable.
  CHECK_FALSE(agent->Authenticate(creds.user, creds.password).has_value());
}

TEST_CASE("Agent: a dry run validates and allocates nothing") {
  TempDir dir;
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  auto result = agent->Apply({MakeWorkload("web", 2)}, /*dry_run=*/true);
  REQUIRE(result.ok());
  CHECK((*result)[0].action == "created");
  CHECK(agent->workload_count() == 0);
  CHECK(agent->replica_count() == 0);
}

TEST_CASE("Agent: mirrored cluster objects keep the cluster's VIP, persist, and leave on delete") {
  TempDir dir;
  workloads::Service service;
  service.metadata.name = "web";
  service.metadata.ns = "default";
  service.selector = {{"app", "web"}};
  const uint32_t vip = 0x7f800005;  // 127.128.0.5, chosen by the cluster
  {
    AgentPtr agent = OpenAgent(ConfigIn(dir));
    std::vector<WatchEventType> events;
    agent->AddWatcher([&](WatchEventType type, const StoredObject&) { events.push_back(type); });
    REQUIRE(agent->Mirror({{service, vip}}, {}).ok());
    REQUIRE(agent->Mirror({{service, vip}}, {}).ok());  // equal: no change, no event
    CHECK(events == std::vector<WatchEventType>{WatchEventType::kAdded});
    CHECK(agent->FindServiceByVip(vip) != nullptr);
    // The VIP is taken: a proposal for a new Service skips it.
    auto proposed = agent->ProposeVip({});
    REQUIRE(proposed.ok());
    CHECK(*proposed != vip);
    CHECK(agent->ProposeVip({*proposed}).value() != *proposed);
  }
  AgentPtr agent = OpenAgent(ConfigIn(dir));  // persisted for an etcd outage
  REQUIRE(agent->FindServiceByVip(vip) != nullptr);
  REQUIRE(agent->Mirror({}, {ObjectKey{Kind::kService, "default", "web"}}).ok());
  CHECK(agent->FindServiceByVip(vip) == nullptr);
  CHECK(agent->List(Kind::kService, "").empty());
}

TEST_CASE("Agent: counts each port's workloads and tells of the replicas a change took away") {
  TempDir dir;
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  std::vector<uint32_t> removed;
  size_t calls = 0;
  agent->OnReplicasRemoved([&](const std::vector<uint32_t>& addresses) {
    ++calls;
    removed.insert(removed.end(), addresses.begin(), addresses.end());
  });
  workloads::Workload web = MakeWorkload("web", 3);
  web.spec.ports = {{"http", 8080, workloads::Protocol::kHTTP}};
  workloads::Workload db = MakeWorkload("db", 1);
  db.spec.ports = {{"http", 8080, workloads::Protocol::kHTTP}, {"sql", 5432}};
  REQUIRE(agent->Apply({web, db}, false).ok());
  CHECK(agent->port_users() == std::map<uint16_t, size_t>{{5432, 1}, {8080, 2}});
  const auto three = AddressesOf(*agent, "web");
  const auto db_address = AddressesOf(*agent, "db");
  CHECK(removed.empty());

  const uint64_t changes = agent->port_set_changes();
  web.spec.replicas = 1;
  REQUIRE(agent->Apply({web}, false).ok());
  std::sort(removed.begin(), removed.end());
  CHECK(removed == std::vector<uint32_t>{three[1], three[2]});
  CHECK(calls == 1);  // one change, one call
  // Same ports, and another workload uses each: the set did not change.
  CHECK(agent->port_users() == std::map<uint16_t, size_t>{{5432, 1}, {8080, 2}});
  CHECK(agent->port_set_changes() == changes);

  removed.clear();
  REQUIRE(agent->Delete({ObjectKey{Kind::kWorkload, "default", "db"}}, false).ok());
  CHECK(removed == db_address);
  CHECK(agent->port_users() == std::map<uint16_t, size_t>{{8080, 1}});
  CHECK(agent->port_set_changes() > changes);

  // Reopened, the counts are rebuilt from the state.
  agent.reset();
  agent = OpenAgent(ConfigIn(dir));
  CHECK(agent->port_users() == std::map<uint16_t, size_t>{{8080, 1}});
}

TEST_CASE("Agent: Register refuses a workload that exists and then changes nothing") {
  TempDir dir;
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  REQUIRE(agent->Register({MakeWorkload("web", 1)}).ok());
  const auto before = AddressesOf(*agent, "web");

  Status again = agent->Register({MakeWorkload("new", 2), MakeWorkload("web", 1)});
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == ErrorCode::kAlreadyExists);
  CHECK(again.error().message.find("default/web") != std::string::npos);
  CHECK(agent->Find(ObjectKey{Kind::kWorkload, "default", "new"}) == nullptr);
  CHECK(AddressesOf(*agent, "web") == before);
  CHECK(agent->replica_count() == 1);
}

workloads::Service MakeService(const std::string& name) {
  workloads::Service service;
  service.metadata.name = name;
  service.selector = {{"app", name}};
  service.ports = {{"http", 80, {}, workloads::Protocol::kTCP}};
  return service;
}

TEST_CASE(
    "Agent: a change over --max-objects, --max-replicas or --max-apply-objects is refused "
    "before anything changes, naming the limit and the numbers") {
  TempDir dir;
  AgentConfig config = ConfigIn(dir);
  config.limits.max_objects = 3;
  config.limits.max_replicas = 5;
  config.limits.max_apply_objects = 2;
  AgentPtr agent = OpenAgent(config);
  REQUIRE(agent->Apply({MakeWorkload("a", 2), MakeWorkload("b", 2)}, false).ok());
  const auto a = AddressesOf(*agent, "a");
  const auto b = AddressesOf(*agent, "b");
  const uint64_t log_bytes = std::filesystem::file_size(dir.path() + "/state.log");
  auto unchanged = [&] {
    CHECK(agent->workload_count() == 2);
    CHECK(agent->replica_count() == 4);
    CHECK(AddressesOf(*agent, "a") == a);
    CHECK(AddressesOf(*agent, "b") == b);
    CHECK(agent->Find(ObjectKey{Kind::kWorkload, "default", "c"}) == nullptr);
    CHECK(std::filesystem::file_size(dir.path() + "/state.log") == log_bytes);
  };
  auto refused = [&](const Status& status, const std::vector<std::string>& words) {
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code == ErrorCode::kResourceExhausted);
    for (const std::string& word : words) {
      CHECK_MESSAGE(status.error().message.find(word) != std::string::npos, status.error().message,
                    " lacks ", word);
    }
  };
  auto apply = [&](std::vector<workloads::Object> objects, bool dry_run = false) -> Status {
    auto result = agent->Apply(std::move(objects), dry_run);
    if (!result) return result.error();
    return {};
  };

  // 4 + 2 replicas > 5, also as a dry run and through Register.
  refused(apply({MakeWorkload("c", 2)}), {"--max-replicas=5", "hold 6 ", "holds 4", "adds 2"});
  refused(apply({MakeWorkload("c", 2)}, /*dry_run=*/true), {"--max-replicas=5"});
  refused(agent->Register({MakeWorkload("c", 2)}), {"--max-replicas=5"});
  // Growing a workload counts only what it adds: 2 -> 4 replicas of "a" is 6.
  refused(apply({MakeWorkload("a", 4)}), {"--max-replicas=5", "adds 2"});
  refused(apply({MakeWorkload("a", 1), MakeWorkload("b", 1), MakeWorkload("c", 1)}),
          {"one apply of 3 objects", "--max-apply-objects=2"});
  unchanged();
  // Nothing was taken from the address pool: the next address is the one
  // after the last handed out.
  REQUIRE(apply({MakeService("s")}).ok());  // 3 objects, no replicas
  refused(apply({MakeWorkload("c", 0)}), {"--max-objects=3", "hold 4 ", "holds 3", "adds 1"});
  refused(agent->Register({MakeWorkload("c", 1)}), {"--max-objects=3"});
  CHECK(agent->Find(ObjectKey{Kind::kWorkload, "default", "c"}) == nullptr);
  REQUIRE(apply({MakeWorkload("a", 3)}).ok());  // 5 replicas: at the limit, not over
  CHECK(AddressesOf(*agent, "a")[2] == b[1] + 1);

  // A lowered limit refuses growth but never a change that adds nothing.
  agent.reset();
  config.limits.max_replicas = 2;
  config.limits.max_objects = 1;
  agent = OpenAgent(config);
  refused(apply({MakeWorkload("b", 3)}), {"--max-replicas=2", "hold 6 "});
  workloads::Workload relabeled = MakeWorkload("b", 2);
  relabeled.metadata.labels["tier"] = "web";
  CHECK(apply({relabeled}).ok());
  CHECK(apply({MakeWorkload("a", 1)}).ok());  // a scale-down, still over the limit after it
  CHECK(agent->replica_count() == 3);
  // 0 turns a limit off.
  agent.reset();
  config.limits = {0, 0, 0};
  agent = OpenAgent(config);
  CHECK(apply({MakeWorkload("c", 3), MakeWorkload("d", 3), MakeWorkload("e", 3)}).ok());
}

TEST_CASE("Agent: after updates, scale-downs and deletes the indexes match a reopened agent's") {
  TempDir dir;
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  workloads::Workload web = MakeWorkload("web", 4);
  web.spec.ports = {{"http", 8080, workloads::Protocol::kHTTP}};
  workloads::Workload db = MakeWorkload("db", 2);
  db.spec.ports = {{"sql", 5432}};
  REQUIRE(agent->Apply({web, db, MakeService("web")}, false).ok());
  web.spec.replicas = 2;
  web.spec.ports = {{"http", 8081, workloads::Protocol::kHTTP}};
  db.spec.replicas = 3;
  REQUIRE(agent->Apply({web, db, MakeWorkload("new", 1), MakeService("db")}, false).ok());
  REQUIRE(agent->Delete({ObjectKey{Kind::kService, "default", "web"}}, false).ok());

  auto snapshot = [](const Agent& agent) {
    std::map<std::string, std::string> out;  // what each address resolves to
    for (const StoredObject* stored : agent.List(Kind::kWorkload, "")) {
      for (uint32_t address : stored->addresses) {
        std::optional<ReplicaRef> ref = agent.FindReplica(address);
        REQUIRE(ref.has_value());
        REQUIRE(ref->workload == stored);
        out[workloads::FormatIpv4(address)] =
            workloads::MetaOf(stored->object).name + "-" + std::to_string(ref->ordinal);
      }
    }
    for (const StoredObject* stored : agent.List(Kind::kService, "")) {
      REQUIRE(agent.FindServiceByVip(stored->addresses.at(0)) == stored);
      out[workloads::FormatIpv4(stored->addresses[0])] = workloads::MetaOf(stored->object).name;
    }
    return out;
  };
  const auto before = snapshot(*agent);
  CHECK(before.size() == 2 + 3 + 1 + 1);
  CHECK(agent->replica_count() == 6);
  CHECK(agent->port_users() == std::map<uint16_t, size_t>{{5432, 1}, {8081, 1}});
  agent.reset();
  agent = OpenAgent(ConfigIn(dir));
  CHECK(snapshot(*agent) == before);
  CHECK(agent->replica_count() == 6);
  CHECK(agent->port_users() == std::map<uint16_t, size_t>{{5432, 1}, {8081, 1}});
}

TEST_CASE("Agent: one commit that adds an object and deletes the one after it keeps both right") {
  // The store stages a new entry's place before the write; the entry after
  // it may be one this same commit deletes.
  TempDir dir;
  workloads::Service b = MakeService("b");
  workloads::Service c = MakeService("c");
  {
    AgentPtr agent = OpenAgent(ConfigIn(dir));
    REQUIRE(agent->Mirror({{c, 0x7f800007}}, {}).ok());
    REQUIRE(agent->Mirror({{b, 0x7f800006}}, {ObjectKey{Kind::kService, "default", "c"}}).ok());
    CHECK(agent->FindServiceByVip(0x7f800006) != nullptr);
    CHECK(agent->FindServiceByVip(0x7f800007) == nullptr);
    REQUIRE(agent->List(Kind::kService, "").size() == 1);
  }
  AgentPtr agent = OpenAgent(ConfigIn(dir));
  const auto services = agent->List(Kind::kService, "");
  REQUIRE(services.size() == 1);
  CHECK(workloads::MetaOf(services[0]->object).name == "b");
}

}  // namespace
}  // namespace podless::runtime
