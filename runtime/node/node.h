// Node: the running agent's loop-bound services around the Agent's state —
// the admin server (/healthz, /ready, /metrics, /config_dump), the metrics
// registry, and the proxy (its worker threads). The API layer adds the gRPC
// server on top.
//
// The node's thread holds the StateLock from Start() on and runs its loop
// with RunLoopTurn(), which lets the proxy's workers in while it waits.
//
// Start() binds everything or fails with the address/path that could not be
// bound; Shutdown() closes every socket the node opened so the loop ends.
#pragma once

#include <uv.h>

#include <memory>
#include <set>

#include "proxy/base/metrics.h"
#include "proxy/proxy_core.h"
#include "runtime/cluster/cluster.h"
#include "runtime/identity/certificate_issuer.h"
#include "runtime/node/admin_server.h"
#include "runtime/node/plaintext_ports.h"
#include "runtime/node/proxy_workers.h"
#include "runtime/process/supervisor.h"
#include "runtime/state/agent.h"
#include "runtime/state/config.h"
#include "runtime/state/state_lock.h"

namespace podless::runtime {

class Node;
using NodePtr = std::unique_ptr<Node>;

class Node {
 public:
  // Loads the state (Agent::Open) and binds the admin server. In cluster
  // mode `cluster` is the joined cluster (Cluster::Join); the node follows it.
  static Result<NodePtr> Start(uv_loop_t* loop, const AgentConfig& config,
                               ClusterPtr cluster = nullptr);
  ~Node();

  Agent& agent() { return *agent_; }
  proxy::Registry& metrics() { return *metrics_; }
  uv_loop_t* loop() const { return loop_; }
  uint16_t admin_port() const { return admin_->port(); }
  ProxyWorkers& proxy() { return *proxy_; }
  // One turn of the node's loop (uv_run(UV_RUN_ONCE) with the state shared
  // with the proxy's workers while it waits); 0 once the loop is empty.
  int RunLoopTurn() { return runtime::RunLoopTurn(loop_, state_lock_, LockMode::kExclusive); }
  // Runs the processes of `exec` workloads (see runtime/process/supervisor.h).
  Supervisor& supervisor() { return *supervisor_; }
  // Null unless the node runs in cluster mode.
  Cluster* cluster() { return cluster_.get(); }
  // The SPIFFE Workload API socket handed to processes (SPIFFE_ENDPOINT_SOCKET).
  std::string WorkloadApiSocketPath() const { return config_.state_dir + "/workload-api.sock"; }
  // True once Shutdown() was called and every supervised process has exited
  // (they get their grace period; the caller keeps running the loop).
  bool processes_stopped() const { return processes_stopped_ && cluster_stopped_; }

  // /ready answers 200 from now on.
  void SetReady() { ready_ = true; }
  // Closes every listener and connection the node owns.
  void Shutdown();

 private:
  Node(uv_loop_t* loop, const AgentConfig& config);
  Status Init();
  void AddAdminRoutes();
  void RegisterMetrics();
  Status StartProxy();
  // Keeps the proxy in step with the agent's objects: the plaintext
  // listeners follow the declared ports, and connections of replicas that
  // are gone are ended.
  void OnObjectChange(WatchEventType type, const StoredObject& object);
  void SyncPorts();
  // Hands the supervisor the exec replicas the agent holds now.
  void SyncProcesses();
  Status StartSupervisor();

  uv_loop_t* loop_;
  AgentConfig config_;
  // Held exclusively by this thread except while RunLoopTurn waits;
  // declared first, so it outlives the workers.
  StateLock state_lock_;
  proxy::RegistryPtr metrics_;
  AgentPtr agent_;
  // Issues SVIDs on worker threads for the agent; destroyed before it.
  std::unique_ptr<CertificateIssuer> issuer_;
  std::unique_ptr<AdminServer> admin_;
  // The supervisor's sandbox: workload uids (a root agent) and cgroups
  // (where cgroup v2 is writable); declared before it.
  std::unique_ptr<UidAllocator> uids_;
  std::unique_ptr<CgroupTree> cgroups_;
  // Declared before the proxy, which points to it.
  SupervisorPtr supervisor_;
  bool processes_stopped_ = false;
  ProxyWorkersPtr proxy_;
  // Which sockets serve the plaintext ports; retries those that are taken.
  std::unique_ptr<PlaintextPorts> plaintext_ports_;
  // Declared after the agent and the directory: destroyed first.
  ClusterPtr cluster_;
  bool cluster_stopping_ = false;
  bool cluster_stopped_ = true;
  uint64_t watcher_ = 0;
  // The agent's port set as of the last SyncPorts (Agent::port_set_changes).
  uint64_t ports_synced_at_ = 0;
  // The exec workloads, whose replicas are supervised processes: a change
  // that involves one (before or after) rebuilds the supervisor's set.
  std::set<workloads::ObjectKey> exec_workloads_;
  bool ready_ = false;
  uint64_t config_dump_next_ms_ = 0;  // /config_dump's duty cycle (AddAdminRoutes)
};

}  // namespace podless::runtime
