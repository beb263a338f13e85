// The node agent's state and the operations on it: apply, delete, register,
// list, watch; its SVIDs are issued, cached and refreshed by its
// CertificateManager (certificates()). Everything runs on the agent's libuv
// loop; the API layer (api/) and the admin server call in on that loop.
//
// An operation is all or nothing: addresses are allocated, the change is
// committed to the state log (fsync), and only then is memory updated and
// are watchers told. A failed commit leaves the agent exactly as before.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/identity/certificate_manager.h"
#include "runtime/state/config.h"
#include "runtime/state/label_index.h"
#include "runtime/state/replica_index.h"
#include "runtime/state/state_lock.h"
#include "runtime/state/state_store.h"
#include "workloads/certificate_authority.h"
#include "workloads/ipam.h"
#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::runtime {

struct ObjectChange {
  workloads::ObjectKey key;
  std::string action;  // "created", "configured", "unchanged", "deleted"
  // What this node cannot give the object as asked, though it accepts it
  // (ExecAdmission); `apply` prints each as a warning.
  std::vector<std::string> warnings;
};

// Whether this node can run an exec app as its manifest asks (the
// supervisor's CheckEnforceable): an error refuses the apply, warnings are
// reported with the change.
using ExecAdmission =
    std::function<Status(const workloads::ExecApp& app, std::vector<std::string>* warnings)>;

enum class WatchEventType { kAdded, kModified, kDeleted };
using WatchCallback = std::function<void(WatchEventType, const StoredObject&)>;

// What `status` shows of one replica.
struct ReplicaView {
  std::string name;  // <workload>-<ordinal>
  uint32_t ordinal = 0;
  uint32_t address = 0;
  std::string spiffe_id;
  workloads::SvidPtr certificate;  // null until first use
  bool ready = true;
  // `exec` workloads only: the supervised process (see runtime/process/supervisor.h).
  std::string process_state;   // "Running", "Waiting", "Terminating"; empty: no process
  std::string process_reason;  // "CrashLoopBackOff", "Completed", ...
  uint32_t restarts = 0;
  std::string last_exit;  // "exit code 1", "signal 9 (Killed)"
  int64_t pid = 0;
  // Unix seconds: since when it runs as it is. An exec replica's current
  // process start; else the workload's creation by this agent, or the
  // agent's start for a workload older than that.
  int64_t started_at = 0;
  // Declared ports not served in plaintext on this replica's address now
  // (another program holds them; retried; set by the Node).
  std::vector<uint16_t> unserved_ports;
  // `exec` workloads: each container's process, the app's own command first
  // (the fields above sum them up).
  struct Container {
    std::string name;
    std::string state;
    std::string reason;
    bool ready = false;
    uint32_t restarts = 0;
    std::string last_exit;
    int64_t started_at = 0;
    int64_t pid = 0;
  };
  std::vector<Container> containers;
};

class Agent;
using AgentPtr = std::unique_ptr<Agent>;

// What a workload's process (or anyone holding them) presents to the
// outbound entry to speak as that replica.
struct ProxyCredentials {
  std::string user;      // "<replica>.<namespace>", e.g. "web-0.shop"
  std::string password;  // HMAC-SHA256(workload secret, user), hex
};

class Agent {
 public:
  // Opens the state dir (lock, state log, CA) and rebuilds the indexes.
  static Result<AgentPtr> Open(const AgentConfig& config);
  ~Agent();

  const AgentConfig& config() const { return config_; }
  const workloads::CertificateAuthority& ca() const { return *ca_; }
  // The SVIDs of this agent's CA: issuance, cache, refresh (see
  // runtime/identity/certificate_manager.h). Replicas() shows what it has cached.
  CertificateManager& certificates() { return *certificates_; }
  const CertificateManager& certificates() const { return *certificates_; }

  // Creates or updates every object in one durable step ("unchanged" ones
  // are not rewritten). With dry_run nothing is written or allocated.
  // RESOURCE_EXHAUSTED, with nothing changed, for a change over a limit of
  // config().limits (checked before anything is allocated) and when memory
  // runs out before the commit; Apply, Register and Delete never throw (see
  // agent.cc, ApplyObjects, for what an allocation failure can and cannot do).
  Result<std::vector<ObjectChange>> Apply(std::vector<workloads::Object> objects, bool dry_run);
  // Deletes the objects named; NOT_FOUND for a missing one unless
  // ignore_not_found (then reported as "unchanged").
  Result<std::vector<ObjectChange>> Delete(const std::vector<workloads::ObjectKey>& keys,
                                           bool ignore_not_found);
  // Cluster mode: makes the cluster-wide objects named match the cluster's
  // version (etcd), in one durable step. `vip` is the Service VIP the cluster
  // assigned (0 for policies). Objects equal to what is stored are skipped.
  struct MirroredObject {
    workloads::Object object;
    uint32_t vip = 0;
  };
  Status Mirror(std::vector<MirroredObject> puts, std::vector<workloads::ObjectKey> deletes);
  // A Service VIP no local Service holds and not in `exclude`, without
  // taking it (the cluster claims it in etcd first).
  Result<uint32_t> ProposeVip(const std::vector<uint32_t>& exclude);

