#include "workloads/ipam.h"

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

using namespace podless::workloads;
using podless::ErrorCode;

namespace {

uint32_t Ip(const char* text) {
  auto addr = ParseIpv4(text);
  REQUIRE(addr.ok());
  return *addr;
}

Cidr MustCidr(const char* text) {
  auto cidr = Cidr::Parse(text);
  REQUIRE(cidr.ok());
  return *cidr;
}

}  // namespace

TEST_CASE("ParseIpv4: strict dotted quads only") {
  CHECK(*ParseIpv4("127.64.0.1") == 0x7f400001u);
  CHECK(*ParseIpv4("0.0.0.0") == 0u);
  CHECK(*ParseIpv4("255.255.255.255") == 0xffffffffu);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.04", "01.2.3.4", " 1.2.3.4",
                          "1.2.3.4 ", "1..3.4", "a.b.c.d", "1.2.3.4/8", "1000.2.3.4", "1.2.3.-4"}) {
    CAPTURE(bad);
    auto addr = ParseIpv4(bad);
    REQUIRE_FALSE(addr.ok());
    CHECK(addr.error().code == ErrorCode::kInvalidArgument);
    CHECK(addr.error().message.find("invalid IPv4 address") != std::string::npos);
  }
  CHECK(FormatIpv4(0x7f400001u) == "127.64.0.1");
  CHECK(FormatIpv4(*ParseIpv4("10.20.30.40")) == "10.20.30.40");
}

TEST_CASE("Cidr: parses aligned CIDRs and explains unaligned ones") {
  Cidr cidr = MustCidr("127.64.0.0/10");
  CHECK(cidr.base == Ip("127.64.0.0"));
  CHECK(cidr.prefix == 10);
  CHECK(cidr.Size() == 4194304u);
  CHECK(cidr.ToString() == "127.64.0.0/10");
  CHECK(cidr.Contains(Ip("127.64.0.0")));
  CHECK(cidr.Contains(Ip("127.127.255.255")));
  CHECK_FALSE(cidr.Contains(Ip("127.128.0.0")));
  CHECK_FALSE(cidr.Contains(Ip("127.63.255.255")));

  Cidr all = MustCidr("0.0.0.0/0");
  CHECK(all.Size() == (uint64_t{1} << 32));
  CHECK(all.Contains(Ip("200.1.2.3")));
  Cidr one = MustCidr("10.0.0.7/32");
  CHECK(one.Size() == 1);
  CHECK(one.Contains(Ip("10.0.0.7")));
  CHECK_FALSE(one.Contains(Ip("10.0.0.6")));

  auto unaligned = Cidr::Parse("127.64.0.1/10");
  REQUIRE_FALSE(unaligned.ok());
  CHECK(unaligned.error().message.find("did you mean 127.64.0.0/10?") != std::string::npos);
  for (const char* bad : {"127.64.0.0", "127.64.0.0/", "127.64.0.0/33", "127.64.0.0/x",
                          "127.64.0.0/010", "127.64.0/10", "/10"}) {
    CAPTURE(bad);
    CHECK_FALSE(Cidr::Parse(bad).ok());
  }
}

TEST_CASE("AddressPool: never hands out an address twice, nor network or broadcast") {
  AddressPool pool(MustCidr("10.1.0.0/22"));
  CHECK(pool.capacity() == 1022);
  std::set<uint32_t> seen;
  for (int i = 0; i < 1022; ++i) {
    auto addr = pool.Allocate();
    REQUIRE(addr.ok());
    CHECK(seen.insert(*addr).second);
    CHECK(pool.IsAllocated(*addr));
  }
  CHECK(seen.count(Ip("10.1.0.0")) == 0);
  CHECK(seen.count(Ip("10.1.3.255")) == 0);
  CHECK(*seen.begin() == Ip("10.1.0.1"));
  CHECK(*seen.rbegin() == Ip("10.1.3.254"));
  CHECK(pool.allocated() == 1022);
  CHECK_FALSE(pool.IsAllocated(Ip("10.1.0.0")));
}

