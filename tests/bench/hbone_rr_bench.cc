// HBONE request/response and stream setup rate, podless HBONE client
// (HbonePool) -> podless HBONE server (ProxyCore) -> TCP echo app, against
// direct TCP to the same echo app with the same load generator on the same
// loops (the baseline, side by side):
// - request/response: C concurrent streams on the pooled connection (C TCP
//   connections for the baseline), each sending a 1 KiB request and waiting
//   for its 1 KiB echo before the next; p50/p99 latency, req/s, and the CPU
//   of the server node's thread per 1,000 req/s. Added latency per hop =
//   HBONE minus TCP (one hop: client node -> server node).
// - new streams/s: W setups in flight, each opening a stream, one byte
//   round trip, half-close, until closed; against new TCP connections/s.
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "tests/bench/hbone_bench_harness.h"

namespace podless::bench {
namespace {

constexpr size_t kMessage = 1024;

// One closed-loop request/response client on one stream.
class Pinger final : public proxy::StreamHandler {
 public:
  Pinger(proxy::Stream* stream, const std::string& message, long* budget,
         std::vector<double>* latencies)
      : stream_(stream), message_(message), budget_(budget), latencies_(latencies) {
    stream_->SetHandler(this);
    Send();
  }
  void OnData(std::string_view bytes) override {
    pending_ -= bytes.size();
    if (pending_ == 0) {
      latencies_->push_back(Now() - sent_at_);
      Send();
    }
  }
  void OnEnd() override {}
  void OnClosed(bool reset) override {
    closed_ = true;
    if (reset && !finished_) failed_ = true;
  }
  bool finished() const { return finished_; }
  bool failed() const { return failed_; }
  bool closed() const { return closed_; }

