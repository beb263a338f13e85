// ProxyWorkers: the node's proxy. With --workers 0 it is one ProxyCore on
// the main loop. With --workers N it is N threads, each running its own
// libuv loop with its own ProxyCore (HBONE server, outbound entry, plaintext
// listeners, HBONE client pool, connection trackers) and ProxyDirectory.
// Their listeners share the ports (SO_REUSEPORT), so the kernel spreads new
// connections over the workers; a connection stays on the worker that
// accepted it, and each worker pools its own HBONE client connections.
//
// Sharing the agent's state (runtime/state/state_lock.h): a worker runs its
// callbacks holding the StateLock shared; the main thread holds it
// exclusively except while it waits for events. So
//   - workers read the Agent through their directories only while the main
//     loop is parked, as the single-loop proxy did between callbacks;
//   - the main thread posts work to a worker's loop (ending a removed
//     replica's connections) and goes on; the few calls whose answer it
//     needs at once (ports, sandbox listeners, stats) it makes while that
//     worker is parked, and then wakes it, so the worker's loop picks up new
//     handles and timers;
//   - the main thread prepares and writes a change with the lock released
//     (Agent::ShareReadsWith), so the workers never wait for the disk;
//   - certificates are asked of the main loop, which owns the SVID cache and
//     the issuer, and each answer is handed back to the asking worker's loop.
// The workers count into the shared Registry (atomic series) and share the
// per-peer and per-workload connection limits.
//
//   auto proxy = ProxyWorkers::Start(loop, lock, agent, config, 2, registry);
//   proxy->SyncPlaintextPorts({{0, 8080}});   // main thread, holding the lock
//   proxy->Close();                      // ends the connections, joins the threads
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "proxy/base/metrics.h"
#include "proxy/base/uv_handle.h"
#include "proxy/proxy_core.h"
#include "runtime/cluster/cluster_view.h"
#include "runtime/node/proxy_directory.h"
#include "runtime/process/supervisor.h"
#include "runtime/state/agent.h"
#include "runtime/state/state_lock.h"

namespace podless::runtime {

class ProxyWorkers {
 public:
  // Every call, this one included, is made on the main thread holding
  // `lock` exclusively. `workers` 0: the proxy runs on `loop`.
  static Result<std::unique_ptr<ProxyWorkers>> Start(uv_loop_t* loop, StateLock& lock, Agent& agent,
                                                     proxy::ProxyConfig config, uint32_t workers,
                                                     proxy::Registry& registry);
  ~ProxyWorkers();
  ProxyWorkers(const ProxyWorkers&) = delete;
  ProxyWorkers& operator=(const ProxyWorkers&) = delete;

  void set_supervisor(const Supervisor* supervisor);
  void set_cluster_view(const ClusterView* view);
  // After a change of the cluster view (every namespace), or of one of the
  // agent's objects (its namespace's; ProxyDirectory::InvalidateNamespace).
  void Invalidate();
  void InvalidateNamespace(std::string_view ns);

  Status SyncPlaintextPorts(const proxy::PlaintextBindings& ports);
  // The plaintext bindings served (the first worker's; the others join those).
  proxy::PlaintextBindings PlaintextPorts() const;
  // The outbound entry's listeners inside sandboxed replicas' namespaces (by
  // replica address): each is served by one worker, chosen by its address.
  void SyncSandboxListeners(const std::map<uint32_t, int>& listeners);
  // Posted to every worker's loop (the main thread does not wait).
  void CloseConnectionsFor(const std::vector<uint32_t>& replica_addresses);
  // Every core's figures added up.
  proxy::ProxyStats Stats() const;
  uint16_t hbone_port() const { return hbone_port_; }
  uint16_t outbound_port() const { return outbound_port_; }
  uint32_t workers() const { return workers_count_; }

  // Ends every connection and joins the worker threads (the lock is
  // released meanwhile, so they can finish). Idempotent.
  void Close();

 private:
  struct Worker;
  struct CertificateRequest {
    Worker* worker;
    uint64_t id;
    std::string spiffe_id;
  };

  ProxyWorkers(uv_loop_t* loop, StateLock& lock, Agent& agent, uint32_t workers);
  Status AddCore(const proxy::ProxyConfig& config, proxy::Registry& registry);
  void Run(Worker& worker);
  void Wake(Worker& worker);
  // Main thread, the worker parked: `call` on its core with its loop's
  // clock brought to now, then the worker woken to see what `call` started.
  // Only for the rare calls whose answer the caller needs at once (ports,
  // sandbox listeners whose descriptors the supervisor owns); anything else
  // is posted.
  void CallParked(Worker& worker, const std::function<void(proxy::ProxyCore&)>& call);
  // Main thread: `task` runs on the worker's loop, in one of its turns, with
  // whatever it captured (by value: the main thread goes on at once).
  using Task = std::function<void(proxy::ProxyCore&)>;
  void Post(Worker& worker, Task task);
  // Worker side: run the posted tasks.
  static void RunTasks(Worker& worker);
  // Worker side: queue a certificate request for the main loop.
  void AskMainLoop(Worker& worker, const std::string& spiffe_id,
                   std::function<void(Result<workloads::SvidPtr>)> done);
  // Main side: issue the queued requests through the agent.
  void ServeCertificateRequests();
  // Worker side: run the callbacks of the answers that came back.
  static void DeliverAnswers(Worker& worker);

  uv_loop_t* loop_;
  StateLock& lock_;
  Agent& agent_;
  CertificateManager& certificates_;  // the agent's; SVIDs for the workers' handshakes
  uint32_t workers_count_;
  uint16_t hbone_port_ = 0;
  uint16_t outbound_port_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool closed_ = false;
  // Certificate requests from the workers, served on the main loop.
  proxy::AsyncHandle requests_wake_;
  std::mutex requests_mu_;
  std::vector<CertificateRequest> requests_;
  // Answers the issuer delivers after Close() find this false.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

using ProxyWorkersPtr = std::unique_ptr<ProxyWorkers>;

}  // namespace podless::runtime
