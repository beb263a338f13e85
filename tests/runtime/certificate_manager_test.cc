#include "runtime/identity/certificate_manager.h"

#include <doctest.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <set>
#include <string>

#include "proxy/base/uv_handle.h"
#include "runtime/identity/certificate_issuer.h"
#include "tests/testing/run_loop.h"

namespace podless::runtime {
namespace {

using podless::testing::RunUntil;  // 10 s at most

constexpr std::chrono::seconds kTtl = std::chrono::hours(1);
const std::string kWeb = "spiffe://cluster.local/ns/shop/sa/web";
const std::string kDb = "spiffe://cluster.local/ns/shop/sa/db";

workloads::CertificateAuthorityPtr MakeCa() {
  auto ca = workloads::CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  return std::move(*ca);
}

// A clock the test moves by hand; starts at the real time, as the CA's
// not_before/not_after do.
struct FakeClock {
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  CertificateManager::Clock Get() {
    return [this] { return now; };
  }
};

TEST_CASE("CertificateManager: issues an identity's SVID once and serves it from its cache") {
  auto ca = MakeCa();
  CertificateManager manager(*ca, kTtl, 10);
  int told = 0;
  manager.OnIssued([&] { ++told; });
  CHECK(manager.Cached(kWeb) == nullptr);

  auto first = manager.Certificate(kWeb);
  REQUIRE(first.ok());
  CHECK((*first)->id.ToString() == kWeb);
  CHECK((*first)->not_after - static_cast<int64_t>(std::time(nullptr)) <= kTtl.count());
  auto again = manager.Certificate(kWeb);
  REQUIRE(again.ok());
  CHECK(*again == *first);  // the same object: not re-issued
  CHECK(manager.Cached(kWeb) == *first);
  CHECK(manager.issued() == 1);
  CHECK(manager.cached() == 1);
  CHECK(told == 1);

  auto other = manager.Certificate(kDb);
  REQUIRE(other.ok());
  CHECK((*other)->serial_hex != (*first)->serial_hex);
  CHECK(manager.issued() == 2);
  CHECK(manager.cached() == 2);
  CHECK(told == 2);

  // Not an identity: refused, nothing issued or cached.
  CHECK_FALSE(manager.Certificate("not a spiffe id").ok());
  CHECK(manager.issued() == 2);
  CHECK(manager.cached() == 2);
  CHECK(manager.evicted() == 0);
}

TEST_CASE("CertificateManager: re-issues once half of the lifetime is left, not before") {
  auto ca = MakeCa();
  CertificateManager manager(*ca, kTtl, 10);
  FakeClock clock;
  manager.SetClock(clock.Get());
  auto first = manager.Certificate(kWeb);
  REQUIRE(first.ok());
  // Counted from not_after (not_before is backdated for clock skew).
  CHECK(manager.RefreshAt(**first) == (*first)->not_after - kTtl.count() / 2);

  clock.now = manager.RefreshAt(**first) - 1;
  auto same = manager.Certificate(kWeb);
  REQUIRE(same.ok());
  CHECK(*same == *first);
  CHECK(manager.issued() == 1);

  clock.now = manager.RefreshAt(**first);
  auto rotated = manager.Certificate(kWeb);
  REQUIRE(rotated.ok());
  CHECK((*rotated)->serial_hex != (*first)->serial_hex);
  CHECK(manager.issued() == 2);
  CHECK(manager.cached() == 1);  // replaced in place
  CHECK(manager.Cached(kWeb) == *rotated);
}

TEST_CASE("CertificateManager: the background refresh point is half-life plus a bounded jitter") {
  auto ca = MakeCa();
  CertificateManager manager(*ca, kTtl, 10);
  std::set<int64_t> jitters;
  for (int i = 0; i < 50; ++i) {
    workloads::Svid svid;
    svid.serial_hex = "serial-" + std::to_string(i);
    svid.not_after = 1'000'000;
    const int64_t jitter = manager.BackgroundRefreshAt(svid) - manager.RefreshAt(svid);
    CHECK(jitter >= 0);
    CHECK(jitter <= kTtl.count() / 10);
    CHECK(manager.BackgroundRefreshAt(svid) == manager.BackgroundRefreshAt(svid));  // stable
    jitters.insert(jitter);
  }
  CHECK(jitters.size() > 1);  // spread: not every certificate at the same instant
}

TEST_CASE("CertificateManager: evicts the least recently used SVID when the cache is full") {
  auto ca = MakeCa();
  CertificateManager manager(*ca, kTtl, 2);
  const std::string kApi = "spiffe://cluster.local/ns/shop/sa/api";
  auto web = manager.Certificate(kWeb);
  REQUIRE(web.ok());
  REQUIRE(manager.Certificate(kDb).ok());
  REQUIRE(manager.Certificate(kWeb).ok());  // web is now the most recently used
  REQUIRE(manager.Certificate(kApi).ok());  // db goes
  CHECK(manager.cached() == 2);
  CHECK(manager.evicted() == 1);
  CHECK(manager.issued() == 3);
  CHECK(manager.Cached(kDb) == nullptr);
  CHECK(manager.Cached(kWeb) == *web);

  // An evicted identity is issued afresh on its next use.
  REQUIRE(manager.Certificate(kDb).ok());
  CHECK(manager.issued() == 4);
  CHECK(manager.evicted() == 2);
  CHECK(manager.cached() == 2);
  // Whoever held an evicted SVID still holds a valid one.
  CHECK((*web)->id.ToString() == kWeb);
}

TEST_CASE("CertificateManager: CertificateAsync without an issuer answers inline") {
  auto ca = MakeCa();
  CertificateManager manager(*ca, kTtl, 10);
  workloads::SvidPtr first;
  manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) {
    REQUIRE(svid.ok());
    first = *svid;
  });
  REQUIRE(first != nullptr);  // before returning
  CHECK(manager.issued() == 1);
  workloads::SvidPtr again;
  manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) { again = *svid; });
  CHECK(again == first);
  CHECK(manager.issued() == 1);

  bool refused = false;
  manager.CertificateAsync("not a spiffe id",
                           [&](Result<workloads::SvidPtr> svid) { refused = !svid.ok(); });
  CHECK(refused);
}

