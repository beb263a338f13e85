#include "runtime/state/replica_index.h"

#include <doctest.h>

#include <numeric>

namespace podless::runtime {
namespace {

StoredObject WithAddresses(std::vector<uint32_t> addresses) {
  StoredObject object;
  object.addresses = std::move(addresses);
  return object;
}

std::vector<uint32_t> Consecutive(uint32_t first, uint32_t count) {
  std::vector<uint32_t> out(count);
  std::iota(out.begin(), out.end(), first);
  return out;
}

// Every address of `object` resolves to it and its ordinal.
void CheckIndexed(const ReplicaIndex& index, const StoredObject& object) {
  for (uint32_t i = 0; i < object.addresses.size(); ++i) {
    auto ref = index.Find(object.addresses[i]);
    REQUIRE(ref.has_value());
    CHECK(ref->workload == &object);
    CHECK(ref->ordinal == i);
  }
}

TEST_CASE("ReplicaIndex: a million consecutive replicas are one run, found by address") {
  ReplicaIndex index;
  StoredObject big = WithAddresses(Consecutive(100, 1000000));
  index.Insert(&big);
  CHECK(index.size() == 1000000);
  CHECK(index.runs() == 1);
  CHECK_FALSE(index.Find(99).has_value());
  CHECK_FALSE(index.Find(100 + 1000000).has_value());
  auto ref = index.Find(100 + 123456);
  REQUIRE(ref.has_value());
  CHECK(ref->workload == &big);
  CHECK(ref->ordinal == 123456);
}

TEST_CASE("ReplicaIndex: holes in the addresses split runs; every replica keeps its ordinal") {
  ReplicaIndex index;
  StoredObject a = WithAddresses({10, 11, 12, 20, 21, 5, 30});
  StoredObject b = WithAddresses({13, 14, 22});
  index.Insert(&a);
  index.Insert(&b);
  CHECK(index.size() == 10);
  CHECK(index.runs() == 6);  // a: [10-12] [20-21] [5] [30]; b: [13-14] [22]
  CheckIndexed(index, a);
  CheckIndexed(index, b);
  CHECK_FALSE(index.Find(15).has_value());
  CHECK_FALSE(index.Find(23).has_value());
}

TEST_CASE("ReplicaIndex: scaling down shortens a run in place and drops the later ones") {
  ReplicaIndex index;
  StoredObject a = WithAddresses({10, 11, 12, 20, 21, 22});
  index.Insert(&a);
  index.Remove(a.addresses, 2);  // keeps ordinals 0 and 1
  CHECK(index.size() == 2);
  CHECK(index.runs() == 1);
  CHECK_FALSE(index.Find(12).has_value());
  CHECK_FALSE(index.Find(20).has_value());
  a.addresses.resize(2);
  CheckIndexed(index, a);

  // Up again: the new replicas' runs come in; the kept ones stay.
  a.addresses = {10, 11, 40, 41, 42};
  ReplicaIndex::Staged staged = ReplicaIndex::Stage(a.addresses, 2);
  CHECK(staged.size() == 1);
  index.Add(&a, staged);
  CHECK(index.size() == 5);
  CheckIndexed(index, a);

  index.Remove(a.addresses, 0);  // deleted
  CHECK(index.size() == 0);
  CHECK(index.runs() == 0);
  CHECK_FALSE(index.Find(10).has_value());
  CHECK_FALSE(index.Find(41).has_value());
}

TEST_CASE("ReplicaIndex: removing one workload leaves its neighbours' runs alone") {
  ReplicaIndex index;
  StoredObject a = WithAddresses(Consecutive(1, 5));
  StoredObject b = WithAddresses(Consecutive(6, 5));
  StoredObject c = WithAddresses(Consecutive(11, 5));
  index.Insert(&a);
  index.Insert(&b);
  index.Insert(&c);
  index.Remove(b.addresses, 0);
  CHECK(index.size() == 10);
  CheckIndexed(index, a);
  CheckIndexed(index, c);
  for (uint32_t address : b.addresses) CHECK_FALSE(index.Find(address).has_value());
}

}  // namespace
}  // namespace podless::runtime
