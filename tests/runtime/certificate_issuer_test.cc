#include "runtime/identity/certificate_issuer.h"

#include <doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <thread>

#include "proxy/base/uv_handle.h"
#include "runtime/state/agent.h"
#include "tests/testing/run_loop.h"
#include "tests/testing/temp_dir.h"

namespace podless::runtime {
namespace {

using podless::testing::RunUntil;  // 10 s at most

TEST_CASE("CertificateIssuer: issues on worker threads and answers on the loop thread") {
  proxy::UvLoop loop;
  auto ca = workloads::CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  const std::thread::id loop_thread = std::this_thread::get_id();
  {
    CertificateIssuer issuer(loop.get(), **ca, std::chrono::hours(1), 2);
    int answers = 0;
    bool on_loop_thread = true;
    workloads::SvidPtr first, second;
    const std::string id = "spiffe://cluster.local/ns/shop/sa/web";
    issuer.Issue(id, [&](Result<workloads::SvidPtr> svid) {
      REQUIRE(svid.ok());
      first = *svid;
      on_loop_thread &= std::this_thread::get_id() == loop_thread;
      ++answers;
    });
    // A second request while the first is in flight joins it.
    issuer.Issue(id, [&](Result<workloads::SvidPtr> svid) {
      REQUIRE(svid.ok());
      second = *svid;
      ++answers;
    });
    CHECK(answers == 0);  // never synchronously
    CHECK(issuer.in_flight() == 1);
    REQUIRE(RunUntil(loop.get(), [&] { return answers == 2; }));
    CHECK(on_loop_thread);
    CHECK(first == second);
    CHECK(first->id.ToString() == id);
    CHECK(issuer.in_flight() == 0);

    Result<workloads::SvidPtr> bad = MakeError(ErrorCode::kInternal, "");
    bool answered = false;
    issuer.Issue("not a spiffe id", [&](Result<workloads::SvidPtr> svid) {
      bad = std::move(svid);
      answered = true;
    });
    REQUIRE(RunUntil(loop.get(), [&] { return answered; }));
    CHECK_FALSE(bad.ok());

    // Destroyed with work queued: the callbacks never run.
    for (int i = 0; i < 20; ++i) {
      issuer.Issue("spiffe://cluster.local/ns/shop/sa/w" + std::to_string(i),
                   [](Result<workloads::SvidPtr>) { FAIL("callback after destruction"); });
    }
  }
  uv_run(loop.get(), UV_RUN_DEFAULT);
}

TEST_CASE("CertificateIssuer: every request of a burst is answered once, in any contention") {
  // Requests issued one by one from inside answers, while the workers push
  // results: the loop's try_lock meets a busy lock now and then, and those
  // requests wait in the backlog for the retry timer. None may be lost.
  proxy::UvLoop loop;
  auto ca = workloads::CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  {
    CertificateIssuer issuer(loop.get(), **ca, std::chrono::hours(1), 2);
    constexpr int kTotal = 300;
    int next = 0;
    std::vector<int> answers(kTotal, 0);
    std::function<void()> issue_one = [&] {
      const int n = next++;
      issuer.Issue("spiffe://cluster.local/ns/burst/sa/w" + std::to_string(n),
                   [&, n](Result<workloads::SvidPtr> svid) {
                     CHECK(svid.ok());
                     ++answers[n];
                     if (next < kTotal) issue_one();
                   });
    };
    for (int i = 0; i < 8; ++i) issue_one();
    REQUIRE(RunUntil(loop.get(), [&] {
      return std::all_of(answers.begin(), answers.end(), [](int a) { return a > 0; });
    }));
    CHECK(std::all_of(answers.begin(), answers.end(), [](int a) { return a == 1; }));
    CHECK(issuer.in_flight() == 0);
  }
  uv_run(loop.get(), UV_RUN_DEFAULT);
}

TEST_CASE("Agent: its certificates issue off the loop once, then answer from their cache") {
  proxy::UvLoop loop;
  const testing::TempDir dir("podless-issuer-test");
  AgentConfig config;
  config.state_dir = dir.path();
  config.node_name = "test";
  {
    auto agent = Agent::Open(config);
    REQUIRE(agent.ok());
    CertificateIssuer issuer(loop.get(), (*agent)->ca(), config.svid_ttl, 1);
    CertificateManager& certificates = (*agent)->certificates();
    certificates.UseIssuer(&issuer);
    const std::string id = "spiffe://cluster.local/ns/shop/sa/web";
    workloads::SvidPtr first;
    certificates.CertificateAsync(id, [&](Result<workloads::SvidPtr> svid) { first = *svid; });
    CHECK(first == nullptr);  // being issued on a worker
    REQUIRE(RunUntil(loop.get(), [&] { return first != nullptr; }));
    CHECK(certificates.issued() == 1);
    workloads::SvidPtr again;
    certificates.CertificateAsync(id, [&](Result<workloads::SvidPtr> svid) { again = *svid; });
    CHECK(again == first);  // at once, from the cache
    CHECK(certificates.issued() == 1);
    certificates.UseIssuer(nullptr);
  }
  uv_run(loop.get(), UV_RUN_DEFAULT);
  std::filesystem::remove_all(config.state_dir);
}

}  // namespace
}  // namespace podless::runtime