TEST_CASE("CertificateManager: CertificateAsync issues on the issuer's workers") {
  proxy::UvLoop loop;
  auto ca = MakeCa();
  {
    CertificateManager manager(*ca, kTtl, 10);
    CertificateIssuer issuer(loop.get(), *ca, kTtl, 2);
    manager.UseIssuer(&issuer);
    int told = 0;
    manager.OnIssued([&] { ++told; });
    workloads::SvidPtr first;
    manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) { first = *svid; });
    CHECK(first == nullptr);  // being issued on a worker
    CHECK(issuer.in_flight() == 1);
    REQUIRE(RunUntil(loop.get(), [&] { return first != nullptr; }));
    CHECK(manager.issued() == 1);
    CHECK(told == 1);
    CHECK(manager.Cached(kWeb) == first);

    workloads::SvidPtr cached;
    manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) { cached = *svid; });
    CHECK(cached == first);  // at once, from the cache
    CHECK(issuer.in_flight() == 0);
    CHECK(manager.issued() == 1);

    // Two requests for an identity not cached yet share one issuance.
    workloads::SvidPtr db, db_again;
    manager.CertificateAsync(kDb, [&](Result<workloads::SvidPtr> svid) { db = *svid; });
    manager.CertificateAsync(kDb, [&](Result<workloads::SvidPtr> svid) { db_again = *svid; });
    CHECK(issuer.in_flight() == 1);
    REQUIRE(RunUntil(loop.get(), [&] { return db != nullptr && db_again != nullptr; }));
    CHECK(db == db_again);
    CHECK(manager.Cached(kDb) == db);
    CHECK(manager.issued() == 2);  // counted once
    CHECK(told == 2);
    manager.UseIssuer(nullptr);
  }
  uv_run(loop.get(), UV_RUN_DEFAULT);
}

TEST_CASE("CertificateManager: serves a due SVID while its successor is issued in the background") {
  proxy::UvLoop loop;
  auto ca = MakeCa();
  {
    CertificateManager manager(*ca, kTtl, 10);
    FakeClock clock;
    manager.SetClock(clock.Get());
    CertificateIssuer issuer(loop.get(), *ca, kTtl, 1);
    manager.UseIssuer(&issuer);
    workloads::SvidPtr first;
    manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) { first = *svid; });
    REQUIRE(RunUntil(loop.get(), [&] { return first != nullptr; }));

    // Past half-life but before the jittered point: nothing to do yet.
    clock.now = manager.BackgroundRefreshAt(*first) - 1;
    workloads::SvidPtr served;
    manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) { served = *svid; });
    CHECK(served == first);
    CHECK(issuer.in_flight() == 0);

    // At the jittered point: the old one at once, the new one in the background.
    clock.now = manager.BackgroundRefreshAt(*first);
    served = nullptr;
    manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) { served = *svid; });
    CHECK(served == first);
    CHECK(issuer.in_flight() == 1);
    REQUIRE(RunUntil(loop.get(), [&] { return manager.issued() == 2; }));
    const workloads::SvidPtr successor = manager.Cached(kWeb);
    REQUIRE(successor != nullptr);
    CHECK(successor->serial_hex != first->serial_hex);

    // Within a minute of its expiry a cached SVID is not handed out: the
    // caller waits for the next one.
    clock.now = successor->not_after - 60;
    served = nullptr;
    manager.CertificateAsync(kWeb, [&](Result<workloads::SvidPtr> svid) { served = *svid; });
    CHECK(served == nullptr);
    REQUIRE(RunUntil(loop.get(), [&] { return served != nullptr; }));
    CHECK(served->serial_hex != successor->serial_hex);
    CHECK(manager.issued() == 3);
    manager.UseIssuer(nullptr);
  }
  uv_run(loop.get(), UV_RUN_DEFAULT);
}

}  // namespace
}  // namespace podless::runtime
