#include "runtime/node/proxy_directory.h"

#include <algorithm>
#include <optional>

#include "proxy/authorization.h"
#include "workloads/ipam.h"

namespace podless::runtime {
namespace {

using workloads::Kind;

using workloads::TargetPortOf;

}  // namespace

ProxyDirectory::ProxyDirectory(Agent& agent, uint16_t hbone_port)
    : agent_(agent),
      certificates_(agent.certificates()),
      hbone_port_(hbone_port),
      trust_(agent.ca().NewTrustStore()) {}

proxy::Endpoint ProxyDirectory::LocalEndpoint(const workloads::Workload& workload, uint32_t address,
                                              uint16_t port) const {
  proxy::Endpoint endpoint;
  endpoint.address = address;
  endpoint.port = port;
  endpoint.spiffe_id = agent_.SpiffeIdFor(workload);
  endpoint.workload = workload.metadata.name;
  endpoint.ns = workload.metadata.ns;
  endpoint.local = agent_.config().local_short_circuit;
  endpoint.hbone_port = hbone_port_;
  return endpoint;
}

proxy::Endpoint ProxyDirectory::EntryEndpoint(const workloads::WorkloadEntry& entry,
                                              uint16_t port) const {
  proxy::Endpoint endpoint;
  if (auto address = workloads::ParseIpv4(entry.address); address.ok()) endpoint.address = *address;
  endpoint.port = port;
  endpoint.spiffe_id = agent_.SpiffeIdFor(entry);
  endpoint.workload = entry.metadata.name;
  endpoint.ns = entry.metadata.ns;
  endpoint.local = false;
  endpoint.hbone_port = entry.hbone_port;
  return endpoint;
}

const workloads::WorkloadEntry* ProxyDirectory::FindEntry(uint32_t address) const {
  if (!entries_indexed_) {
    for (const StoredObject* stored : agent_.List(Kind::kWorkloadEntry, "")) {
      const auto& entry = std::get<workloads::WorkloadEntry>(stored->object);
      if (auto parsed = workloads::ParseIpv4(entry.address); parsed.ok()) {
        entries_by_address_.try_emplace(*parsed, &entry);  // the first by namespace and name
      }
    }
    entries_indexed_ = true;
  }
  auto it = entries_by_address_.find(address);
  return it != entries_by_address_.end() ? it->second : nullptr;
}

proxy::Endpoint ProxyDirectory::RemoteEndpoint(const RemoteWorkload& remote, uint32_t ordinal,
                                               uint16_t port) const {
  const workloads::Workload& workload = remote.record.workload;
  proxy::Endpoint endpoint;
  endpoint.address = remote.record.addresses[ordinal];
  endpoint.port = port;
  endpoint.spiffe_id = agent_.SpiffeIdFor(workload);
  endpoint.workload = workload.metadata.name;
  endpoint.ns = workload.metadata.ns;
  endpoint.local = false;
  const NodeRecord* node = cluster_->FindNode(remote.record.node);
  endpoint.hbone_port = node != nullptr ? node->hbone_port : hbone_port_;
  return endpoint;
}

Result<proxy::ProcessTarget> ProxyDirectory::ExecTarget(const proxy::LocalReplica& replica,
                                                        uint16_t port) const {
  if (supervisor_ != nullptr) {
    if (auto target = supervisor_->Target(replica.address, port)) return *target;
  }
  return proxy::Directory::ExecTarget(replica, port);
}

const std::string& ProxyDirectory::TrustDomain() const { return agent_.config().trust_domain; }

const proxy::LocalReplica* ProxyDirectory::Materialize(const ReplicaRef& ref,
                                                       uint32_t address) const {
  auto [it, inserted] = replicas_.try_emplace(address);
  if (inserted) {
    const auto& workload = std::get<workloads::Workload>(ref.workload->object);
    proxy::LocalReplica& replica = it->second;
    replica.address = address;
    replica.name = workload.metadata.name + "-" + std::to_string(ref.ordinal);
    replica.workload = workload.metadata.name;
    replica.ns = workload.metadata.ns;
    replica.spiffe_id = agent_.SpiffeIdFor(workload);
    replica.spec = &workload.spec;
    replica.labels = &workload.metadata.labels;
  }
  return &it->second;
}

const proxy::LocalReplica* ProxyDirectory::FindLocalReplica(uint32_t address) const {
  std::optional<ReplicaRef> ref = agent_.FindReplica(address);
  return ref ? Materialize(*ref, address) : nullptr;
}

void ProxyDirectory::CertificateAsync(const proxy::LocalReplica& replica,
                                      std::function<void(Result<workloads::SvidPtr>)> done) {
  if (certificate_source_) {
    certificate_source_(replica.spiffe_id, std::move(done));
  } else {
    certificates_.CertificateAsync(replica.spiffe_id, std::move(done));
  }
}

std::string_view ProxyDirectory::RootNamespace() const { return agent_.config().root_namespace; }

namespace {

// The mode a PeerAuthentication sets for `port`: its port-level mode, else
// its own; kUnset leaves it to the next level.
workloads::MtlsMode ModeAt(const workloads::PeerAuthentication& peer, uint16_t port) {
  auto it = peer.port_level.find(port);
  if (it != peer.port_level.end() && it->second != workloads::MtlsMode::kUnset) return it->second;
  return peer.mode;
}

}  // namespace

// Istio's inheritance: a policy selecting the workload (with its port-level
// modes), then the namespace-wide one (no selector), then the root
// namespace's; unset everywhere is PERMISSIVE. Where Istio takes the oldest
// of several candidates, podless takes the first by name. DISABLE is
// PERMISSIVE here: plaintext is accepted, and HBONE is never turned away.
// Costs the PeerAuthentications of two namespaces, not all of them.
bool ProxyDirectory::PlaintextAllowed(const proxy::LocalReplica& replica, uint16_t port) const {
  using workloads::MtlsMode;
  const workloads::PeerAuthentication* selecting = nullptr;
  const workloads::PeerAuthentication* namespace_wide = nullptr;
  for (const StoredObject* stored : agent_.List(Kind::kPeerAuthentication, replica.ns)) {
    const auto& peer = std::get<workloads::PeerAuthentication>(stored->object);
    if (peer.selector.empty()) {
      if (namespace_wide == nullptr) namespace_wide = &peer;
    } else if (selecting == nullptr && workloads::LabelsMatch(peer.selector, *replica.labels)) {
      selecting = &peer;
    }
  }
  MtlsMode mode = selecting != nullptr ? ModeAt(*selecting, port) : MtlsMode::kUnset;
  if (mode == MtlsMode::kUnset && namespace_wide != nullptr) mode = namespace_wide->mode;
  const std::string& root = agent_.config().root_namespace;
  if (mode == MtlsMode::kUnset && !root.empty() && root != replica.ns) {
    for (const StoredObject* stored : agent_.List(Kind::kPeerAuthentication, root)) {
      const auto& peer = std::get<workloads::PeerAuthentication>(stored->object);
      if (peer.selector.empty()) {
        mode = peer.mode;
        break;
      }
    }
  }
  return mode != MtlsMode::kStrict;
}

std::vector<const workloads::AuthorizationPolicy*> ProxyDirectory::PoliciesFor(
    const proxy::LocalReplica& replica) const {
  std::vector<const workloads::AuthorizationPolicy*> out;
  const std::string& root = agent_.config().root_namespace;
  auto add = [&](const std::string& ns) {
    for (const StoredObject* stored : agent_.List(Kind::kAuthorizationPolicy, ns)) {
      const auto& policy = std::get<workloads::AuthorizationPolicy>(stored->object);
      if (proxy::PolicyApplies(policy, replica.ns, *replica.labels, root)) out.push_back(&policy);
    }
  };
  add(replica.ns);
  if (!root.empty() && root != replica.ns) add(root);
  return out;
}

const proxy::LocalReplica* ProxyDirectory::Authenticate(std::string_view user,
                                                        std::string_view password) const {
  std::optional<ReplicaRef> ref = agent_.Authenticate(user, password);
  if (!ref) return nullptr;
  return Materialize(*ref, ref->workload->addresses[ref->ordinal]);
}

// The ready replicas of the workloads a Service selects, local and remote,
// numbered without being listed: one segment per selected workload, so
// resolving a Service over a million replicas costs one entry per workload,
// and only the endpoints the balancer draws are built.
class ProxyDirectory::SelectedEndpoints final : public proxy::EndpointSet {
 public:
  explicit SelectedEndpoints(const ProxyDirectory& directory) : directory_(directory) {}