TEST_CASE("AddressPool: exhaustion is RESOURCE_EXHAUSTED naming the CIDR and the count") {
  AddressPool small(MustCidr("10.0.0.0/30"));
  CHECK(small.Allocate().ok());
  CHECK(small.Allocate().ok());
  auto none = small.Allocate();
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == ErrorCode::kResourceExhausted);
  CHECK(none.error().message == "no free address in 10.0.0.0/30 (2 in use)");

  // The whole default /10, every address once.
  AddressPool pool(MustCidr("127.64.0.0/10"));
  REQUIRE(pool.capacity() == 4194302);
  std::vector<bool> seen(pool.cidr().Size());
  uint32_t base = pool.cidr().base;
  // Plain checks in the hot loops: four million doctest assertions would
  // dominate the run time.
  uint64_t failures = 0;
  uint64_t duplicates = 0;
  for (uint64_t i = 0; i < pool.capacity(); ++i) {
    auto addr = pool.Allocate();
    if (!addr.ok()) {
      ++failures;
      continue;
    }
    uint32_t offset = *addr - base;
    if (seen[offset]) ++duplicates;
    seen[offset] = true;
  }
  CHECK(failures == 0);
  CHECK(duplicates == 0);
  CHECK_FALSE(seen[0]);
  CHECK_FALSE(seen[pool.cidr().Size() - 1]);
  auto exhausted = pool.Allocate();
  REQUIRE_FALSE(exhausted.ok());
  CHECK(exhausted.error().message == "no free address in 127.64.0.0/10 (4194302 in use)");

  // One address freed deep inside a full range is found.
  pool.Release(Ip("127.100.20.30"));
  auto again = pool.Allocate();
  REQUIRE(again.ok());
  CHECK(*again == Ip("127.100.20.30"));
}

TEST_CASE("AddressPool: next-fit reuses a released address only after wrapping around") {
  AddressPool pool(MustCidr("10.0.0.0/29"));  // usable .1 to .6
  CHECK(*pool.Allocate() == Ip("10.0.0.1"));
  CHECK(*pool.Allocate() == Ip("10.0.0.2"));
  CHECK(*pool.Allocate() == Ip("10.0.0.3"));
  pool.Release(Ip("10.0.0.2"));
  CHECK_FALSE(pool.IsAllocated(Ip("10.0.0.2")));
  CHECK(*pool.Allocate() == Ip("10.0.0.4"));
  CHECK(*pool.Allocate() == Ip("10.0.0.5"));
  pool.Release(Ip("10.0.0.1"));
  CHECK(*pool.Allocate() == Ip("10.0.0.6"));
  // The cursor wraps: the older hole (.1) comes before the newer one (.2).
  CHECK(*pool.Allocate() == Ip("10.0.0.1"));
  CHECK(*pool.Allocate() == Ip("10.0.0.2"));
  CHECK_FALSE(pool.Allocate().ok());
}

TEST_CASE("AddressPool: the cursor restores the reuse order after a restart") {
  AddressPool before(MustCidr("10.0.0.0/24"));
  std::vector<uint32_t> live;
  for (int i = 0; i < 10; ++i) live.push_back(*before.Allocate());
  before.Release(live[2]);
  live.erase(live.begin() + 2);

  AddressPool after(MustCidr("10.0.0.0/24"));
  for (uint32_t addr : live) REQUIRE(after.Reserve(addr).ok());
  after.set_cursor(before.cursor());
  CHECK(after.allocated() == before.allocated());
  for (int i = 0; i < 300; ++i) {
    auto a = before.Allocate();
    auto b = after.Allocate();
    REQUIRE(a.ok() == b.ok());
    if (a.ok()) CHECK(*a == *b);
  }
  // A cursor outside the range starts over at the first usable address.
  AddressPool fresh(MustCidr("10.0.0.0/24"));
  fresh.set_cursor(Ip("192.168.0.1"));
  CHECK(*fresh.Allocate() == Ip("10.0.0.1"));
}

