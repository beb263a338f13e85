#include "runtime/node/proxy_workers.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <unordered_map>
#include <utility>

#include "proxy/base/log.h"

namespace podless::runtime {

struct ProxyWorkers::Worker {
  // The worker's own loop; null for the core on the main loop (--workers 0).
  // Declared first: destroyed after every handle below is closed.
  std::unique_ptr<proxy::UvLoop> own_loop;
  uv_loop_t* loop = nullptr;
  size_t index = 0;
  // Main thread -> worker: answers are waiting, or it is time to stop.
  proxy::AsyncHandle wake;
  std::unique_ptr<ProxyDirectory> directory;
  proxy::ProxyCorePtr core;
  std::thread thread;
  // Written by the main thread holding the lock exclusively.
  std::atomic<bool> stopping{false};
  // Certificate answers, handed over by the main loop.
  std::mutex answers_mu;
  std::vector<std::pair<uint64_t, Result<workloads::SvidPtr>>> answers;
  // The worker's own: the callbacks waiting for those answers.
  std::unordered_map<uint64_t, std::function<void(Result<workloads::SvidPtr>)>> waiting;
  uint64_t next_request = 1;
  // Work the main thread posted (Post), run on the worker's loop.
  std::mutex tasks_mu;
  std::vector<Task> tasks;
};

ProxyWorkers::ProxyWorkers(uv_loop_t* loop, StateLock& lock, Agent& agent, uint32_t workers)
    : loop_(loop),
      lock_(lock),
      agent_(agent),
      certificates_(agent.certificates()),
      workers_count_(workers) {}

ProxyWorkers::~ProxyWorkers() { Close(); }

Result<ProxyWorkersPtr> ProxyWorkers::Start(uv_loop_t* loop, StateLock& lock, Agent& agent,
                                            proxy::ProxyConfig config, uint32_t workers,
                                            proxy::Registry& registry) {
  ProxyWorkersPtr self(new ProxyWorkers(loop, lock, agent, workers));
  // One count per peer and per workload across every worker's core.
  if (!config.limits) config.limits = std::make_shared<proxy::ConnectionLimits>();
  if (workers > 0) {
    int rc = uv_async_init(loop, self->requests_wake_.get(), [](uv_async_t* handle) {
      static_cast<ProxyWorkers*>(handle->data)->ServeCertificateRequests();
    });
    if (rc != 0) {
      return MakeError(ErrorCode::kResourceExhausted,
                       std::string("cannot create the proxy workers' wakeup: ") + uv_strerror(rc));
    }
    self->requests_wake_->data = self.get();
  }
  for (uint32_t i = 0; i < std::max(workers, 1u); ++i) {
    proxy::ProxyConfig core_config = config;
    if (workers > 0) {
      // The first core binds (port 0: any free one); the others join it.
      core_config.SetPortSharing(i == 0 ? proxy::PortSharing::kReusePortFirst
                                        : proxy::PortSharing::kReusePortJoin);
      if (i > 0) {
        core_config.hbone.listen.port = self->hbone_port_;
        core_config.outbound.listen.port = self->outbound_port_;
      }
    }
    if (Status s = self->AddCore(core_config, registry); !s) return s.error();
  }
  for (auto& worker : self->workers_) {
    if (worker->own_loop) {
      worker->thread =
          std::thread([self = self.get(), worker = worker.get()] { self->Run(*worker); });
    }
  }
  return self;
}

Status ProxyWorkers::AddCore(const proxy::ProxyConfig& config, proxy::Registry& registry) {
  auto worker = std::make_unique<Worker>();
  Worker& w = *worker;
  w.loop = loop_;
  w.index = workers_.size();
  if (workers_count_ > 0) {
    w.own_loop = std::make_unique<proxy::UvLoop>();
    w.loop = w.own_loop->get();
    int rc = uv_async_init(w.loop, w.wake.get(), [](uv_async_t* handle) {
      Worker& worker = *static_cast<Worker*>(handle->data);
      DeliverAnswers(worker);
      RunTasks(worker);
    });
    if (rc != 0) {
      return MakeError(ErrorCode::kResourceExhausted,
                       std::string("cannot create a proxy worker's wakeup: ") + uv_strerror(rc));
    }
    w.wake->data = &w;
  }
  w.directory = std::make_unique<ProxyDirectory>(agent_, config.hbone.listen.port);
  if (workers_count_ > 0) {
    w.directory->set_certificate_source(
        [this, &w](const std::string& spiffe_id,
                   std::function<void(Result<workloads::SvidPtr>)> done) {
          AskMainLoop(w, spiffe_id, std::move(done));
        });
  }
  auto core = proxy::ProxyCore::Create(w.loop, *w.directory, config, registry);
  if (!core) return core.error();
  w.core = std::move(*core);
  w.directory->set_hbone_port(w.core->hbone_port());
  if (workers_.empty()) {
    hbone_port_ = w.core->hbone_port();
    outbound_port_ = w.core->outbound_port();
  }
  workers_.push_back(std::move(worker));
  return {};
}

// The worker thread: turns of its loop, holding the lock shared while
// callbacks run, until the main thread says stop; then it closes what its
// loop owns, on its loop, and runs the loop empty.
void ProxyWorkers::Run(Worker& worker) {
  // "proxy-0", ... in top -H and /proc/PID/task/TID/comm.
  pthread_setname_np(pthread_self(), ("proxy-" + std::to_string(worker.index)).c_str());
  // Signals (SIGTERM, SIGCHLD of supervised processes) are the main loop's.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  lock_.Lock(LockMode::kShared);
  while (!worker.stopping.load(std::memory_order_relaxed)) {
    RunLoopTurn(worker.loop, lock_, LockMode::kShared);
  }
  worker.core.reset();
  worker.directory.reset();
  worker.waiting.clear();
  worker.wake.Close();
  while (RunLoopTurn(worker.loop, lock_, LockMode::kShared) != 0) {
  }
  lock_.Unlock(LockMode::kShared);
}

void ProxyWorkers::Wake(Worker& worker) {
  if (worker.thread.joinable() && !worker.stopping.load(std::memory_order_relaxed)) {
    (void)uv_async_send(worker.wake.get());  // Always 0 on an initialised handle.
  }
}

void ProxyWorkers::AskMainLoop(Worker& worker, const std::string& spiffe_id,
                               std::function<void(Result<workloads::SvidPtr>)> done) {
  const uint64_t id = worker.next_request++;
  worker.waiting.emplace(id, std::move(done));
  {
    std::lock_guard<std::mutex> guard(requests_mu_);
    requests_.push_back(CertificateRequest{&worker, id, spiffe_id});
  }
  (void)uv_async_send(requests_wake_.get());  // Always 0 on an initialised handle.
}

void ProxyWorkers::ServeCertificateRequests() {
  std::vector<CertificateRequest> requests;
  {
    std::lock_guard<std::mutex> guard(requests_mu_);
    requests.swap(requests_);
  }
  for (CertificateRequest& request : requests) {
    Worker* worker = request.worker;
    if (worker->stopping.load(std::memory_order_relaxed)) continue;
    // May answer at once (a cached SVID) or later, from the issuer.
    certificates_.CertificateAsync(
        request.spiffe_id,
        [this, alive = alive_, worker, id = request.id](Result<workloads::SvidPtr> svid) {
          if (!*alive || worker->stopping.load(std::memory_order_relaxed)) return;
          {
            std::lock_guard<std::mutex> guard(worker->answers_mu);
            worker->answers.emplace_back(id, std::move(svid));
          }
          Wake(*worker);
        });
  }
}

void ProxyWorkers::DeliverAnswers(Worker& worker) {
  std::vector<std::pair<uint64_t, Result<workloads::SvidPtr>>> answers;
  {
    std::lock_guard<std::mutex> guard(worker.answers_mu);
    answers.swap(worker.answers);
  }
  for (auto& [id, svid] : answers) {
    auto it = worker.waiting.find(id);
    if (it == worker.waiting.end()) continue;
    auto done = std::move(it->second);
    worker.waiting.erase(it);
    done(std::move(svid));
  }
}

void ProxyWorkers::Post(Worker& worker, Task task) {
  if (!worker.own_loop) {  // --workers 0: the core is the main loop's
    task(*worker.core);
    return;
  }
  {
    std::lock_guard<std::mutex> guard(worker.tasks_mu);
    worker.tasks.push_back(std::move(task));
  }
  Wake(worker);
}

void ProxyWorkers::RunTasks(Worker& worker) {
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> guard(worker.tasks_mu);
    tasks.swap(worker.tasks);
  }
  for (Task& task : tasks) {
    if (worker.core) task(*worker.core);
  }
}