  // Replicas of one workload at `port`. `ready`: the ready ordinals, or
  // nullopt when every replica is ready.
  void AddLocal(const workloads::Workload& workload, const std::vector<uint32_t>& addresses,
                uint16_t port, std::optional<std::vector<uint32_t>> ready) {
    Add(Segment{0, &workload, &addresses, nullptr, port, std::move(ready)});
  }
  void AddRemote(const RemoteWorkload& remote, uint16_t port,
                 std::optional<std::vector<uint32_t>> ready) {
    Add(Segment{0, &remote.record.workload, &remote.record.addresses, &remote, port,
                std::move(ready)});
  }

  // One WorkloadEntry at `address`: always ready.
  void AddEntry(const workloads::WorkloadEntry& entry, uint32_t address, uint16_t port) {
    Segment segment{0, nullptr, nullptr, nullptr, port, std::nullopt};
    segment.entry = &entry;
    segment.entry_address = address;
    Add(std::move(segment));
  }

  size_t size() const override { return segments_.empty() ? 0 : segments_.back().end; }
  uint32_t address(size_t i) const override {
    auto [segment, ordinal] = Locate(i);
    if (segment->entry != nullptr) return segment->entry_address;
    return (*segment->addresses)[ordinal];
  }
  proxy::Endpoint at(size_t i) const override {
    auto [segment, ordinal] = Locate(i);
    if (segment->entry != nullptr) return directory_.EntryEndpoint(*segment->entry, segment->port);
    if (segment->remote != nullptr) {
      return directory_.RemoteEndpoint(*segment->remote, ordinal, segment->port);
    }
    return directory_.LocalEndpoint(*segment->workload, (*segment->addresses)[ordinal],
                                    segment->port);
  }

