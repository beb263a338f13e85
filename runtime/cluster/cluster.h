// Cluster mode: many agents, one mesh, state in etcd (runtime/cluster/cluster_records.h
// has the key layout).
//
// Joining (before the node starts, Cluster::Join): the node takes a lease it
// keeps alive, claims its node name (a second live agent with the same name
// is refused), claims its workload range (a transaction, so two nodes never
// share one), and gets an intermediate CA signed by the cluster root.
//
// Running (Cluster::Start): the node publishes its workloads under its
// lease, so they vanish from every view when it dies; it follows the whole
// prefix (a consistent read, then a watch from that revision; after a
// compaction or a lost watch it reads again and resumes), keeping the other
// nodes' workloads in a ClusterView for routing and mirroring the
// cluster-wide objects (Services, AuthorizationPolicies) into its Agent,
// which persists them, so a node keeps routing on its last view while etcd
// is away. Lost etcd: retry with backoff (jittered, up to 5 s); when it
// returns, the node re-publishes its records and reads everything again.
//
// Services and AuthorizationPolicies are written to etcd first (Apply,
// Delete) and mirrored locally once etcd has them; while etcd is away they
// cannot change (UNAVAILABLE), so an acknowledged change is in etcd.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/base/metrics.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "runtime/cluster/cluster_records.h"
#include "runtime/cluster/cluster_view.h"
#include "runtime/etcd/etcd_client.h"
#include "runtime/etcd/etcd_kv.h"
#include "runtime/state/agent.h"
#include "runtime/state/config.h"

namespace podless::runtime {

class Cluster;
using ClusterPtr = std::unique_ptr<Cluster>;

// `podless ca init`: creates the cluster root in out_dir (ca.crt, and ca.key
// with mode 0600; an existing pair there is used instead) and publishes its
// certificate in etcd, and its key too with store_root_key — then any node
// can sign its own intermediate, at the price of the root key living in etcd
// (whoever reads etcd can mint identities). Without it, each node needs the
// root passed with --ca-cert/--ca-key on its first start. Running it again
// with the same root is a no-op; with another root it fails.
struct ClusterCaInit {
  std::vector<std::string> etcd_endpoints;
  EtcdTlsFiles etcd_tls;  // for https:// endpoints, as `podless run` takes them
  std::string etcd_prefix = "/podless/";
  std::string trust_domain = "cluster.local";
  std::string out_dir;
  bool store_root_key = false;
};
Status InitClusterCa(const ClusterCaInit& options);

class Cluster {
 public:
  // Joins before the node starts, running `loop` until done (every step is
  // bounded by the etcd client's timeouts). Sets config.node_cidr to the
  // claimed range and config.ca_cert/ca_key to this node's intermediate CA
  // (in the state dir). If etcd cannot be reached but this state dir joined
  // before, the node starts from what it recorded then and registers once
  // etcd answers.
  static Result<ClusterPtr> Join(uv_loop_t* loop, AgentConfig& config);
  // The same on the etcd `connect` returns, called once the state dir is
  // locked (Join above: an EtcdClient for config.cluster's flags; the unit
  // tests: an in-memory etcd, tests/runtime/fake_etcd.h).
  using EtcdConnector = std::function<Result<EtcdKvPtr>(uv_loop_t*, const AgentConfig&)>;
  static Result<ClusterPtr> Join(uv_loop_t* loop, AgentConfig& config,
                                 const EtcdConnector& connect);
  ~Cluster();

  // Follows the cluster with this node's agent. `on_view_change` runs after
  // other nodes' records changed (routing caches are dropped then).
  void Start(Agent& agent, proxy::Registry& metrics, std::function<void()> on_view_change);
  // Revokes the lease (this node leaves every view at once) within a bounded
  // time, then closes every etcd stream; `done` runs on the loop.
  void Shutdown(std::function<void()> done);

  using ChangesCallback = std::function<void(Result<std::vector<ObjectChange>>)>;
  // Applies `objects`: Services and AuthorizationPolicies go to etcd in one
  // transaction (new Services claim their VIP there), then into the agent;
  // workloads go to the agent. Validated first against the agent (dry run).
  void Apply(std::vector<workloads::Object> objects, bool dry_run, ChangesCallback done);
  void Delete(std::vector<workloads::ObjectKey> keys, bool ignore_not_found, ChangesCallback done);

  const ClusterView& view() const { return view_; }
  const std::string& node_name() const { return self_.name; }
  bool connected() const { return connected_; }
  // {"connected":..,"endpoint":..,"revision":..,"nodes":..,"last_error":..}
  std::string StatusJson() const;

 private:
  Cluster(uv_loop_t* loop, const AgentConfig& config);

  // Steps shared by Join and the background (re)connection.
  void ClaimNode(std::function<void(Status)> done);
  void Sync();
  void OnSynced(const etcdpb::RangeResponse& listing);
  void Disconnected(const Status& why);
  void ScheduleSync();
  void HandleEvent(const mvccpb::Event& event);
  void MirrorObject(const std::string& key, const std::string* value);

  // Publishing of this node's workload records.
  void MarkDirty(const workloads::ObjectKey& key);
  void Flush();
  std::string WorkloadValue(const StoredObject& stored) const;

  void CommitClusterObjects(std::vector<workloads::Object> objects,
                            std::vector<workloads::ObjectKey> deletes,
                            std::vector<uint32_t> excluded_vips, int attempt,
                            std::function<void(Status)> done);

  uv_loop_t* loop_;
  AgentConfig config_;
  ClusterKeys keys_;
  NodeRecord self_;
  EtcdKvPtr etcd_;
  int lock_fd_ = -1;
  Agent* agent_ = nullptr;
  std::function<void()> on_view_change_;
  ClusterView view_;

  int64_t lease_ = 0;
  bool connected_ = false;
  bool syncing_ = false;
  bool shutting_down_ = false;
  int64_t revision_ = 0;
  std::string last_error_;
  std::chrono::milliseconds backoff_{200};
  EtcdStreamPtr keepalive_;
  EtcdStreamPtr watch_;
  proxy::TimerPtr retry_timer_;
  uint64_t agent_watcher_ = 0;

  // Workload keys to write (or delete) in etcd, with a change counter so a
  // write in flight does not clear a newer change.
  std::map<workloads::ObjectKey, uint64_t> dirty_;
  uint64_t dirty_seq_ = 0;
  bool flushing_ = false;

  proxy::Gauge* connected_gauge_ = nullptr;
  proxy::Counter* errors_ = nullptr;
};

}  // namespace podless::runtime