TEST_CASE("AddressPool: Reserve rejects out-of-range, special and taken addresses") {
  AddressPool pool(MustCidr("10.0.0.0/24"));
  auto outside = pool.Reserve(Ip("10.0.1.1"));
  REQUIRE_FALSE(outside.ok());
  CHECK(outside.error().code == ErrorCode::kInvalidArgument);
  CHECK(outside.error().message == "address 10.0.1.1 is not in 10.0.0.0/24");
  auto network = pool.Reserve(Ip("10.0.0.0"));
  REQUIRE_FALSE(network.ok());
  CHECK(network.error().message.find("network address") != std::string::npos);
  auto broadcast = pool.Reserve(Ip("10.0.0.255"));
  REQUIRE_FALSE(broadcast.ok());
  CHECK(broadcast.error().message.find("broadcast address") != std::string::npos);

  REQUIRE(pool.Reserve(Ip("10.0.0.1")).ok());
  REQUIRE(pool.Reserve(Ip("10.0.0.3")).ok());
  auto taken = pool.Reserve(Ip("10.0.0.3"));
  REQUIRE_FALSE(taken.ok());
  CHECK(taken.error().code == ErrorCode::kAlreadyExists);
  CHECK(taken.error().message == "address 10.0.0.3 is already allocated");
  // Allocation steps around reserved addresses.
  CHECK(*pool.Allocate() == Ip("10.0.0.2"));
  CHECK(*pool.Allocate() == Ip("10.0.0.4"));
  CHECK(pool.allocated() == 4);
  // Releasing something not allocated changes nothing.
  pool.Release(Ip("10.0.0.200"));
  pool.Release(Ip("10.0.0.0"));
  pool.Release(Ip("192.168.0.1"));
  CHECK(pool.allocated() == 4);
}

TEST_CASE("AddressPool: /31 and /32 use every address") {
  AddressPool pair(MustCidr("10.0.0.0/31"));
  CHECK(pair.capacity() == 2);
  CHECK(*pair.Allocate() == Ip("10.0.0.0"));
  CHECK(*pair.Allocate() == Ip("10.0.0.1"));
  CHECK_FALSE(pair.Allocate().ok());
  AddressPool single(MustCidr("10.0.0.9/32"));
  CHECK(single.capacity() == 1);
  CHECK(*single.Allocate() == Ip("10.0.0.9"));
  CHECK_FALSE(single.Allocate().ok());
  single.Release(Ip("10.0.0.9"));
  CHECK(*single.Allocate() == Ip("10.0.0.9"));
}

TEST_CASE("AddressPool: a /10 with a million allocations and churn stays consistent") {
  AddressPool pool(MustCidr("127.64.0.0/10"));
  constexpr uint32_t kCount = 1000000;
  std::vector<uint32_t> addrs;
  addrs.reserve(kCount);
  for (uint32_t i = 0; i < kCount; ++i) {
    auto addr = pool.Allocate();
    if (!addr.ok()) break;
    addrs.push_back(*addr);
  }
  REQUIRE(addrs.size() == kCount);
  CHECK(pool.allocated() == kCount);
  CHECK(addrs.front() == Ip("127.64.0.1"));
  CHECK(addrs.back() == Ip("127.64.0.0") + kCount);
  // Release every other address; new ones continue after the cursor.
  for (uint32_t i = 0; i < kCount; i += 2) pool.Release(addrs[i]);
  CHECK(pool.allocated() == kCount / 2);
  auto next = pool.Allocate();
  REQUIRE(next.ok());
  CHECK(*next == Ip("127.64.0.0") + kCount + 1);
  uint32_t still_allocated = 0;
  for (uint32_t i = 1; i < kCount; i += 2) still_allocated += pool.IsAllocated(addrs[i]) ? 1 : 0;
  CHECK(still_allocated == kCount / 2);
  CHECK_FALSE(pool.IsAllocated(addrs[0]));
}