  // The lock the proxy's workers read the agent's tables under (held
  // exclusively by the caller of every method). A change is prepared and
  // written to disk with it released, so the workers never wait for the
  // disk; it is taken back only to publish the change (see ApplyObjects).
  // Null (the default): no other thread reads.
  void ShareReadsWith(StateLock* lock) { readers_lock_ = lock; }

  // Checked for every exec workload of an apply or registration before
  // anything changes (unset: every one is accepted).
  void SetExecAdmission(ExecAdmission admission) { exec_admission_ = std::move(admission); }

  // Creates workloads that must not exist yet (ALREADY_EXISTS otherwise).
  Status Register(std::vector<workloads::Workload> workloads);

  const StoredObject* Find(const workloads::ObjectKey& key) const;
  // Every object of a kind, in (namespace, name) order; ns empty = all.
  std::vector<const StoredObject*> List(workloads::Kind kind, const std::string& ns) const;
  // Whether any object of any kind is in `ns` (O(log n)).
  bool HasNamespace(const std::string& ns) const;
  std::vector<ReplicaView> Replicas(const StoredObject& workload) const;
  // Replicas `first` .. `first + count - 1` (fewer at the end).
  std::vector<ReplicaView> Replicas(const StoredObject& workload, uint32_t first,
                                    uint32_t count) const;
  // A service's endpoints: addresses of the replicas its selector matches.
  std::vector<uint32_t> ServiceEndpoints(const workloads::Service& service) const;
  // The workloads of `ns` a selector selects (none for an empty one), by
  // name; costs the shortest label list the selector names.
  std::vector<const StoredObject*> SelectWorkloads(const std::string& ns,
                                                   const workloads::Labels& selector) const {
    return labels_.Select(ns, selector);
  }

  // The WorkloadEntries of `ns` a selector selects (none for an empty one),
  // by name. A scan of the namespace's entries: they are few (VMs, outside
  // hosts), and the proxy keeps each Service's selection until a change.
  std::vector<const StoredObject*> SelectEntries(const std::string& ns,
                                                 const workloads::Labels& selector) const;
  std::string SpiffeIdFor(const workloads::WorkloadEntry& entry) const;

  // The replica at a node address, or null.
  std::optional<ReplicaRef> FindReplica(uint32_t address) const { return replicas_.Find(address); }
  // Finds "<workload>-<ordinal>" (or a bare workload name: replica 0).
  Result<ReplicaRef> FindReplicaByName(const std::string& ns, const std::string& replica) const;
  // The Service whose VIP this is, or null.
  const StoredObject* FindServiceByVip(uint32_t vip) const;
  std::string SpiffeIdFor(const workloads::Workload& workload) const;

  // Outbound-entry credentials of a replica; the password derives from the
  // workload's persisted secret, so it survives restarts and dies with the
  // workload (a re-created workload gets a new secret).
  ProxyCredentials CredentialsFor(const ReplicaRef& replica) const;
  // The replica these credentials belong to, or null (constant-time check).
  std::optional<ReplicaRef> Authenticate(std::string_view user, std::string_view password) const;

  // The SPIFFE ID of "<workload>-<ordinal>" in `ns` (see FindReplicaByName),
  // the identity to ask certificates() for.
  Result<std::string> SpiffeIdOfReplica(const std::string& ns, const std::string& replica) const;

  // Readiness of the replicas of `exec` workloads, as their supervisor
  // reports it (readiness probes); it gates Service endpoints. Such a replica
  // is not ready until reported; every other replica is always ready. Kept in
  // memory only, and watchers are not told (readiness is not an object
  // change): status watchers are.
  void SetReplicaReady(uint32_t address, bool ready);
  bool IsReplicaReady(const workloads::Workload& workload, uint32_t address) const;
  // Told after every readiness change (the cluster republishes the workload).
  void OnReadinessChange(std::function<void(uint32_t address)> callback) {
    on_readiness_change_ = std::move(callback);
  }
  // Fills the process_* fields of an exec replica's view (set by the Node
  // from its supervisor).
  void SetProcessStatusSource(std::function<void(ReplicaView&)> source) {
    process_status_ = std::move(source);
  }
  // Fills unserved_ports of every replica's view (set by the Node).
  void SetPortStatusSource(
      std::function<void(ReplicaView&, const std::vector<workloads::PortSpec>&)> source) {
    port_status_ = std::move(source);
  }

  uint64_t AddWatcher(WatchCallback callback);
  void RemoveWatcher(uint64_t id);
  // Told of the workload whose replica's readiness changed (its status, not
  // the object: the Kubernetes API's watch shows its pods MODIFIED).
  using StatusCallback = std::function<void(const StoredObject& workload)>;
  uint64_t AddStatusWatcher(StatusCallback callback);
  void RemoveStatusWatcher(uint64_t id);

