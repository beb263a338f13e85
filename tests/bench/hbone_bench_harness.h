// The HBONE benchmark harness: a podless HBONE server (ProxyCore, serving a
// TCP echo workload on 127.64.0.5) on its own thread and loop, and a podless
// HBONE client (HbonePool, as workload 127.64.0.7) on the caller's thread
// and loop, two cores for two proxies as on two nodes. The same server also
// serves the echo port in plaintext, so the baseline (direct TCP over
// loopback, same echo app, same client loop and load generator) runs side by
// side: Open(Transport::kTcp) versus Open(Transport::kHbone).
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/uv_handle.h"
#include "proxy/connection_metrics.h"
#include "proxy/connection_pool.h"
#include "proxy/proxy_core.h"
#include "tests/bench/bench_util.h"
#include "tests/proxy/fake_directory.h"

namespace podless::bench {

using proxy::testing::FreePort;

using proxy::testing::FakeDirectory;
using proxy::testing::Ip;
using proxy::testing::RunUntil;
using proxy::testing::TempDir;

inline constexpr char kServerAddress[] = "127.64.0.5";
inline constexpr char kClientAddress[] = "127.64.0.7";
inline constexpr char kServerIdentity[] = "spiffe://cluster.local/ns/shop/sa/web";

enum class Transport { kTcp, kHbone };
inline const char* Name(Transport t) { return t == Transport::kTcp ? "tcp" : "hbone"; }

// CPU seconds used by one thread (by its pthread id).
inline double ThreadCpu(pthread_t thread) {
  clockid_t clock;
  if (pthread_getcpuclockid(thread, &clock) != 0) return 0;
  timespec ts{};
  clock_gettime(clock, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// The server node: ProxyCore on its own thread until destroyed.
class ServerNode {
 public:
  explicit ServerNode(const std::string& ca_dir) : echo_port_(FreePort()) {
    std::atomic<int> state{0};  // 1 ready, -1 failed
    thread_ = std::thread([this, ca_dir, &state] {
      proxy::UvLoop loop;
      FakeDirectory directory(ca_dir, "cluster.local");
      directory.AddReplica(kServerAddress, "web", "shop", "web",
                           {{"tcp", echo_port_, workloads::Protocol::kTCP}});
      proxy::Registry registry;
      proxy::ProxyConfig config;
      config.hbone.listen.port = 0;
      config.outbound.listen.port = 0;
      auto core = proxy::ProxyCore::Create(loop.get(), directory, config, registry);
      if (!core.ok() || !(*core)->SyncPlaintextPorts({{0, echo_port_}}).ok()) {
        state = -1;
        return;
      }
      hbone_port_ = (*core)->hbone_port();
      state = 1;
      RunUntil(
          loop.get(), [this] { return stop_.load(); }, 1 << 30);
      (*core)->Close();
      RunUntil(
          loop.get(), [] { return false; }, 50);
    });
    while (state == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Require(state == 1, "the server ProxyCore did not start");
  }
  ~ServerNode() {
    stop_ = true;
    thread_.join();
  }
  uint16_t hbone_port() const { return hbone_port_; }
  uint16_t echo_port() const { return echo_port_; }
  double Cpu() { return ThreadCpu(thread_.native_handle()); }

 private:
  uint16_t echo_port_;
  uint16_t hbone_port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The client node, on the calling thread: opens streams to the echo port
// over HBONE (pooled) or plain TCP.
class ClientNode {
 public:
  ClientNode(const std::string& ca_dir, const ServerNode& server)
      : directory_(ca_dir, "cluster.local"),
        dispatcher_(loop_.get()),
        metrics_(registry_),
        server_(server) {
    source_ = &directory_.AddReplica(kClientAddress, "frontend", "shop", "frontend", {});
    auto pool = proxy::HbonePool::Create(dispatcher_, directory_, metrics_, {});
    Require(pool.ok(), "cannot create the HBONE pool");
    pool_ = std::move(pool).value();
  }
  ~ClientNode() {
    pool_->Close();
    connectors_.clear();
    RunUntil(
        loop_.get(), [] { return false; }, 50);
  }

  // Opens a stream; `done(stream)` runs from the loop (nullptr on failure).
  void Open(Transport transport, std::function<void(proxy::Stream*)> done) {
    if (transport == Transport::kHbone) {
      proxy::Endpoint endpoint;
      endpoint.address = Ip(kServerAddress);
      endpoint.port = server_.echo_port();
      endpoint.spiffe_id = kServerIdentity;
      endpoint.workload = "web";
      endpoint.ns = "shop";
      endpoint.hbone_port = server_.hbone_port();
      auto request = std::make_shared<proxy::HboneRequestPtr>();
      *request = pool_->Open(
          *source_, endpoint,
          [done, request](proxy::HboneStream* stream, int status, const std::string& error) {
            if (stream == nullptr) {
              std::fprintf(stderr, "HBONE open failed: %d %s\n", status, error.c_str());
            }
            done(stream);
            request->reset();
          });
      return;
    }
    connectors_.push_back(std::make_unique<proxy::TcpConnector>(dispatcher_));
    connectors_.back()->Connect(
        Ip(kServerAddress), server_.echo_port(), 5000, [done](Result<proxy::TcpStream*> r) {
          if (!r.ok()) {
            std::fprintf(stderr, "TCP connect failed: %s\n", r.error().message.c_str());
          }
          done(r.ok() ? r.value() : nullptr);
        });
    // Connectors are small; drop old ones now and then. The newest 1024 are
    // kept: one of them may be running the callback that called Open(), and
    // no caller keeps more than 1024 connects in flight.
    if (connectors_.size() > 4096) connectors_.erase(connectors_.begin(), connectors_.end() - 1024);
  }

  bool Run(const std::function<bool()>& done, int timeout_ms) {
    return RunUntil(loop_.get(), done, timeout_ms);
  }
  size_t pool_connections() const { return pool_->connection_count(); }

 private:
  proxy::UvLoop loop_;
  FakeDirectory directory_;
  proxy::Dispatcher dispatcher_;
  proxy::Registry registry_;
  proxy::ProxyMetrics metrics_;
  const ServerNode& server_;
  const proxy::LocalReplica* source_ = nullptr;
  proxy::HbonePoolPtr pool_;
  std::vector<std::unique_ptr<proxy::TcpConnector>> connectors_;
};

// Both nodes, sharing one CA kept in a temp dir.
struct Nodes {
  Nodes() : server(ca_dir.path()), client(ca_dir.path(), server) {}
  TempDir ca_dir;
  ServerNode server;
  ClientNode client;
};

}  // namespace podless::bench