 private:
  struct Segment {
    size_t end;  // one past this segment's last index
    const workloads::Workload* workload;
    const std::vector<uint32_t>* addresses;  // by ordinal
    const RemoteWorkload* remote;            // null: local
    uint16_t port;
    std::optional<std::vector<uint32_t>> ready;       // ordinals; nullopt: all
    const workloads::WorkloadEntry* entry = nullptr;  // set: one endpoint, this entry
    uint32_t entry_address = 0;
  };

  void Add(Segment segment) {
    const size_t count = segment.entry != nullptr ? 1
                         : segment.ready          ? segment.ready->size()
                                                  : segment.addresses->size();
    if (count == 0) return;
    segment.end = size() + count;
    segments_.push_back(std::move(segment));
  }
  std::pair<const Segment*, uint32_t> Locate(size_t i) const {
    auto it = std::upper_bound(segments_.begin(), segments_.end(), i,
                               [](size_t index, const Segment& s) { return index < s.end; });
    const size_t begin = it == segments_.begin() ? 0 : std::prev(it)->end;
    const size_t k = i - begin;
    return {&*it, it->ready ? (*it->ready)[k] : static_cast<uint32_t>(k)};
  }

  const ProxyDirectory& directory_;
  std::vector<Segment> segments_;
};

void ProxyDirectory::InvalidateNamespace(std::string_view ns) {
  if (!replicas_.empty()) replicas_.clear();
  DropEntryIndex();
  std::erase_if(selections_, [ns](const auto& entry) { return entry.second.ns == ns; });
}

const ProxyDirectory::Selected& ProxyDirectory::Selection(const StoredObject& stored) const {
  auto [it, added] = selections_.try_emplace(&stored);
  if (!added) return it->second;
  const auto& service = std::get<workloads::Service>(stored.object);
  it->second.ns = service.metadata.ns;
  it->second.local = agent_.SelectWorkloads(service.metadata.ns, service.selector);
  it->second.entries = agent_.SelectEntries(service.metadata.ns, service.selector);
  if (cluster_ != nullptr)
    it->second.remote = cluster_->Select(service.metadata.ns, service.selector);
  return it->second;
}

Result<proxy::Destination> ProxyDirectory::ResolveService(const StoredObject& stored,
                                                          uint16_t port) const {
  const auto& service = std::get<workloads::Service>(stored.object);
  const workloads::ServicePort* service_port = nullptr;
  for (const auto& p : service.ports) {
    if (p.port == port) service_port = &p;
  }
  if (service_port == nullptr) {
    return MakeError(ErrorCode::kNotFound, "service " + service.metadata.ns + "/" +
                                               service.metadata.name + " has no port " +
                                               std::to_string(port));
  }
  proxy::Destination destination;
  destination.service =
      service.metadata.name + "." + service.metadata.ns + ".svc." + kClusterDomain;
  if (service.selector.empty()) return destination;  // selects nothing
  auto selected = std::make_unique<SelectedEndpoints>(*this);
  const Selected& selection = Selection(stored);
  for (const StoredObject* candidate : selection.local) {
    const auto& workload = std::get<workloads::Workload>(candidate->object);
    const uint16_t target = TargetPortOf(*service_port, workload);
    if (target == 0) continue;
    std::optional<std::vector<uint32_t>> ready;
    if (std::holds_alternative<workloads::ExecApp>(workload.spec.app)) {
      // Only exec replicas have a readiness of their own (and are processes:
      // few per workload).
      ready.emplace();
      for (uint32_t ordinal = 0; ordinal < candidate->addresses.size(); ++ordinal) {
        if (agent_.IsReplicaReady(workload, candidate->addresses[ordinal])) {
          ready->push_back(ordinal);
        }
      }
    }
    selected->AddLocal(workload, candidate->addresses, target, std::move(ready));
  }
  if (cluster_ != nullptr) {
    // Other nodes' replicas, over HBONE.
    for (const RemoteWorkload* remote : selection.remote) {
      const uint16_t target = TargetPortOf(*service_port, remote->record.workload);
      if (target == 0) continue;
      std::optional<std::vector<uint32_t>> ready;
      if (!remote->not_ready.empty()) {
        ready.emplace();
        for (uint32_t ordinal = 0; ordinal < remote->record.addresses.size(); ++ordinal) {
          if (remote->ready(ordinal)) ready->push_back(ordinal);
        }
      }
      selected->AddRemote(*remote, target, std::move(ready));
    }
  }
  // WorkloadEntries, over HBONE to their own address.
  for (const StoredObject* candidate : selection.entries) {
    const auto& entry = std::get<workloads::WorkloadEntry>(candidate->object);
    const uint16_t target = workloads::TargetPortOf(*service_port, entry);
    auto address = workloads::ParseIpv4(entry.address);
    if (target == 0 || !address.ok()) continue;
    selected->AddEntry(entry, *address, target);
  }
  destination.endpoint_set = std::move(selected);
  return destination;
}

Result<proxy::Destination> ProxyDirectory::Resolve(std::string_view host, uint16_t port) {
  if (auto address = workloads::ParseIpv4(host); address.ok()) {
    if (std::optional<ReplicaRef> ref = agent_.FindReplica(*address)) {
      const auto& workload = std::get<workloads::Workload>(ref->workload->object);
      proxy::Destination destination;
      destination.service = std::string(host);
      destination.endpoints.push_back(LocalEndpoint(workload, *address, port));
      return destination;
    }
    if (const StoredObject* service = agent_.FindServiceByVip(*address)) {
      return ResolveService(*service, port);
    }
    if (const RemoteReplica* remote = cluster_ ? cluster_->FindReplica(*address) : nullptr) {
      proxy::Destination destination;
      destination.service = std::string(host);
      destination.endpoints.push_back(RemoteEndpoint(*remote->workload, remote->ordinal, port));
      return destination;
    }
    if (const workloads::WorkloadEntry* entry = FindEntry(*address)) {
      proxy::Destination destination;
      destination.service = std::string(host);
      destination.endpoints.push_back(EntryEndpoint(*entry, port));
      return destination;
    }
    return MakeError(
        ErrorCode::kNotFound,
        std::string(host) + " is neither a workload, a WorkloadEntry nor a Service address");
  }
  // NAME.NAMESPACE.svc or NAME.NAMESPACE.svc.cluster.local
  std::string name(host);
  const std::string long_suffix = std::string(".svc.") + kClusterDomain;
  if (name.size() > long_suffix.size() &&
      name.compare(name.size() - long_suffix.size(), long_suffix.size(), long_suffix) == 0) {
    name.resize(name.size() - long_suffix.size());
  } else if (name.size() > 4 && name.compare(name.size() - 4, 4, ".svc") == 0) {
    name.resize(name.size() - 4);
  } else {
    return MakeError(ErrorCode::kNotFound,
                     "unknown host " + std::string(host) +
                         " (use a workload or Service address, or NAME.NAMESPACE.svc)");
  }
  const auto dot = name.find('.');
  if (dot == std::string::npos || name.find('.', dot + 1) != std::string::npos) {
    return MakeError(ErrorCode::kNotFound, "unknown host " + std::string(host));
  }
  const StoredObject* service =
      agent_.Find(workloads::ObjectKey{Kind::kService, name.substr(dot + 1), name.substr(0, dot)});
  if (service == nullptr) {
    return MakeError(ErrorCode::kNotFound, "no Service " + name.substr(dot + 1) + "/" +
                                               name.substr(0, dot) + " for " + std::string(host));
  }
  return ResolveService(*service, port);
}

}  // namespace podless::runtime
