// The runtime's answer to proxy::Directory: the proxy core's window onto the
// Agent's tables (replicas by address, certificates, policies, services,
// outbound credentials). Each proxy loop has its own (ProxyWorkers); a
// worker's reads the Agent only while holding the StateLock shared.
#pragma once

#include <openssl/x509.h>

#include <unordered_map>

#include "proxy/directory.h"
#include "runtime/cluster/cluster_view.h"
#include "runtime/process/supervisor.h"
#include "runtime/state/agent.h"

namespace podless::runtime {

// The DNS suffix of Service names: NAME.NS.svc.cluster.local.
inline constexpr char kClusterDomain[] = "cluster.local";

class ProxyDirectory final : public proxy::Directory {
 public:
  // `hbone_port`: where this node serves HBONE (endpoints of local replicas
  // name it when the short-circuit is off).
  ProxyDirectory(Agent& agent, uint16_t hbone_port);

  // Drops cached LocalReplica records; call after every change of the
  // agent's objects (the proxy never keeps them past a callback).
  // (clear() of an empty table still sweeps its buckets, once per change.)
  void Invalidate() {
    if (!replicas_.empty()) replicas_.clear();
    if (!selections_.empty()) selections_.clear();
    DropEntryIndex();
  }
  // The same after a change of one object of namespace `ns`: a Service
  // selects only in its own namespace, so the other namespaces' selections
  // stay (a busy tenant does not make every Service rescan).
  void InvalidateNamespace(std::string_view ns);
  // Services whose selection is kept (tests, diagnostics).
  size_t cached_selections() const { return selections_.size(); }
  void set_hbone_port(uint16_t port) { hbone_port_ = port; }
  // The supervisor of exec workloads (ExecTarget); null: none.
  void set_supervisor(const Supervisor* supervisor) { supervisor_ = supervisor; }
  // Cluster mode: other nodes' workloads, reached over HBONE (null: none).
  void set_cluster_view(const ClusterView* view) { cluster_ = view; }
  // Where certificates come from when this directory serves a worker loop:
  // the Agent's CertificateManager (SVID cache and issuer) belongs to the
  // main loop, so a worker asks it (the answer comes back on the worker's
  // loop). Unset: the CertificateManager, on this (the main) loop.
  using CertificateSource = std::function<void(
      const std::string& spiffe_id, std::function<void(Result<workloads::SvidPtr>)> done)>;
  void set_certificate_source(CertificateSource source) { certificate_source_ = std::move(source); }

  // proxy::Directory
  const proxy::LocalReplica* FindLocalReplica(uint32_t address) const override;
  void CertificateAsync(const proxy::LocalReplica& replica,
                        std::function<void(Result<workloads::SvidPtr>)> done) override;
  X509_STORE* TrustStore() const override { return trust_.get(); }
  const std::string& TrustDomain() const override;
  std::string_view RootNamespace() const override;
  bool PlaintextAllowed(const proxy::LocalReplica& replica, uint16_t port) const override;
  std::vector<const workloads::AuthorizationPolicy*> PoliciesFor(
      const proxy::LocalReplica& replica) const override;
  const proxy::LocalReplica* Authenticate(std::string_view user,
                                          std::string_view password) const override;
  Result<proxy::Destination> Resolve(std::string_view host, uint16_t port) override;
  Result<proxy::ProcessTarget> ExecTarget(const proxy::LocalReplica& replica,
                                          uint16_t port) const override;

 private:
  const proxy::LocalReplica* Materialize(const ReplicaRef& ref, uint32_t address) const;
  Result<proxy::Destination> ResolveService(const StoredObject& service, uint16_t port) const;
  class SelectedEndpoints;  // a Service's ready endpoints, by index

  // A WorkloadEntry: always HBONE, to its address and annotated HBONE port,
  // expecting its service account's identity.
  proxy::Endpoint EntryEndpoint(const workloads::WorkloadEntry& entry, uint16_t port) const;
  // The WorkloadEntry at `address`, or null; indexed on first use after a
  // change (entries are few: VMs and outside hosts).
  const workloads::WorkloadEntry* FindEntry(uint32_t address) const;
  void DropEntryIndex() {
    if (!entries_by_address_.empty()) entries_by_address_.clear();
    entries_indexed_ = false;
  }

  proxy::Endpoint LocalEndpoint(const workloads::Workload& workload, uint32_t address,
                                uint16_t port) const;
  // An endpoint on another node: always HBONE, to that node's HBONE port.
  proxy::Endpoint RemoteEndpoint(const RemoteWorkload& workload, uint32_t ordinal,
                                 uint16_t port) const;

  Agent& agent_;
  CertificateManager& certificates_;  // the agent's
  uint16_t hbone_port_;
  const Supervisor* supervisor_ = nullptr;
  const ClusterView* cluster_ = nullptr;
  CertificateSource certificate_source_;
  bssl::UniquePtr<X509_STORE> trust_;
  // LocalReplica records built on demand from the agent's compact tables.
  mutable std::unordered_map<uint32_t, proxy::LocalReplica> replicas_;
  // The workloads each resolved Service selects, here and (cluster mode) on
  // other nodes, by the Service's stored object; dropped with every change
  // in its namespace (InvalidateNamespace) or of the cluster view
  // (Invalidate): a namespace of a million workloads is scanned on the first
  // connection after a change, not on every connection.
  struct Selected {
    std::string ns;  // the Service's (its key may point to a freed version)
    std::vector<const StoredObject*> local;
    std::vector<const RemoteWorkload*> remote;
    std::vector<const StoredObject*> entries;  // WorkloadEntries
  };
  mutable std::unordered_map<const StoredObject*, Selected> selections_;
  const Selected& Selection(const StoredObject& service) const;
  mutable std::unordered_map<uint32_t, const workloads::WorkloadEntry*> entries_by_address_;
  mutable bool entries_indexed_ = false;
};

}  // namespace podless::runtime