 private:
  void Send() {
    if (*budget_ <= 0) {
      finished_ = true;
      stream_->End();
      return;
    }
    --*budget_;
    pending_ = message_.size();
    sent_at_ = Now();
    stream_->Write(message_);
  }
  proxy::Stream* stream_;
  const std::string& message_;
  long* budget_;
  std::vector<double>* latencies_;
  size_t pending_ = 0;
  double sent_at_ = 0;
  bool finished_ = false, failed_ = false, closed_ = false;
};

struct RrResult {
  double p50_us = 0, p99_us = 0, req_per_s = 0, server_cpu_per_1k = 0, process_cpu_per_1k = 0;
};

RrResult RequestResponse(Nodes& nodes, Transport transport, int concurrency, long requests) {
  std::string message(kMessage, 'r');
  std::vector<std::unique_ptr<Pinger>> pingers;
  std::vector<double> latencies;
  latencies.reserve(requests);
  long budget = 0;
  int failed_opens = 0;
  // Every stream opens first; the clock starts when all are open.
  std::vector<proxy::Stream*> streams;
  for (int i = 0; i < concurrency; ++i) {
    nodes.client.Open(transport, [&](proxy::Stream* s) {
      if (s == nullptr)
        ++failed_opens;
      else
        streams.push_back(s);
    });
  }
  Require(nodes.client.Run(
              [&] { return failed_opens > 0 || static_cast<int>(streams.size()) == concurrency; },
              10000) &&
              failed_opens == 0,
          std::string("opening the request/response streams over ") + Name(transport));
  budget = requests;
  double server_cpu0 = nodes.server.Cpu(), cpu0 = ProcessCpu(), start = Now();
  for (auto* s : streams)
    pingers.push_back(std::make_unique<Pinger>(s, message, &budget, &latencies));
  bool ok = nodes.client.Run(
      [&] {
        for (auto& p : pingers) {
          if (p->failed()) return true;
          if (!p->finished()) return false;
        }
        return true;
      },
      300000);
  double elapsed = Now() - start;
  double server_cpu = nodes.server.Cpu() - server_cpu0, cpu = ProcessCpu() - cpu0;
  for (auto& p : pingers) Require(!p->failed(), "a request/response stream failed");
  Require(ok && static_cast<long>(latencies.size()) == requests, "not every request was answered");
  nodes.client.Run(
      [&] {
        for (auto& p : pingers)
          if (!p->closed()) return false;
        return true;
      },
      10000);
  RrResult r;
  r.req_per_s = requests / elapsed;
  r.p50_us = Percentile(latencies, 0.50) * 1e6;
  r.p99_us = Percentile(latencies, 0.99) * 1e6;
  r.server_cpu_per_1k = server_cpu / elapsed / (r.req_per_s / 1000);
  r.process_cpu_per_1k = cpu / elapsed / (r.req_per_s / 1000);
  return r;
}

// One stream setup: open, one byte there and back, half-close, closed.
class Setup final : public proxy::StreamHandler {
 public:
  explicit Setup(proxy::Stream* stream) : stream_(stream) {
    stream_->SetHandler(this);
    stream_->Write("s");
  }
  void OnData(std::string_view) override { stream_->End(); }
  void OnEnd() override {}
  void OnClosed(bool reset) override {
    done = true;
    failed = reset;
  }
  proxy::Stream* stream_;
  bool done = false, failed = false;
};

// Setups per second of wall time, and per CPU-second of each node's thread
// (each node runs on one loop thread: the per-core rate of that node).
struct SetupRate {
  double per_s = 0, per_server_cpu_s = 0, per_client_cpu_s = 0;
};

SetupRate StreamsPerSecond(Nodes& nodes, Transport transport, int in_flight, long total) {
  long started = 0, completed = 0, failures = 0;
  std::deque<std::unique_ptr<Setup>> live;
  std::function<void()> start_one = [&] {
    ++started;
    nodes.client.Open(transport, [&](proxy::Stream* s) {
      if (s == nullptr) {
        ++failures;
        return;
      }
      live.push_back(std::make_unique<Setup>(s));
    });
  };
  const double t0 = Now(), server_cpu0 = nodes.server.Cpu(),
               client_cpu0 = ThreadCpu(pthread_self());
  for (int i = 0; i < in_flight && started < total; ++i) start_one();
  bool ok = nodes.client.Run(
      [&] {
        // Reap finished setups, then start their replacements (after the
        // walk: an open may add to `live`).
        long reaped = 0;
        for (auto it = live.begin(); it != live.end();) {
          if ((*it)->done) {
            if ((*it)->failed) ++failures;
            it = live.erase(it);
            ++reaped;
          } else {
            ++it;
          }
        }
        completed += reaped;
        for (; reaped > 0 && started < total; --reaped) start_one();
        return failures > 0 || completed == total;
      },
      300000);
  const double elapsed = Now() - t0, server_cpu = nodes.server.Cpu() - server_cpu0,
               client_cpu = ThreadCpu(pthread_self()) - client_cpu0;
  Require(ok && failures == 0, std::string("stream setups over ") + Name(transport));
  return {total / elapsed, total / server_cpu, total / client_cpu};
}

int Main() {
  bool smoke = Smoke();
  int concurrency = smoke ? 8 : 64;
  long requests = smoke ? 2000 : 200000;
  int in_flight = smoke ? 8 : 64;
  long setups_hbone = smoke ? 500 : 100000;
  long setups_tcp = smoke ? 500 : 20000;  // bounded by ephemeral ports in TIME_WAIT
  Nodes nodes;
  RequestResponse(nodes, Transport::kHbone, 2, 100);  // handshake + pool warm-up
  // One stream: the round trip itself (no queueing behind other streams);
  // then `concurrency` streams: rate, CPU, and latency under load.
  for (int streams : {1, concurrency}) {
    long n = streams == 1 ? requests / 10 : requests;
    RrResult tcp = RequestResponse(nodes, Transport::kTcp, streams, n);
    RrResult hbone = RequestResponse(nodes, Transport::kHbone, streams, n);
    std::printf(
        "bench hbone_rr msg=%zuB streams=%d requests=%ld tcp_p50_us=%.1f tcp_p99_us=%.1f "
        "hbone_p50_us=%.1f hbone_p99_us=%.1f added_p50_us_per_hop=%.1f "
        "added_p99_us_per_hop=%.1f target_added_p50_us=50\n",
        kMessage, streams, n, tcp.p50_us, tcp.p99_us, hbone.p50_us, hbone.p99_us,
        hbone.p50_us - tcp.p50_us, hbone.p99_us - tcp.p99_us);
    std::printf(
        "bench hbone_rr_rate streams=%d tcp_req_s=%.0f hbone_req_s=%.0f ratio=%.3f "
        "server_node_cpu_cores_per_1k_req_s: tcp=%.4f hbone=%.4f proxy_added=%.4f "
        "process_cpu_cores_per_1k_req_s: tcp=%.4f hbone=%.4f target_proxy=0.02\n",
        streams, tcp.req_per_s, hbone.req_per_s, hbone.req_per_s / tcp.req_per_s,
        tcp.server_cpu_per_1k, hbone.server_cpu_per_1k,
        hbone.server_cpu_per_1k - tcp.server_cpu_per_1k, tcp.process_cpu_per_1k,
        hbone.process_cpu_per_1k);
    Require(Sane(tcp.p50_us) && Sane(hbone.p50_us), "implausible latencies");
  }
  std::fflush(stdout);
  const SetupRate tcp = StreamsPerSecond(nodes, Transport::kTcp, in_flight, setups_tcp);
  const SetupRate hbone = StreamsPerSecond(nodes, Transport::kHbone, in_flight, setups_hbone);
  std::printf(
      "bench hbone_new_streams in_flight=%d tcp_connections_s=%.0f hbone_streams_s=%.0f "
      "ratio=%.3f pooled_connections=%zu\n",
      in_flight, tcp.per_s, hbone.per_s, hbone.per_s / tcp.per_s, nodes.client.pool_connections());
  // Per core: setups per CPU-second of the node's loop thread, so machine
  // load (time the thread waited for a core) does not count against it.
  std::printf(
      "bench hbone_new_streams_per_core server_node: tcp=%.0f hbone=%.0f ratio=%.3f "
      "client_node: tcp=%.0f hbone=%.0f ratio=%.3f target_streams_s_per_core=50000\n",
      tcp.per_server_cpu_s, hbone.per_server_cpu_s, hbone.per_server_cpu_s / tcp.per_server_cpu_s,
      tcp.per_client_cpu_s, hbone.per_client_cpu_s, hbone.per_client_cpu_s / tcp.per_client_cpu_s);
  Require(Sane(tcp.per_s) && Sane(hbone.per_s), "implausible figures");
  return 0;
}

}  // namespace
}  // namespace podless::bench

int main() { return podless::bench::Main(); }
