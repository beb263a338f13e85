// SVID issuance rate against its crypto bound, measured side by side: the
// bound is one P-256 key generation plus one ECDSA signature (the two
// expensive steps of issuing), timed in the same process on the same number
// of threads; IssueSvid adds the certificate build, DER encoding and
// bookkeeping on top. Prints issuance/s per thread count and the ratio.
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>
#include <openssl/sha.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/bench_util.h"
#include "workloads/certificate_authority.h"

namespace podless::bench {
namespace {

// One keygen + one sign: the lower bound on the cost of an SVID.
bool KeygenAndSign() {
  bssl::UniquePtr<EC_KEY> key(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (!key || !EC_KEY_generate_key(key.get())) return false;
  uint8_t digest[SHA256_DIGEST_LENGTH];
  static const char kTbs[] = "a to-be-signed certificate body of about this size";
  SHA256(reinterpret_cast<const uint8_t*>(kTbs), sizeof(kTbs), digest);
  uint8_t sig[80];  // ECDSA_size() of a P-256 key is 72
  unsigned sig_len = sizeof(sig);
  return ECDSA_sign(0, digest, sizeof(digest), sig, &sig_len, key.get()) == 1;
}

// Runs `op` on `threads` threads for `seconds`; operations per second.
double Rate(int threads, double seconds, const std::function<bool()>& op) {
  std::atomic<bool> stop{false};
  std::atomic<long> done{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  double start = Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!op()) {
          failed = true;
          break;
        }
        ++n;
      }
      done += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  double elapsed = Now() - start;
  Require(!failed, "an operation failed");
  return done / elapsed;
}

int Main() {
  double seconds = Smoke() ? 0.1 : 3.0;
  auto ca = workloads::CertificateAuthority::CreateInMemory("cluster.local");
  Require(ca.ok(), "cannot create the CA");
  auto id = workloads::SpiffeId::ForServiceAccount("cluster.local", "shop", "web");
  auto issue = [&] { return (*ca)->IssueSvid(id, std::chrono::hours(24)).ok(); };
  unsigned cores = std::thread::hardware_concurrency();
  for (int threads : {1, 2}) {
    // Interleaved (bound, issue, bound, issue) so drift in machine load hits both.
    double bound = 0, issued = 0;
    for (int round = 0; round < 2; ++round) {
      bound += Rate(threads, seconds / 2, KeygenAndSign);
      issued += Rate(threads, seconds / 2, issue);
    }
    bound /= 2;
    issued /= 2;
    double ratio = issued / bound;
    std::printf(
        "bench svid_issuance threads=%d cores=%u bound_keygen_sign_per_s=%.0f "
        "issue_svid_per_s=%.0f issue_per_s_per_thread=%.0f ratio=%.3f target=0.80\n",
        threads, cores, bound, issued, issued / threads, ratio);
    std::fflush(stdout);
    Require(Sane(bound) && Sane(issued) && ratio < 2, "implausible figures");
  }
  return 0;
}

}  // namespace
}  // namespace podless::bench

int main() { return podless::bench::Main(); }
