#include "runtime/cluster/cluster_view.h"

#include <doctest.h>

#include "tests/runtime/cluster_test_records.h"

namespace podless::runtime {
namespace {

using testing::MakeRecord;
using testing::MakeWorkload;

TEST_CASE("ClusterView: other nodes' replicas by address and selector; its own are skipped") {
  ClusterKeys keys{"/p/"};
  ClusterView view(keys, "n1");
  REQUIRE(view.Put(keys.Node("n2"),
                   EncodeNodeRecord({"n2", "10.0.0.2", 15008, "10.2.0.0/24", "x", 1})));
  REQUIRE(view.Put(keys.Workload("n2", {workloads::Kind::kWorkload, "shop", "web"}),
                   EncodeWorkloadRecord(MakeRecord("n2", "web", 0x0a020001, 2))));
  REQUIRE(view.Put(keys.Workload("n1", {workloads::Kind::kWorkload, "shop", "mine"}),
                   EncodeWorkloadRecord(MakeRecord("n1", "mine", 0x0a010001, 1))));
  CHECK(view.nodes().size() == 1);
  CHECK(view.workloads().size() == 1);
  CHECK(view.FindReplica(0x0a010001) == nullptr);  // this node's own: the agent's business
  const RemoteReplica* replica = view.FindReplica(0x0a020002);
  REQUIRE(replica != nullptr);
  CHECK(replica->ordinal == 1);
  CHECK(replica->workload->record.node == "n2");
  CHECK(view.Select("shop", {{"app", "web"}}).size() == 1);
  CHECK(view.Select("other", {{"app", "web"}}).empty());
  CHECK(view.Select("shop", {}).empty());
  CHECK(view.WorkloadCountOf("n2") == 1);

  // Scaled down: the gone replica's address leaves the index.
  REQUIRE(view.Put(keys.Workload("n2", {workloads::Kind::kWorkload, "shop", "web"}),
                   EncodeWorkloadRecord(MakeRecord("n2", "web", 0x0a020001, 1))));
  CHECK(view.FindReplica(0x0a020002) == nullptr);
  CHECK(view.FindReplica(0x0a020001) != nullptr);

  // A damaged record is an error naming the key and changes nothing.
  auto bad = view.Put(keys.Workload("n2", {workloads::Kind::kWorkload, "shop", "web"}), "junk");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("/p/workloads/n2/shop/web") != std::string::npos);
  CHECK(view.FindReplica(0x0a020001) != nullptr);

  view.Delete(keys.Workload("n2", {workloads::Kind::kWorkload, "shop", "web"}));
  CHECK(view.FindReplica(0x0a020001) == nullptr);
  view.Delete(keys.Node("n2"));
  CHECK(view.nodes().empty());
}

}  // namespace
}  // namespace podless::runtime
