// Idle streams held: S HBONE streams from the podless client (HbonePool) to
// the podless server (ProxyCore) and its TCP echo app, each opened, one byte
// echoed (so both ends, the app included, are fully set up), then left idle.
// Memory per stream is the process RSS growth divided by S; the process
// holds both ends (client stream, server stream, echo app), as one node
// would if it were both caller and callee. Baseline, side by side: the same
// with plain TCP connections to the same echo app (two sockets per
// connection in this process; fewer of them, as each costs file descriptors).
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/bench/hbone_bench_harness.h"

namespace podless::bench {
namespace {

class Idle final : public proxy::StreamHandler {
 public:
  explicit Idle(proxy::Stream* stream) : stream_(stream) {
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
  long long bytes_per_stream = 0;
  size_t count = 0;
  double open_s = 0;
  size_t pool_connections = 0;  // HBONE connections carrying them
};

// Opens `count` streams in waves of `wave`, all echoed once; holds them while
// measuring RSS; then resets them.
Held Hold(Nodes& nodes, Transport transport, size_t count, size_t wave) {
  std::vector<std::unique_ptr<Idle>> held;
  held.reserve(count);
  size_t failures = 0;
  nodes.client.Run([] { return false; }, 100);
  long long before = RssBytes();
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
  size_t pool_connections = nodes.client.pool_connections();
  for (auto& h : held) Require(!h->closed, "an idle stream closed while held");
  for (auto& h : held) h->Close();
  nodes.client.Run([] { return false; }, 500);
  Held r;
  r.count = count;
  r.bytes_per_stream = (after - before) / static_cast<long long>(count);
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
  std::printf(
      "bench hbone_idle_streams hbone_streams=%zu hbone_bytes_per_stream=%lld "
      "hbone_open_streams_s=%.0f tcp_connections=%zu tcp_bytes_per_connection=%lld ratio=%.3f "
      "hbone_pool_connections=%zu target_bytes_per_stream=4096\n",
      hbone.count, hbone.bytes_per_stream, hbone.count / hbone.open_s, base.count,
      base.bytes_per_stream,
      static_cast<double>(hbone.bytes_per_stream) / std::max<long long>(1, base.bytes_per_stream),
      hbone.pool_connections);
  Require(hbone.bytes_per_stream > 0 && hbone.bytes_per_stream < (1 << 20),
          "implausible bytes per stream");
  return 0;
}

}  // namespace
}  // namespace podless::bench

int main() { return podless::bench::Main(); }