void ProxyWorkers::set_supervisor(const Supervisor* supervisor) {
  for (auto& worker : workers_) {
    if (worker->directory) worker->directory->set_supervisor(supervisor);
  }
}

void ProxyWorkers::set_cluster_view(const ClusterView* view) {
  for (auto& worker : workers_) {
    if (worker->directory) worker->directory->set_cluster_view(view);
  }
}

void ProxyWorkers::Invalidate() {
  for (auto& worker : workers_) {
    if (worker->directory) worker->directory->Invalidate();
  }
}

void ProxyWorkers::InvalidateNamespace(std::string_view ns) {
  for (auto& worker : workers_) {
    if (worker->directory) worker->directory->InvalidateNamespace(ns);
  }
}

void ProxyWorkers::CallParked(Worker& worker, const std::function<void(proxy::ProxyCore&)>& call) {
  // A parked worker's cached loop time may be minutes old: timers `call`
  // starts (lingering closes) must count from now.
  uv_update_time(worker.loop);
  call(*worker.core);
  Wake(worker);
}

Status ProxyWorkers::SyncPlaintextPorts(const proxy::PlaintextBindings& ports) {
  if (closed_) return MakeError(ErrorCode::kFailedPrecondition, "the proxy is closed");
  Status status;
  CallParked(*workers_[0],
             [&](proxy::ProxyCore& core) { status = core.SyncPlaintextPorts(ports); });
  // The others join only what the first one holds: a port it could not
  // bind is someone else's, and joining that one's SO_REUSEPORT group would
  // take its connections.
  const proxy::PlaintextBindings held = workers_[0]->core->plaintext_ports();
  for (size_t i = 1; i < workers_.size(); ++i) {
    CallParked(*workers_[i], [&](proxy::ProxyCore& core) {
      Status joined = core.SyncPlaintextPorts(held);
      if (status.ok() && !joined.ok()) status = joined;
    });
  }
  return status;
}

