#include "runtime/identity/svid_cache.h"

#include <doctest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "runtime/state/agent.h"
#include "tests/testing/temp_dir.h"

namespace podless::runtime {
namespace {

workloads::SvidPtr FakeSvid(const std::string& serial) {
  auto svid = std::make_shared<workloads::Svid>();
  svid->serial_hex = serial;
  return svid;
}

TEST_CASE("SvidCache: evicts the least recently used beyond its capacity") {
  SvidCache cache(2);
  cache.Put("spiffe://td/a", FakeSvid("a"));
  cache.Put("spiffe://td/b", FakeSvid("b"));
  REQUIRE(cache.Use("spiffe://td/a") != nullptr);  // a is now the most recent
  cache.Put("spiffe://td/c", FakeSvid("c"));

  CHECK(cache.size() == 2);
  CHECK(cache.evictions() == 1);
  CHECK(cache.Peek("spiffe://td/b") == nullptr);
  CHECK(cache.Peek("spiffe://td/a")->serial_hex == "a");
  CHECK(cache.Peek("spiffe://td/c")->serial_hex == "c");
}

TEST_CASE("SvidCache: Peek does not refresh, Put of a known ID replaces it in place") {
  SvidCache cache(2);
  cache.Put("x", FakeSvid("x1"));
  cache.Put("y", FakeSvid("y1"));
  CHECK(cache.Peek("x") != nullptr);  // x stays the least recently used
  cache.Put("y", FakeSvid("y2"));     // a rotation, not a new entry
  CHECK(cache.size() == 2);
  CHECK(cache.evictions() == 0);
  cache.Put("z", FakeSvid("z1"));
  CHECK(cache.Peek("x") == nullptr);
  CHECK(cache.Peek("y")->serial_hex == "y2");
  // Most recently used first.
  auto it = cache.begin();
  CHECK(it->first == "z");
  CHECK((++it)->first == "y");
}

TEST_CASE("SvidCache: an evicted SVID stays valid for whoever still holds it") {
  SvidCache cache(1);
  cache.Put("a", FakeSvid("a"));
  workloads::SvidPtr held = cache.Use("a");
  cache.Put("b", FakeSvid("b"));
  CHECK(cache.Peek("a") == nullptr);
  CHECK(held->serial_hex == "a");
}

TEST_CASE("Agent: holds at most --svid-cache-size SVIDs and re-issues an evicted one on use") {
  const testing::TempDir temp_dir("podless-svid-cache-test");
  const std::string& dir = temp_dir.path();
  {
    AgentConfig config;
    config.state_dir = dir;
    config.node_name = "test";
    config.svid_cache_size = 3;
    auto agent = Agent::Open(config);
    REQUIRE(agent.ok());
    std::vector<workloads::Object> objects;
    for (int i = 0; i < 5; ++i) {
      workloads::Workload w;
      w.metadata.name = "w" + std::to_string(i);
      w.spec.replicas = 1;
      w.spec.service_account = w.metadata.name;  // one identity each
      objects.push_back(w);
    }
    REQUIRE((*agent)->Apply(objects, false).ok());

    CertificateManager& certificates = (*agent)->certificates();
    auto certificate = [&](const std::string& replica) {
      auto spiffe_id = (*agent)->SpiffeIdOfReplica("default", replica);
      REQUIRE(spiffe_id.ok());
      return certificates.Certificate(*spiffe_id);
    };
    std::string first_serial;
    for (int i = 0; i < 5; ++i) {
      auto svid = certificate("w" + std::to_string(i) + "-0");
      REQUIRE(svid.ok());
      if (i == 0) first_serial = (*svid)->serial_hex;
    }
    CHECK(certificates.cached() == 3);
    CHECK(certificates.evicted() == 2);
    CHECK(certificates.issued() == 5);

    // w4 is cached: served without issuing. w0 was evicted: a fresh SVID.
    REQUIRE(certificate("w4-0").ok());
    CHECK(certificates.issued() == 5);
    auto again = certificate("w0-0");
    REQUIRE(again.ok());
    CHECK((*again)->serial_hex != first_serial);
    CHECK(certificates.issued() == 6);
    CHECK(certificates.cached() == 3);
  }
}

}  // namespace
}  // namespace podless::runtime
