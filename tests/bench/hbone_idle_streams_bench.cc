// Idle streams held: S HBONE streams from the podless client (HbonePool) to
// the podless server (ProxyCore) and its TCP echo app, each opened, one byte
// echoed (so both ends, the app included, are fully set up), then left idle.
// Baseline, side by side: the same with plain TCP connections to the same
// echo app (two sockets per connection in this process; fewer of them, as
// each costs file descriptors).
//
// Two measures of memory per stream, each divided by S:
// - the process RSS growth: both nodes (client stream, server stream, the
//   in-proxy echo app) in one process, allocator slack included;
// - the live heap bytes of each node on its own (thread_heap.h): the client
//   node is the main thread (HbonePool; the benchmark's own handler object
//   per stream is subtracted), the server node every other thread (the
//   ProxyCore with its in-proxy echo app). This is the figure for "memory
//   per stream" of one proxy. Kernel socket memory is in neither; an idle
//   HBONE stream has none of its own, a TCP connection two sockets.
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/bench/hbone_bench_harness.h"
#include "tests/bench/thread_heap.h"

namespace podless::bench {
namespace {

class Idle final : public proxy::StreamHandler {
 public:
  explicit Idle(proxy::Stream* stream) : stream_(stream) {
    if (stream_ == nullptr) return;  // a probe for its size
    stream_->SetHandler(this);
    stream_->Write("i");
  }
  void OnData(std::string_view) override { echoed = true; }
  void OnEnd() override {}
  void OnClosed(bool) override { closed = true; }
  void Close() {
    if (!closed) stream_->Reset();
    closed = true;
  }
  proxy::Stream* stream_;
  bool echoed = false, closed = false;
};

struct Held {
  long long bytes_per_stream = 0;  // process RSS growth per stream
  long long client_heap_per_stream = 0;
  long long server_heap_per_stream = 0;
  size_t count = 0;
  double open_s = 0;
  size_t pool_connections = 0;  // HBONE connections carrying them
};

// Live heap of the client node (this thread) and of the server node (every
// other thread). Chunks waiting in the ByteQueue pools are left out: a
// bounded per-thread cost (ChunkPool::kMaxPooled at most), not a per-stream
// one, that a run fills up to its largest burst.
int64_t ClientNodeHeap() {
  return ThreadHeapBytes() - static_cast<int64_t>(proxy::ChunkPool::pooled_bytes());
}
int64_t OtherThreadsHeap() {
  int64_t others_pooled = static_cast<int64_t>(proxy::ChunkPool::pooled_bytes_all_threads() -
                                               proxy::ChunkPool::pooled_bytes());
  return ProcessHeapBytes() - ThreadHeapBytes() - others_pooled;
}

// Opens `count` streams in waves of `wave`, all echoed once; holds them while
// measuring RSS and each node's live heap; then resets them.
Held Hold(Nodes& nodes, Transport transport, size_t count, size_t wave) {
  std::vector<std::unique_ptr<Idle>> held;
  held.reserve(count);
  // What the benchmark itself holds per stream on the client thread (one
  // Idle handler), left out of the client node's figure.
  int64_t handler_bytes = ThreadHeapBytes();
  {
    auto probe = std::make_unique<Idle>(nullptr);
    handler_bytes = ThreadHeapBytes() - handler_bytes;
  }
  size_t failures = 0;
  nodes.client.Run([] { return false; }, 100);
  long long before = RssBytes();
  int64_t client_before = ClientNodeHeap();
  int64_t others_before = OtherThreadsHeap();
  double t0 = Now();
  for (size_t opened = 0; opened < count;) {
    size_t n = std::min(wave, count - opened);
    size_t first = held.size();
    for (size_t i = 0; i < n; ++i) {
      nodes.client.Open(transport, [&](proxy::Stream* s) {
        if (s == nullptr)
          ++failures;
        else
          held.push_back(std::make_unique<Idle>(s));
      });
    }
    opened += n;
    bool ok = nodes.client.Run(
        [&] {
          if (failures > 0 || held.size() < first + n) return failures > 0;
          for (size_t i = first; i < held.size(); ++i) {
            if (!held[i]->echoed) return false;
          }
          return true;
        },
        60000);
    Require(ok && failures == 0, std::string("opening idle streams over ") + Name(transport) +
                                     " (" + std::to_string(held.size()) + " open)");
  }
  double open_s = Now() - t0;
  nodes.client.Run([] { return false; }, 200);  // let the server side settle
  long long after = RssBytes();
  int64_t client_after = ClientNodeHeap();
  int64_t others_after = OtherThreadsHeap();
  size_t pool_connections = nodes.client.pool_connections();
  for (auto& h : held) Require(!h->closed, "an idle stream closed while held");
  for (auto& h : held) h->Close();
  nodes.client.Run([] { return false; }, 500);
  Held r;
  r.count = count;
  auto n = static_cast<long long>(count);
  r.bytes_per_stream = (after - before) / n;
  r.client_heap_per_stream = (client_after - client_before) / n - handler_bytes;
  r.server_heap_per_stream = (others_after - others_before) / n;
  r.open_s = open_s;
  r.pool_connections = pool_connections;
  return r;
}

int Main() {
  bool smoke = Smoke();
  size_t streams = smoke ? 2000 : 100000;
  // Two descriptors per plain TCP connection in this process.
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  size_t tcp = std::min<size_t>(smoke ? 1000 : 10000, (limit.rlim_cur - 200) / 2);
  Nodes nodes;
  Hold(nodes, Transport::kHbone, 10, 10);  // handshake, pool, allocator warm-up
  Held base = Hold(nodes, Transport::kTcp, tcp, 500);
  Held hbone = Hold(nodes, Transport::kHbone, streams, 1000);
  auto ratio = [](long long a, long long b) {
    return static_cast<double>(a) / static_cast<double>(std::max<long long>(1, b));
  };
  std::printf(
      "bench hbone_idle_streams hbone_streams=%zu hbone_bytes_per_stream=%lld "
      "hbone_open_streams_s=%.0f tcp_connections=%zu tcp_bytes_per_connection=%lld ratio=%.3f "
      "hbone_pool_connections=%zu target_bytes_per_stream=4096 (RSS, both nodes in one process)\n",
      hbone.count, hbone.bytes_per_stream, hbone.count / hbone.open_s, base.count,
      base.bytes_per_stream, ratio(hbone.bytes_per_stream, base.bytes_per_stream),
      hbone.pool_connections);
  Require(hbone.bytes_per_stream > 0 && hbone.bytes_per_stream < (1 << 20),
          "implausible bytes per stream");
  if (!kThreadHeapCounted) {
    std::printf(
        "bench hbone_idle_streams_per_node skipped: built with a sanitizer, which owns "
        "malloc\n");
    return 0;
  }
  long long per_node = std::max(hbone.client_heap_per_stream, hbone.server_heap_per_stream);
  std::printf(
      "bench hbone_idle_streams_per_node hbone_client_node_bytes_per_stream=%lld "
      "hbone_server_node_bytes_per_stream=%lld tcp_client_node_bytes_per_connection=%lld "
      "tcp_server_node_bytes_per_connection=%lld ratio_client=%.3f ratio_server=%.3f "
      "hbone_bytes_per_stream_per_node=%lld target_bytes_per_stream=4096 (live heap)\n",
      hbone.client_heap_per_stream, hbone.server_heap_per_stream, base.client_heap_per_stream,
      base.server_heap_per_stream, ratio(hbone.client_heap_per_stream, base.client_heap_per_stream),
      ratio(hbone.server_heap_per_stream, base.server_heap_per_stream), per_node);
  Require(
      hbone.client_heap_per_stream > 0 && hbone.server_heap_per_stream > 0 && per_node < (1 << 20),
      "implausible heap bytes per stream");
  return 0;
}

}  // namespace
}  // namespace podless::bench

int main() { return podless::bench::Main(); }
