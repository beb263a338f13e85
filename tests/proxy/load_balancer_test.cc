#include "proxy/load_balancer.h"

#include <doctest.h>

#include <deque>
#include <vector>

namespace podless::proxy {
namespace {

// Returns the queued values in order (each must be < bound).
struct ScriptedRandom {
  explicit ScriptedRandom(std::initializer_list<uint64_t> v) : values(v) {}
  std::deque<uint64_t> values;
  std::vector<uint64_t> bounds;  // what the balancer asked for
  LoadBalancer::Random Fn() {
    return [this](uint64_t bound) {
      bounds.push_back(bound);
      REQUIRE(!values.empty());
      uint64_t v = values.front();
      values.pop_front();
      REQUIRE(v < bound);
      return v;
    };
  }
};

TEST_CASE("LoadBalancer: of two random choices the one with fewer connections wins") {
  ScriptedRandom random({0, 1});
  LoadBalancer lb(random.Fn());
  std::vector<LbEndpoint> endpoints{{true, 10}, {true, 9}, {true, 0}};
  // Ranks 0 and (1 shifted past 0 =) 2: endpoint 2 has fewer connections.
  Result<size_t> pick = lb.Pick(endpoints);
  REQUIRE(pick.ok());
  CHECK(*pick == 2);
  CHECK(random.bounds == std::vector<uint64_t>{3, 2});
}

TEST_CASE("LoadBalancer: the two choices are always distinct endpoints") {
  ScriptedRandom random({1, 1});
  LoadBalancer lb(random.Fn());
  std::vector<LbEndpoint> endpoints{{true, 5}, {true, 7}, {true, 3}};
  // First rank 1; second drawn 1 from the remaining two, shifted to 2.
  Result<size_t> pick = lb.Pick(endpoints);
  REQUIRE(pick.ok());
  CHECK(*pick == 2);
}

TEST_CASE("LoadBalancer: ties go to the first choice") {
  ScriptedRandom random({1, 0});
  LoadBalancer lb(random.Fn());
  std::vector<LbEndpoint> endpoints{{true, 4}, {true, 4}};
  CHECK(*lb.Pick(endpoints) == 1);
}

TEST_CASE("LoadBalancer: skips endpoints that are not ready") {
  ScriptedRandom random({0, 0});
  LoadBalancer lb(random.Fn());
  // Ready are 1 and 3 (ranks 0 and 1); the busy-but-idle not-ready ones never win.
  std::vector<LbEndpoint> endpoints{{false, 0}, {true, 8}, {false, 0}, {true, 2}};
  Result<size_t> pick = lb.Pick(endpoints);
  REQUIRE(pick.ok());
  CHECK(*pick == 3);

  std::vector<LbEndpoint> one_ready{{false, 0}, {true, 100}, {false, 0}};
  LoadBalancer no_random([](uint64_t) -> uint64_t {
    FAIL("no randomness needed for a single ready endpoint");
    return 0;
  });
  CHECK(*no_random.Pick(one_ready) == 1);
}

TEST_CASE("LoadBalancer: no ready endpoint is an UNAVAILABLE error") {
  LoadBalancer lb;
  std::vector<LbEndpoint> none_ready{{false, 0}, {false, 0}};
  Result<size_t> pick = lb.Pick(none_ready);
  REQUIRE_FALSE(pick.ok());
  CHECK(pick.error().code == ErrorCode::kUnavailable);
  CHECK(pick.error().message == "no ready endpoint (2 endpoints, none ready)");
  Result<size_t> empty = lb.Pick(std::span<const LbEndpoint>());
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message == "no endpoints");
}

TEST_CASE("LoadBalancer: with real randomness, load evens out across endpoints") {
  LoadBalancer lb;
  std::vector<LbEndpoint> endpoints(4);
  endpoints[2].ready = false;
  for (int i = 0; i < 3000; ++i) {
    Result<size_t> pick = lb.Pick(endpoints);
    REQUIRE(pick.ok());
    ++endpoints[*pick].active_connections;
  }
  CHECK(endpoints[2].active_connections == 0);
  // Power of two choices keeps the spread tiny (each pick raises a minimum).
  for (size_t i : {0, 1, 3}) {
    CHECK(endpoints[i].active_connections >= 990);
    CHECK(endpoints[i].active_connections <= 1010);
  }
}

TEST_CASE("LoadBalancer: the accessor form picks over the caller's own endpoint type") {
  struct Replica {
    bool healthy;
    uint64_t streams;
  };
  std::vector<Replica> replicas{{true, 3}, {true, 1}};
  ScriptedRandom random({0, 0});
  LoadBalancer lb(random.Fn());
  Result<size_t> pick = lb.Pick(
      replicas.size(), [&](size_t i) { return replicas[i].healthy; },
      [&](size_t i) { return replicas[i].streams; });
  REQUIRE(pick.ok());
  CHECK(*pick == 1);
}

}  // namespace
}  // namespace podless::proxy