proxy::PlaintextBindings ProxyWorkers::PlaintextPorts() const {
  if (closed_) return {};
  return workers_[0]->core->plaintext_ports();
}

void ProxyWorkers::SyncSandboxListeners(const std::map<uint32_t, int>& listeners) {
  if (closed_) return;
  std::vector<std::map<uint32_t, int>> share(workers_.size());
  for (const auto& [address, fd] : listeners) share[address % workers_.size()][address] = fd;
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (share[i].empty() && workers_[i]->core->sandbox_listener_count() == 0) continue;
    CallParked(*workers_[i], [&](proxy::ProxyCore& core) {
      if (Status s = core.SyncSandboxListeners(share[i]); !s)
        proxy::Log(proxy::LogLevel::kWarning, "proxy",
                   "outbound entry in a sandbox: " + s.error().message);
    });
  }
}

void ProxyWorkers::CloseConnectionsFor(const std::vector<uint32_t>& replica_addresses) {
  if (closed_ || replica_addresses.empty()) return;
  auto sorted = std::make_shared<std::vector<uint32_t>>(replica_addresses);
  std::sort(sorted->begin(), sorted->end());
  for (auto& worker : workers_) {
    Post(*worker, [sorted](proxy::ProxyCore& core) { core.CloseConnectionsFor(*sorted); });
  }
}

proxy::ProxyStats ProxyWorkers::Stats() const {
  proxy::ProxyStats stats;
  if (closed_) return stats;
  stats = workers_[0]->core->Stats();
  for (size_t i = 1; i < workers_.size(); ++i) stats.Merge(workers_[i]->core->Stats());
  stats.workers = workers_count_;
  return stats;
}

void ProxyWorkers::Close() {
  if (closed_) return;
  closed_ = true;
  *alive_ = false;
  bool threads = false;
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) {
      worker->stopping.store(true, std::memory_order_relaxed);
      (void)uv_async_send(worker->wake.get());  // Always 0 on an initialised handle.
      threads = true;
    } else if (worker->core) {
      worker->core->Close();  // never started (Start failed) or on the main loop
    }
  }
  if (threads) {
    lock_.Unlock(LockMode::kExclusive);
    for (auto& worker : workers_) {
      if (worker->thread.joinable()) worker->thread.join();
    }
    lock_.Lock(LockMode::kExclusive);
  }
  requests_wake_.Close();
}

}  // namespace podless::runtime