  // The ports the workloads declare, each with the number of workloads that
  // declare it; kept with the indexes, so a change costs O(change).
  const std::map<uint16_t, size_t>& port_users() const { return port_users_; }
  // Counts the changes of the set of ports above (a port gaining its first or
  // losing its last workload), so a follower syncs only when it may differ.
  uint64_t port_set_changes() const { return port_set_changes_; }
  // Told of the replica addresses a change took away (a workload scaled
  // down or deleted), all of one change in one call, once the change is
  // published (after the watchers), with the lock of ShareReadsWith
  // released: the callback may take its time, and must not change what the
  // workers read (it hands them work instead).
  using AddressesCallback = std::function<void(const std::vector<uint32_t>& addresses)>;
  void OnReplicasRemoved(AddressesCallback callback) { on_replicas_removed_ = std::move(callback); }

  // The revision of the last change: every commit (an apply, a register, a
  // delete, a mirrored change) takes the next number, and each object it
  // writes keeps it (StoredObject::generation), like etcd's mod revision.
  // After a restart it continues from the largest stored one; the number of
  // a delete-only change that came last before the restart is given again.
  uint64_t revision() const { return revision_; }

  size_t workload_count() const;
  uint64_t replica_count() const { return replicas_.size(); }
  // Unix seconds at which this agent started.
  int64_t started_at() const { return started_at_; }
  // `extra` sections are added verbatim (name, JSON value), e.g. the proxy's.
  std::string ConfigDumpJson(
      const std::vector<std::pair<std::string, std::string>>& extra = {}) const;
  // The same JSON piece by piece, for the admin server's streamed response:
  // each call of the returned function appends about `budget` bytes and
  // returns false after the last piece. Objects are read at each call, so a
  // dump taken while they change shows each workload as it was when its
  // piece was written (a million replicas never sit in memory at once, and
  // no call holds the loop for long). The Agent must outlive the function.
  std::function<bool(std::string*)> StreamConfigDump(
      std::vector<std::pair<std::string, std::string>> extra, size_t budget = 256 << 10) const;

 private:
  explicit Agent(const AgentConfig& config);
  Status Load();
  void IndexObject(const StoredObject& object);
  void UnindexObject(const StoredObject& object);
  void Notify(WatchEventType type, const StoredObject& object);
  // Apply, and Register with `create_only` (an object that exists already is
  // ALREADY_EXISTS rather than updated; nothing changes then).
  Result<std::vector<ObjectChange>> ApplyObjects(std::vector<workloads::Object> objects,
                                                 bool dry_run, bool create_only);
  // Admission control: RESOURCE_EXHAUSTED naming the limit when `objects`
  // would take the agent past one of config().limits. Fills the stored
  // version of each object (or null) and how many addresses the change takes.
  Status CheckForwardTarget(const std::string& address) const;
  void WarnOfUnservedTargetPorts(const std::vector<workloads::Object>& objects,
                                 std::vector<std::vector<std::string>>* warnings) const;
  void WarnOfTcpHttpRules(const std::vector<workloads::Object>& objects,
                          std::vector<std::vector<std::string>>* warnings) const;
  std::vector<const workloads::Workload*> PolicySelection(
      const workloads::AuthorizationPolicy& policy,
      const std::map<workloads::ObjectKey, const workloads::Workload*>& applied) const;
  Status Admit(const std::vector<workloads::Object>& objects,
               std::vector<const StoredObject*>* existing_versions, uint64_t* addresses,
               std::vector<std::vector<std::string>>* warnings) const;

  AgentConfig config_;
  ExecAdmission exec_admission_;
  StateStorePtr store_;
  workloads::CertificateAuthorityPtr ca_;
  CertificateManagerPtr certificates_;  // issues with *ca_; made once it is loaded
  std::unique_ptr<workloads::AddressPool> node_pool_;
  std::unique_ptr<workloads::AddressPool> service_pool_;

  // The live objects are the state store's (StateStore::objects()); the
  // indexes below point into it and are updated after every commit.
  ReplicaIndex replicas_;
  LabelIndex labels_;  // workloads by label, for Service selectors
  std::unordered_map<uint32_t, const StoredObject*> service_by_vip_;
  int64_t started_at_ = 0;  // unix seconds

  std::unordered_set<uint32_t> ready_exec_replicas_;  // see SetReplicaReady
  std::function<void(ReplicaView&)> process_status_;
  std::function<void(ReplicaView&, const std::vector<workloads::PortSpec>&)> port_status_;
  std::function<void(uint32_t)> on_readiness_change_;
  std::map<uint16_t, size_t> port_users_;  // see port_users()
  uint64_t port_set_changes_ = 0;
  uint64_t revision_ = 0;
  AddressesCallback on_replicas_removed_;
  StateLock* readers_lock_ = nullptr;
  std::map<uint64_t, WatchCallback> watchers_;
  std::map<uint64_t, StatusCallback> status_watchers_;  // ids from next_watcher_id_
  uint64_t next_watcher_id_ = 1;
};

}  // namespace podless::runtime
