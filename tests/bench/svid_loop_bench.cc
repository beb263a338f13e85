// Does SVID issuance block the loop that serves traffic? A 1 ms repeating
// timer on a libuv loop stands for the traffic: its lateness (the gap between
// two ticks beyond 1 ms) is what a request would wait. Measured three ways,
// side by side in one run:
//   idle     - the timer alone (the baseline);
//   workers  - the same loop while a CertificateIssuer (the agent's, with as
//              many worker threads as the agent starts: one per core) issues
//              SVIDs back to back for distinct identities;
//   inline   - issuance on the loop itself, kInlineBurst per loop turn (a
//              burst of handshakes for identities not yet cached, as the
//              agent handled them before it had the issuer): what the
//              workers avoid, for contrast.
// Prints p50/p99/max lateness per mode, SVIDs/s issued, and the ratios of
// the workers' and inline p99 to the idle p99.
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "proxy/base/uv_handle.h"
#include "runtime/identity/certificate_issuer.h"
#include "tests/bench/bench_util.h"
#include "workloads/certificate_authority.h"

namespace podless::bench {
namespace {

enum class Mode { kIdle, kWorkers, kInline };
constexpr int kInlineBurst = 16;

struct Figures {
  double p50_us = 0, p99_us = 0, max_us = 0, issued_per_s = 0;
};

struct Run {
  uv_loop_t* loop = nullptr;
  const workloads::CertificateAuthority* ca = nullptr;
  runtime::CertificateIssuer* issuer = nullptr;
  Mode mode = Mode::kIdle;
  uint64_t last_tick_ns = 0;
  uint64_t end_ns = 0;
  std::vector<double> lateness_us;
  long issued = 0;
  long next_id = 0;
  bool stopping = false;
  proxy::TimerHandle timer;
  proxy::IdleHandle idle;  // inline mode: one issuance per loop turn

  std::string NextId() {
    return "spiffe://cluster.local/ns/bench/sa/w" + std::to_string(next_id++);
  }
  // Keeps the workers busy: one request in flight per worker and one queued.
  void IssueOnWorkers() {
    if (stopping) return;
    issuer->Issue(NextId(), [this](Result<workloads::SvidPtr> svid) {
      Require(svid.ok(), "issuance failed");
      ++issued;
      IssueOnWorkers();
    });
  }
};

Figures Measure(uv_loop_t* loop, const workloads::CertificateAuthority& ca, Mode mode,
                double seconds, unsigned threads) {
  Run run;
  run.loop = loop;
  run.ca = &ca;
  run.mode = mode;
  std::unique_ptr<runtime::CertificateIssuer> issuer;
  if (mode == Mode::kWorkers) {
    issuer =
        std::make_unique<runtime::CertificateIssuer>(loop, ca, std::chrono::hours(24), threads);
    run.issuer = issuer.get();
    for (unsigned i = 0; i < 2 * threads; ++i) run.IssueOnWorkers();
  }
  uv_timer_init(loop, run.timer.get());
  run.timer->data = &run;
  run.last_tick_ns = uv_hrtime();
  run.end_ns = run.last_tick_ns + static_cast<uint64_t>(seconds * 1e9);
  uv_timer_start(
      run.timer.get(),
      [](uv_timer_t* t) {
        auto* r = static_cast<Run*>(t->data);
        const uint64_t now = uv_hrtime();
        r->lateness_us.push_back(std::max(0.0, (now - r->last_tick_ns) / 1e3 - 1000.0));
        r->last_tick_ns = now;
        if (now >= r->end_ns) {
          r->stopping = true;
          uv_timer_stop(t);
          if (r->mode == Mode::kInline) uv_idle_stop(r->idle.get());
        }
      },
      1, 1);
  if (mode == Mode::kInline) {
    uv_idle_init(loop, run.idle.get());
    run.idle->data = &run;
    uv_idle_start(run.idle.get(), [](uv_idle_t* h) {
      auto* r = static_cast<Run*>(h->data);
      for (int i = 0; i < kInlineBurst; ++i) {
        auto id = workloads::SpiffeId::Parse(r->NextId());
        Require(id.ok() && r->ca->IssueSvid(*id, std::chrono::hours(24)).ok(), "issuance failed");
        ++r->issued;
      }
    });
  }
  const double start = Now();
  uv_run(loop, UV_RUN_DEFAULT);  // until the timer stops (the issuer is unref'd)
  const double elapsed = Now() - start;
  issuer.reset();  // joins the workers; undelivered results are dropped
  run.timer.Close();
  run.idle.Close();
  uv_run(loop, UV_RUN_NOWAIT);  // close callbacks

  Figures f;
  f.issued_per_s = run.issued / elapsed;
  f.p50_us = Percentile(run.lateness_us, 0.50);
  f.p99_us = Percentile(run.lateness_us, 0.99);
  f.max_us = Percentile(run.lateness_us, 1.0);
  return f;
}

int Main() {
  const double seconds = Smoke() ? 0.2 : 3.0;
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());  // as the agent
  auto ca = workloads::CertificateAuthority::CreateInMemory("cluster.local");
  Require(ca.ok(), "cannot create the CA");
  uv_loop_t loop;
  uv_loop_init(&loop);
  // Interleaved twice so drift in machine load hits every mode.
  Figures sum[3];
  const Mode modes[3] = {Mode::kIdle, Mode::kWorkers, Mode::kInline};
  for (int round = 0; round < 2; ++round) {
    for (int m = 0; m < 3; ++m) {
      Figures f = Measure(&loop, **ca, modes[m], seconds / 2, threads);
      sum[m].p50_us += f.p50_us / 2;
      sum[m].p99_us += f.p99_us / 2;
      sum[m].max_us = std::max(sum[m].max_us, f.max_us);
      sum[m].issued_per_s += f.issued_per_s / 2;
    }
  }
  uv_loop_close(&loop);
  const char* names[3] = {"idle", "workers", "inline"};
  for (int m = 0; m < 3; ++m) {
    std::printf(
        "bench svid_loop mode=%s threads=%u timer_lateness_p50_us=%.1f p99_us=%.1f max_us=%.1f "
        "issued_per_s=%.0f\n",
        names[m], threads, sum[m].p50_us, sum[m].p99_us, sum[m].max_us, sum[m].issued_per_s);
  }
  // +1 µs keeps the ratio finite when the idle loop's p99 rounds to zero.
  std::printf(
      "bench svid_loop workers_p99_over_idle=%.2f inline_p99_over_idle=%.2f "
      "workers_issued_per_s=%.0f\n",
      (sum[1].p99_us + 1) / (sum[0].p99_us + 1), (sum[2].p99_us + 1) / (sum[0].p99_us + 1),
      sum[1].issued_per_s);
  std::fflush(stdout);
  Require(Sane(sum[1].issued_per_s) && Sane(sum[2].issued_per_s), "nothing issued");
  return 0;
}

}  // namespace
}  // namespace podless::bench

int main() { return podless::bench::Main(); }
