#include "runtime/cluster/cluster_records.h"

#include <doctest.h>

#include "tests/runtime/cluster_test_records.h"

#include "workloads/object_codec.h"

namespace podless::runtime {
namespace {

using testing::MakeRecord;
using testing::MakeWorkload;

TEST_CASE("ClusterRecords: node, workload and object records round-trip") {
  NodeRecord node{"n1", "10.0.0.1", 15008, "10.1.0.0/24", "abc", 1700000000};
  auto decoded_node = DecodeNodeRecord(EncodeNodeRecord(node));
  REQUIRE(decoded_node.ok());
  CHECK(*decoded_node == node);

  WorkloadRecord workload = MakeRecord("n1", "web", 0x0a010001, 3);
  workload.addresses.push_back(0x0a010100);  // a second run
  workload.not_ready = {1};
  auto decoded_workload = DecodeWorkloadRecord(EncodeWorkloadRecord(workload));
  REQUIRE(decoded_workload.ok());
  CHECK(*decoded_workload == workload);

  workloads::Service service;
  service.metadata.name = "web";
  service.metadata.ns = "shop";
  service.selector = {{"app", "web"}};
  auto decoded_object = DecodeClusterObjectRecord(EncodeClusterObjectRecord({service, 0x7f800001}));
  REQUIRE(decoded_object.ok());
  CHECK(decoded_object->vip == 0x7f800001);
  CHECK(std::get<workloads::Service>(decoded_object->object) == service);
}

TEST_CASE("ClusterRecords: a million consecutive replica addresses encode in a few bytes") {
  WorkloadRecord record = MakeRecord("n1", "big", 0x0a000000, 1'000'000);
  const std::string bytes = EncodeWorkloadRecord(record);
  CHECK(bytes.size() < 256);
  auto decoded = DecodeWorkloadRecord(bytes);
  REQUIRE(decoded.ok());
  CHECK(decoded->addresses.size() == 1'000'000);
  CHECK(decoded->addresses.back() == 0x0a000000 + 999'999);
}

TEST_CASE("ClusterRecords: damaged records are errors, never crashes") {
  const std::string good = EncodeWorkloadRecord(MakeRecord("n1", "web", 0x0a010001, 2));
  for (size_t cut = 0; cut < good.size(); ++cut) {
    CHECK_FALSE(DecodeWorkloadRecord(good.substr(0, cut)).ok());
  }
  CHECK_FALSE(DecodeWorkloadRecord(good + "x").ok());
  std::string wrong_version = good;
  wrong_version[0] = 9;
  auto error = DecodeWorkloadRecord(wrong_version);
  REQUIRE_FALSE(error.ok());
  CHECK(error.error().message.find("version") != std::string::npos);
  // A run that would expand past the address space or the replica bound.
  std::string huge;
  workloads::ByteWriter out(&huge);
  out.PutByte(1);
  out.PutString("n1");
  out.PutString(workloads::EncodeObject(MakeWorkload("web", 1)));
  out.PutVarint(1);
  out.PutFixed32(0xfffffff0);
  out.PutVarint(uint64_t{1} << 40);
  out.PutVarint(0);
  CHECK_FALSE(DecodeWorkloadRecord(huge).ok());
  // A Workload where a cluster object belongs.
  CHECK_FALSE(DecodeClusterObjectRecord(EncodeClusterObjectRecord({MakeWorkload("w", 1), 0})).ok());
}

TEST_CASE("ClusterKeys: the layout under the prefix") {
  ClusterKeys keys{"/podless/"};
  CHECK(keys.Node("n1") == "/podless/nodes/n1");
  CHECK(keys.Workload("n1", {workloads::Kind::kWorkload, "shop", "web"}) ==
        "/podless/workloads/n1/shop/web");
  CHECK(keys.Object({workloads::Kind::kService, "shop", "web"}) ==
        "/podless/objects/Service/shop/web");
  CHECK(keys.Vip(0x7f800001) == "/podless/vips/127.128.0.1");
  CHECK(keys.Cidr("10.1.2.0/24") == "/podless/cidrs/10.1.2.0_24");
}

}  // namespace
}  // namespace podless::runtime
