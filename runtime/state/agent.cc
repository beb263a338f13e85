#include "runtime/state/agent.h"

#include <arpa/inet.h>

#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>

#include "proxy/base/http1_parser.h"
#include "proxy/base/json.h"
#include "workloads/policy_values.h"
#include "workloads/spiffe_id.h"

namespace podless::runtime {
namespace {

using workloads::Kind;
using workloads::Object;
using workloads::ObjectKey;

// A workload's credential seed (the HMAC key of its proxy passwords): 15
// random bytes, 120 bits, kept as raw bytes so that it fits std::string's
// inline buffer and costs a stored object no heap block of its own. Seeds
// that earlier builds persisted (48 hex characters) are used as they are:
// the key is whatever string is stored.
constexpr size_t kSecretBytes = 15;

std::string RandomSecret() {
  std::string secret(kSecretBytes, '\0');
  RAND_bytes(reinterpret_cast<uint8_t*>(secret.data()), secret.size());
  return secret;
}

// Draws seeds from the RNG a block at a time: entering RAND_bytes once per
// object was a twentieth of the time of registering 100,000 workloads.
class SecretSource {
 public:
  SecretSource() = default;
  SecretSource(const SecretSource&) = delete;
  SecretSource& operator=(const SecretSource&) = delete;
  ~SecretSource() { OPENSSL_cleanse(block_.data(), block_.size()); }

  std::string Next() {
    if (used_ == block_.size()) {
      RAND_bytes(block_.data(), block_.size());
      used_ = 0;
    }
    std::string secret(reinterpret_cast<const char*>(block_.data() + used_), kSecretBytes);
    OPENSSL_cleanse(block_.data() + used_, kSecretBytes);
    used_ += kSecretBytes;
    return secret;
  }

 private:
  std::array<uint8_t, kSecretBytes * 64> block_{};
  size_t used_ = block_.size();
};

std::string KeyText(const ObjectKey& key) {
  return std::string(workloads::KindName(key.kind)) + " " + key.ns + "/" + key.name;
}

// Splits "web-12" into ("web", 12).
bool SplitReplicaName(const std::string& replica, std::string* workload, uint32_t* ordinal) {
  auto dash = replica.rfind('-');
  if (dash == std::string::npos || dash + 1 == replica.size()) return false;
  uint64_t n = 0;
  for (size_t i = dash + 1; i < replica.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(replica[i]))) return false;
    n = n * 10 + (replica[i] - '0');
    if (n > workloads::kMaxReplicas) return false;
  }
  *workload = replica.substr(0, dash);
  *ordinal = static_cast<uint32_t>(n);
  return true;
}

}  // namespace

Agent::Agent(const AgentConfig& config)
    : config_(config), started_at_(static_cast<int64_t>(::time(nullptr))) {}
Agent::~Agent() = default;

Result<AgentPtr> Agent::Open(const AgentConfig& config) {
  AgentPtr agent(new Agent(config));
  if (Status s = agent->Load(); !s) return s.error();
  return agent;
}

Status Agent::Load() {
  auto node_cidr = workloads::Cidr::Parse(config_.node_cidr);
  if (!node_cidr)
    return MakeError(ErrorCode::kInvalidArgument, "--node-cidr: " + node_cidr.error().message);
  auto service_cidr = workloads::Cidr::Parse(config_.service_cidr);
  if (!service_cidr) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--service-cidr: " + service_cidr.error().message);
  }
  node_pool_ = std::make_unique<workloads::AddressPool>(*node_cidr);
  service_pool_ = std::make_unique<workloads::AddressPool>(*service_cidr);

  if (mkdir(config_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot create state dir " + config_.state_dir + ": " + std::strerror(errno));
  }
  auto store = StateStore::Open(config_.state_dir);
  if (!store) return store.error();
  store_ = std::move(*store);

  auto ca = config_.ca_cert.empty() ? workloads::CertificateAuthority::LoadOrCreate(
                                          config_.state_dir, config_.trust_domain)
                                    : workloads::CertificateAuthority::LoadFromFiles(
                                          config_.ca_cert, config_.ca_key, config_.trust_domain);
  if (!ca) return ca.error();
  ca_ = std::move(*ca);
  certificates_ =
      std::make_unique<CertificateManager>(*ca_, config_.svid_ttl, config_.svid_cache_size);

  // Re-reserve every persisted address; a conflict means the state was
  // written with another CIDR, which the operator must resolve.
  LabelIndex::Change labeled;  // one update for all: each list is built once
  for (const StoredObject& object : store_->objects()) {
    const ObjectKeyView key = KeyViewOf(object);
    auto& pool = key.kind == Kind::kService ? *service_pool_ : *node_pool_;
    for (uint32_t address : object.addresses) {
      if (Status s = pool.Reserve(address); !s) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         store_->path() + ": " + KeyText(workloads::KeyOf(object.object)) +
                             ": address " + workloads::FormatIpv4(address) + ": " +
                             s.error().message +
                             " (was the state written with another --node-cidr/--service-cidr?)");
      }
    }
    IndexObject(object);
    revision_ = std::max(revision_, object.generation);
    if (const auto* workload = std::get_if<workloads::Workload>(&object.object)) {
      labeled.Add(&object, workload->metadata.ns, workload->metadata.labels);
    }
  }
  labels_.Update(labeled);
  return {};
}

std::string Agent::SpiffeIdFor(const workloads::Workload& workload) const {
  return workloads::SpiffeId::ForServiceAccount(config_.trust_domain, workload.metadata.ns,
                                                workload.spec.service_account)
      .ToString();
}

std::string Agent::SpiffeIdFor(const workloads::WorkloadEntry& entry) const {
  return workloads::SpiffeId::ForServiceAccount(config_.trust_domain, entry.metadata.ns,
                                                entry.service_account)
      .ToString();
}

std::vector<const StoredObject*> Agent::SelectEntries(const std::string& ns,
                                                      const workloads::Labels& selector) const {
  std::vector<const StoredObject*> out;
  if (selector.empty() || ns.empty()) return out;
  for (const StoredObject* stored : List(Kind::kWorkloadEntry, ns)) {
    const auto& entry = std::get<workloads::WorkloadEntry>(stored->object);
    if (workloads::LabelsMatch(selector, entry.labels)) out.push_back(stored);
  }
  return out;
}

void Agent::IndexObject(const StoredObject& object) {
  if (std::holds_alternative<workloads::Service>(object.object)) {
    for (uint32_t vip : object.addresses) service_by_vip_[vip] = &object;
    return;
  }
  const auto* workload = std::get_if<workloads::Workload>(&object.object);
  if (workload == nullptr) return;
  replicas_.Insert(&object);
  for (const workloads::PortSpec& port : workload->spec.ports) {
    if (port_users_[port.port]++ == 0) ++port_set_changes_;
  }
}

void Agent::UnindexObject(const StoredObject& object) {
  if (std::holds_alternative<workloads::Service>(object.object)) {
    for (uint32_t vip : object.addresses) service_by_vip_.erase(vip);
    return;
  }
  const auto* workload = std::get_if<workloads::Workload>(&object.object);
  if (workload == nullptr) return;
  replicas_.Remove(object.addresses, 0);
  for (const workloads::PortSpec& port : workload->spec.ports) {
    auto it = port_users_.find(port.port);
    if (it != port_users_.end() && --it->second == 0) {
      port_users_.erase(it);
      ++port_set_changes_;
    }
  }
}

Result<std::vector<ObjectChange>> Agent::Apply(std::vector<Object> objects, bool dry_run) {
  return ApplyObjects(std::move(objects), dry_run, /*create_only=*/false);
}

// Admission control (AgentConfig::Limits): what an apply would add, counted
// from the request and the current tables alone, so that one over a limit is
// refused before any address, memory or disk is taken for it. A change that
// adds nothing (an update, a scale-down) is never refused, so an agent above
// a lowered limit can still shrink. `*existing` receives the stored version
// of each object (null for a new one), `*addresses` how many addresses the
// apply takes from the pools.
Status Agent::Admit(const std::vector<Object>& objects,
                    std::vector<const StoredObject*>* existing_versions, uint64_t* addresses,
                    std::vector<std::vector<std::string>>* warnings) const {
  const AgentConfig::Limits& limits = config_.limits;
  if (limits.max_apply_objects != 0 && objects.size() > limits.max_apply_objects) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "one apply of " + std::to_string(objects.size()) +
                         " objects is over the limit --max-apply-objects=" +
                         std::to_string(limits.max_apply_objects) +
                         " (split it into smaller ones)");
  }
  uint64_t new_objects = 0;
  uint64_t added_replicas = 0;
  uint64_t removed_replicas = 0;
  *addresses = 0;
  existing_versions->clear();
  existing_versions->reserve(objects.size());
  warnings->assign(objects.size(), {});
  for (size_t i = 0; i < objects.size(); ++i) {
    const Object& object = objects[i];
    if (const auto* workload = std::get_if<workloads::Workload>(&object)) {
      if (const auto* forward = std::get_if<workloads::ForwardApp>(&workload->spec.app)) {
        if (Status s = CheckForwardTarget(forward->address); !s) {
          return MakeError(s.error().code, KeyText(workloads::KeyOf(object)) +
                                               ": spec.app.forward.address " + forward->address +
                                               ": " + s.error().message + "; nothing was changed");
        }
      }
    }
    const auto* exec = std::get_if<workloads::Workload>(&object);
    if (exec_admission_ && exec != nullptr &&
        std::holds_alternative<workloads::ExecApp>(exec->spec.app)) {
      Status s = exec_admission_(std::get<workloads::ExecApp>(exec->spec.app), &(*warnings)[i]);
      if (!s) {
        return MakeError(s.error().code, KeyText(workloads::KeyOf(object)) + ": " +
                                             s.error().message + "; nothing was changed");
      }
    }
    const StoredObject* existing = Find(workloads::KeyOf(object));
    existing_versions->push_back(existing);
    if (existing == nullptr) ++new_objects;
    const uint64_t held = existing != nullptr ? existing->addresses.size() : 0;
    if (const auto* workload = std::get_if<workloads::Workload>(&object)) {
      const uint64_t wanted = workload->spec.replicas;
      if (wanted > held) added_replicas += wanted - held;
      if (wanted < held) removed_replicas += held - wanted;
      if (wanted > held) *addresses += wanted - held;
    } else if (std::holds_alternative<workloads::Service>(object) && held == 0) {
      ++*addresses;
    }
  }
  WarnOfUnservedTargetPorts(objects, warnings);
  WarnOfTcpHttpRules(objects, warnings);
  const uint64_t objects_held = store_->objects().size();
  if (limits.max_objects != 0 && new_objects > 0 &&
      objects_held + new_objects > limits.max_objects) {
    return MakeError(
        ErrorCode::kResourceExhausted,
        "the agent would hold " + std::to_string(objects_held + new_objects) +
            " objects, over the limit --max-objects=" + std::to_string(limits.max_objects) +
            " (it holds " + std::to_string(objects_held) + ", this apply adds " +
            std::to_string(new_objects) + "); nothing was changed");
  }
  const uint64_t replicas_held = replica_count();
  const uint64_t replicas_after = replicas_held + added_replicas - removed_replicas;
  if (limits.max_replicas != 0 && replicas_after > replicas_held &&
      replicas_after > limits.max_replicas) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "the agent would hold " + std::to_string(replicas_after) +
                         " workload replicas, over the limit --max-replicas=" +
                         std::to_string(limits.max_replicas) + " (it holds " +
                         std::to_string(replicas_held) + ", this apply adds " +
                         std::to_string(replicas_after - replicas_held) + "); nothing was changed");
  }
  return {};
}

// A Service port whose targetPort names a port none of the workloads it
// selects declares gets no traffic: warned of, not refused, since the
// workloads that declare it may come later. The workloads are those stored
// and those of the same apply (a new version replaces the stored one).
void Agent::WarnOfUnservedTargetPorts(const std::vector<Object>& objects,
                                      std::vector<std::vector<std::string>>* warnings) const {
  // A RegisterBatch of 10,000 workloads has no Service: no map of them.
  if (std::none_of(objects.begin(), objects.end(), [](const Object& object) {
        return std::holds_alternative<workloads::Service>(object);
      })) {
    return;
  }
  std::map<ObjectKey, const workloads::Workload*> applied;
  for (const Object& object : objects) {
    if (const auto* workload = std::get_if<workloads::Workload>(&object))
      applied[workloads::KeyOf(object)] = workload;
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    const auto* service = std::get_if<workloads::Service>(&objects[i]);
    if (service == nullptr || service->selector.empty()) continue;
    std::vector<const workloads::Workload*> selected;
    for (const StoredObject* stored : SelectWorkloads(service->metadata.ns, service->selector)) {
      if (!applied.contains(workloads::KeyOf(stored->object)))
        selected.push_back(&std::get<workloads::Workload>(stored->object));
    }
    for (const auto& [key, workload] : applied) {
      if (workload->metadata.ns == service->metadata.ns &&
          workloads::LabelsMatch(service->selector, workload->metadata.labels)) {
        selected.push_back(workload);
      }
    }
    if (selected.empty()) continue;
    // A stored WorkloadEntry that names the port serves it too.
    const auto entries = SelectEntries(service->metadata.ns, service->selector);
    for (size_t p = 0; p < service->ports.size(); ++p) {
      const workloads::ServicePort& port = service->ports[p];
      if (port.target_port.name.empty()) continue;
      const bool served =
          std::any_of(selected.begin(), selected.end(),
                      [&](const auto* w) { return workloads::TargetPortOf(port, *w) != 0; }) ||
          std::any_of(entries.begin(), entries.end(), [&](const StoredObject* e) {
            return workloads::TargetPortOf(port, std::get<workloads::WorkloadEntry>(e->object)) !=
                   0;
          });
      if (served) continue;
      (*warnings)[i].push_back(
          "spec.ports[" + std::to_string(p) + "].targetPort \"" + port.target_port.name +
          "\" names no port of the " + std::to_string(selected.size()) +
          " workload(s) the selector selects: port " + std::to_string(port.port) +
          " gets no endpoints until one declares it");
    }
  }
}

// An AuthorizationPolicy rule with HTTP attributes (methods, paths, ...) is
// enforced per request on HTTP ports only; on a TCP port it behaves as in
// ztunnel (proxy/authorization.h): an ALLOW rule matches nothing, a DENY rule
// denies on its L4 part alone. Warned of for each such rule that some TCP port
// of a selected workload (stored, or of the same apply) admits; when the
// policy selects no workload yet, from the policy alone, since the workloads
// that come later may have TCP ports.
void Agent::WarnOfTcpHttpRules(const std::vector<Object>& objects,
                               std::vector<std::vector<std::string>>* warnings) const {
  if (std::none_of(objects.begin(), objects.end(), [](const Object& object) {
        return std::holds_alternative<workloads::AuthorizationPolicy>(object);
      })) {
    return;
  }
  std::map<ObjectKey, const workloads::Workload*> applied;
  for (const Object& object : objects) {
    if (const auto* workload = std::get_if<workloads::Workload>(&object))
      applied[workloads::KeyOf(object)] = workload;
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    const auto* policy = std::get_if<workloads::AuthorizationPolicy>(&objects[i]);
    if (policy == nullptr) continue;
    std::vector<const workloads::Workload*> selected;  // computed on first need
    bool selection_done = false;
    for (size_t r = 0; r < policy->rules.size(); ++r) {
      const workloads::PolicyRule& rule = policy->rules[r];
      std::vector<std::string> attributes = workloads::HttpAttributesOf(rule);
      if (attributes.empty()) continue;
      if (!selection_done) {
        selection_done = true;
        selected = PolicySelection(*policy, applied);
      }
      std::string example;  // a TCP port the rule admits
      for (const workloads::Workload* w : selected) {
        for (const workloads::PortSpec& port : w->spec.ports) {
          if (port.protocol != workloads::Protocol::kTCP || !example.empty()) continue;
          bool admitted =
              rule.to.empty() || std::any_of(rule.to.begin(), rule.to.end(), [&](const auto& op) {
                auto has = [&](const std::vector<uint16_t>& v) {
                  return std::find(v.begin(), v.end(), port.port) != v.end();
                };
                return (op.ports.empty() || has(op.ports)) && !has(op.not_ports);
              });
          if (admitted) {
            example = "TCP port " + std::to_string(port.port) + " of workload " + w->metadata.ns +
                      "/" + w->metadata.name;
          }
        }
      }
      if (!selected.empty() && example.empty()) continue;
      std::string names;
      for (const std::string& a : attributes) names += (names.empty() ? "" : ", ") + a;
      std::string text = "spec.rules[" + std::to_string(r) + "]: " + names +
                         (attributes.size() == 1 ? " applies" : " apply") +
                         " on HTTP ports only; on TCP ports this ";
      text += policy->action == workloads::PolicyAction::kAllow
                  ? "ALLOW rule matches nothing (as ztunnel)"
                  : "DENY rule is enforced without " +
                        std::string(attributes.size() == 1 ? "it" : "them") +
                        ", so it denies more (as ztunnel)";
      text += example.empty() ? "; it selects no workload yet" : ", e.g. " + example;
      (*warnings)[i].push_back(std::move(text));
    }
  }
}

// The workloads a policy selects: those stored and those of the same apply
// (a new version replacing the stored one).
std::vector<const workloads::Workload*> Agent::PolicySelection(
    const workloads::AuthorizationPolicy& policy,
    const std::map<ObjectKey, const workloads::Workload*>& applied) const {
  const std::string& root = config_.root_namespace;
  const bool everywhere = !root.empty() && policy.metadata.ns == root;
  auto selects = [&](const workloads::Workload& w) {
    return (everywhere || w.metadata.ns == policy.metadata.ns) &&
           workloads::LabelsMatch(policy.selector, w.metadata.labels);
  };
  std::vector<const workloads::Workload*> out;
  for (const StoredObject* stored :
       List(Kind::kWorkload, everywhere ? std::string() : policy.metadata.ns)) {
    const auto& w = std::get<workloads::Workload>(stored->object);
    if (!applied.contains(workloads::KeyOf(stored->object)) && selects(w)) out.push_back(&w);
  }
  for (const auto& [key, w] : applied) {
    if (selects(*w)) out.push_back(w);
  }
  return out;
}

// A forward target must lie outside the mesh and the agent: a workload or
// Service address would loop a connection through the proxy into itself
// (one connection became ~10,000), and an agent listener would expose the
// admin server or the outbound entry to every caller the policy admits.
Status Agent::CheckForwardTarget(const std::string& address) const {
  auto target = proxy::ParseAuthority(address, 0);
  if (!target) return target.error();
  std::string host = target->host == "localhost" ? "127.0.0.1" : target->host;
  in_addr parsed{};
  if (::inet_pton(AF_INET, host.c_str(), &parsed) != 1) return {};  // validation's concern
  const uint32_t ip = ntohl(parsed.s_addr);
  if (node_pool_->cidr().Contains(ip)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "is in the node CIDR " + node_pool_->cidr().ToString() +
                         " (a workload address): call workloads through the mesh, not a forward");
  }
  if (service_pool_->cidr().Contains(ip)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "is in the service CIDR " + service_pool_->cidr().ToString() +
                         " (a Service address): call Services through the mesh, not a forward");
  }
  struct Listener {
    const char* flag;
    const std::string& value;
  };
  for (const Listener& listener : {Listener{"--admin-address", config_.admin_address},
                                   Listener{"--hbone-address", config_.hbone_address},
                                   Listener{"--outbound-address", config_.outbound_address},
                                   Listener{"--kube-address", config_.kube_address}}) {
    auto bound = proxy::ParseAuthority(listener.value, 0, /*allow_port_zero=*/true);
    if (!bound || bound->port != target->port) continue;
    in_addr bound_ip{};
    const bool any = bound->host.empty() || bound->host == "0.0.0.0" ||
                     ::inet_pton(AF_INET, bound->host.c_str(), &bound_ip) != 1;
    const bool loopback = (ip >> 24) == 127;
    if (any || loopback || ntohl(bound_ip.s_addr) == ip) {
      return MakeError(ErrorCode::kInvalidArgument,
                       std::string("is the agent's own listener (") + listener.flag + " " +
                           listener.value + "): a forward must not expose it to the mesh");
    }
  }
  return {};
}

// How a change reaches the tables the proxy's workers read, so that they
// never wait for the control plane: everything slow (admission, addresses,
// encoding, the write and its fdatasync, compaction, handing addresses back
// to the pools) runs in a ReadersWindow, with the workers reading the tables
// as they were; the workers are kept out (StateLock exclusive) only while the
// written change is published: the store's entries move in, the indexes
// change by O(objects changed + address runs), never O(replicas).
//
// What is and is not guaranteed when memory runs out (std::bad_alloc), here
// and in Delete and Register:
// - Up to the commit point (StateStore::Write returning), every allocation
//   the change needs is made: the new versions, their addresses, the commit
//   record, the store's map entries and the index entries of new address
//   runs, VIPs and ports (staged below). A std::bad_alloc there is caught,
//   the pool allocations are handed back (which frees, never allocates), and
//   the caller gets RESOURCE_EXHAUSTED with memory, disk and pools unchanged.
// - After the commit point the change is durable; publishing it only moves
//   the staged entries in and frees, so it cannot fail. The callbacks that
//   follow (OnReplicasRemoved, watchers) may allocate: they run in a noexcept
//   block, so an allocation failure there ends the process (std::terminate)
//   rather than leaving the tables half updated, and a restart replays the
//   change from the log (the caller got no answer, as for a crash while a
//   call is in flight).
Result<std::vector<ObjectChange>> Agent::ApplyObjects(std::vector<Object> objects, bool dry_run,
                                                      bool create_only) {
  ReadersWindow window(readers_lock_);
  uint64_t address_count = 0;
  std::vector<const StoredObject*> existing_versions;
  std::vector<std::vector<std::string>> warnings;
  try {
    if (Status s = Admit(objects, &existing_versions, &address_count, &warnings); !s)
      return s.error();
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorCode::kResourceExhausted, "out of memory while checking the change of " +
                                                        std::to_string(objects.size()) +
                                                        " objects; nothing was changed");
  }
  const size_t object_count = objects.size();

  // Addresses taken from the pools for this apply, handed back if it fails.
  std::vector<std::pair<workloads::AddressPool*, uint32_t>> allocated;
  const uint32_t node_cursor = node_pool_->cursor();
  const uint32_t service_cursor = service_pool_->cursor();
  auto roll_back = [&]() noexcept {
    for (auto& [pool, address] : allocated) pool->Release(address);
    allocated.clear();
    node_pool_->set_cursor(node_cursor);
    service_pool_->set_cursor(service_cursor);
  };

  std::vector<ObjectChange> changes;
  // For each put, the version it replaces (null for a new object). Valid
  // until the publish, which replaces these entries in place.
  std::vector<const StoredObject*> replaced;
  // Addresses of replicas scaled away, released once the change is published.
  std::vector<uint32_t> released;
  // Index entries the change adds, allocated before the commit and moved into
  // the indexes after it (see the comment above). A replaced version keeps
  // its entry in the store, so the index entries of the replicas it keeps
  // stay as they are; each put's new replicas are those from kept[i] on.
  std::vector<uint32_t> kept;
  std::vector<uint16_t> old_ports;                             // declared by the versions replaced
  std::vector<ReplicaIndex::Staged> new_replicas;              // runs, per put
  std::vector<decltype(service_by_vip_)::node_type> new_vips;  // in order of the puts
  std::map<uint16_t, size_t> new_ports;
  std::vector<const StoredObject*> stored;
  std::unique_ptr<StateStore::PendingCommit> pending;
  LabelIndex::Prepared new_labels;
  try {
    allocated.reserve(address_count);  // so that recording an allocation cannot fail
    changes.reserve(objects.size());
    std::vector<StoredObject> puts;
    puts.reserve(objects.size());
    replaced.reserve(objects.size());
    SecretSource secrets;

    for (size_t i = 0; i < objects.size(); ++i) {
      Object& object = objects[i];
      ObjectKey key = workloads::KeyOf(object);
      const StoredObject* existing = existing_versions[i];
      if (existing != nullptr && create_only) {
        roll_back();
        return MakeError(ErrorCode::kAlreadyExists,
                         KeyText(key) + " already exists (use Apply to update it)");
      }
      if (existing != nullptr && existing->object == object) {
        changes.push_back({std::move(key), "unchanged", std::move(warnings[i])});
        continue;
      }
      StoredObject next;
      if (existing != nullptr) {
        next.addresses = existing->addresses;
        next.secret = existing->secret;
        next.generation = revision_ + 1;
        next.created_at = existing->created_at;
        // Outbound credentials name an identity: when the SPIFFE ID changes
        // (another serviceAccount), the old password must stop working.
        const auto* before = std::get_if<workloads::Workload>(&existing->object);
        const auto* after = std::get_if<workloads::Workload>(&object);
        if (before != nullptr && after != nullptr &&
            before->spec.service_account != after->spec.service_account) {
          next.secret = secrets.Next();
        }
      } else {
        next.secret = secrets.Next();
        next.generation = revision_ + 1;
        next.created_at = static_cast<int64_t>(::time(nullptr));
      }
      if (const auto* workload = std::get_if<workloads::Workload>(&object)) {
        const uint32_t replicas = workload->spec.replicas;
        if (next.addresses.size() > replicas) {
          released.insert(released.end(), next.addresses.begin() + replicas, next.addresses.end());
          next.addresses.resize(replicas);
        }
        next.addresses.reserve(replicas);
        while (next.addresses.size() < replicas) {
          auto address = node_pool_->Allocate();
          if (!address) {
            roll_back();
            return MakeError(address.error().code, KeyText(key) + ": " + address.error().message);
          }
          allocated.emplace_back(node_pool_.get(), *address);
          next.addresses.push_back(*address);
        }
      } else if (std::holds_alternative<workloads::Service>(object) && next.addresses.empty()) {
        auto vip = service_pool_->Allocate();
        if (!vip) {
          roll_back();
          return MakeError(vip.error().code, KeyText(key) + ": " + vip.error().message);
        }
        allocated.emplace_back(service_pool_.get(), *vip);
        next.addresses.push_back(*vip);
      }
      next.object = std::move(object);
      changes.push_back(
          {std::move(key), existing != nullptr ? "configured" : "created", std::move(warnings[i])});
      puts.push_back(std::move(next));
      replaced.push_back(existing);
    }
    // The objects are in `puts` now (or unchanged): free their array before the
    // commit allocates the store's entries, which may then reuse its memory.
    objects = {};

    if (dry_run || puts.empty()) {
      roll_back();
      return changes;
    }

    // One scratch table makes the VIP entries (node handles); once it has its
    // buckets, making one costs a node and no other allocation.
    decltype(service_by_vip_) vip_nodes;
    kept.reserve(puts.size());
    new_replicas.reserve(puts.size());
    for (size_t i = 0; i < puts.size(); ++i) {
      const uint32_t had =
          replaced[i] != nullptr ? static_cast<uint32_t>(replaced[i]->addresses.size()) : 0;
      kept.push_back(std::min<uint32_t>(had, puts[i].addresses.size()));
      if (const auto* old = replaced[i] != nullptr
                                ? std::get_if<workloads::Workload>(&replaced[i]->object)
                                : nullptr) {
        for (const workloads::PortSpec& port : old->spec.ports) old_ports.push_back(port.port);
      }
      new_replicas.emplace_back();
      if (const auto* workload = std::get_if<workloads::Workload>(&puts[i].object)) {
        new_replicas.back() = ReplicaIndex::Stage(puts[i].addresses, kept[i]);
        for (const workloads::PortSpec& port : workload->spec.ports) {
          if (!port_users_.contains(port.port)) new_ports.emplace(port.port, 0);
        }
      } else if (std::holds_alternative<workloads::Service>(puts[i].object)) {
        for (size_t j = kept[i]; j < puts[i].addresses.size(); ++j) {
          new_vips.push_back(
              vip_nodes.extract(vip_nodes.emplace(puts[i].addresses[j], nullptr).first));
        }
      }
    }
    // No rehash (no allocation) when the staged entries move in.
    service_by_vip_.reserve(service_by_vip_.size() + new_vips.size());
    stored.reserve(puts.size());

    auto written = store_->Write(std::move(puts), {});
    if (!written) {
      roll_back();
      return written.error();
    }
    pending = std::move(*written);
    // The label lists as the change leaves them, pointing to the store's
    // entries (known before the publish).
    LabelIndex::Change relabeled;
    for (size_t k = 0; k < pending->puts(); ++k) {
      const auto* now = std::get_if<workloads::Workload>(&pending->put(k).object);
      if (now == nullptr) continue;
      const auto* before =
          replaced[k] != nullptr ? std::get_if<workloads::Workload>(&replaced[k]->object) : nullptr;
      if (before != nullptr && before->metadata.labels == now->metadata.labels) continue;
      if (before != nullptr) {
        relabeled.Remove(pending->entry(k), before->metadata.ns, before->metadata.labels);
      }
      relabeled.Add(pending->entry(k), now->metadata.ns, now->metadata.labels);
    }
    new_labels = labels_.Prepare(relabeled);
  } catch (const std::bad_alloc&) {
    roll_back();
    return MakeError(ErrorCode::kResourceExhausted,
                     "out of memory while preparing the change of " + std::to_string(object_count) +
                         " objects (" + std::to_string(address_count) +
                         " new addresses); nothing was changed");
  }

  // The commit point: from here on nothing may fail (see above). The workers
  // wait from here to the end of the block.
  window.Close();
  [&]() noexcept {
    // The replicas scaled away leave the index while the replaced versions
    // still hold their addresses.
    for (size_t k = 0; k < replaced.size(); ++k) {
      if (replaced[k] != nullptr &&
          std::holds_alternative<workloads::Workload>(replaced[k]->object))
        replicas_.Remove(replaced[k]->addresses, kept[k]);
    }
    store_->Publish(*pending, &stored);
    ++revision_;
    labels_.Apply(new_labels);
    for (uint16_t port : old_ports) --port_users_.find(port)->second;
    // Every new version is indexed before any watcher hears of one, so that
    // each sees all of the change (port_users() among others).
    size_t next_vip = 0;
    for (size_t k = 0; k < stored.size(); ++k) {
      const StoredObject* now = stored[k];
      if (const auto* workload = std::get_if<workloads::Workload>(&now->object)) {
        replicas_.Add(now, new_replicas[k]);
        for (const workloads::PortSpec& port : workload->spec.ports) {
          auto it = port_users_.find(port.port);
          if (it == port_users_.end()) {
            it = port_users_.insert(new_ports.extract(port.port)).position;
            ++port_set_changes_;
          }
          ++it->second;
        }
      } else if (std::holds_alternative<workloads::Service>(now->object)) {
        for (uint32_t i = kept[k]; i < now->addresses.size(); ++i) {
          auto& node = new_vips[next_vip++];
          node.mapped() = now;
          service_by_vip_.insert(std::move(node));
        }
      }
    }
    for (uint16_t port : old_ports) {
      auto it = port_users_.find(port);
      if (it != port_users_.end() && it->second == 0) {
        port_users_.erase(it);
        ++port_set_changes_;
      }
    }
    for (size_t i = 0; i < stored.size(); ++i) {
      Notify(replaced[i] != nullptr ? WatchEventType::kModified : WatchEventType::kAdded,
             *stored[i]);
    }
  }();
  ReadersWindow after(readers_lock_);
  [&]() noexcept {
    if (!released.empty() && on_replicas_removed_) on_replicas_removed_(released);
  }();
  for (uint32_t address : released) node_pool_->Release(address);
  store_->MaybeCompact();
  return changes;
}

Result<std::vector<ObjectChange>> Agent::Delete(const std::vector<ObjectKey>& keys,
                                                bool ignore_not_found) {
  ReadersWindow window(readers_lock_);
  std::vector<ObjectChange> changes;
  // Copies for the events and the address release after the commit. Out of
  // memory up to the commit, nothing has changed (see ApplyObjects); after
  // it, nothing allocates but the callbacks.
  std::vector<StoredObject> gone;
  std::vector<uint32_t> removed_replicas;
  std::unique_ptr<StateStore::PendingCommit> pending;
  LabelIndex::Prepared old_labels;
  try {
    std::vector<ObjectKey> deletes;
    for (const ObjectKey& key : keys) {
      if (Find(key) == nullptr) {
        if (!ignore_not_found) {
          return MakeError(ErrorCode::kNotFound, KeyText(key) + " not found");
        }
        changes.push_back({key, "unchanged", {}});
        continue;
      }
      if (std::find(deletes.begin(), deletes.end(), key) != deletes.end()) continue;
      deletes.push_back(key);
      changes.push_back({key, "deleted", {}});
    }
    if (deletes.empty()) return changes;
    gone.reserve(deletes.size());
    for (const ObjectKey& key : deletes) {
      gone.push_back(*Find(key));
      if (std::holds_alternative<workloads::Workload>(gone.back().object)) {
        removed_replicas.insert(removed_replicas.end(), gone.back().addresses.begin(),
                                gone.back().addresses.end());
      }
    }
    LabelIndex::Change unlabeled;
    for (const ObjectKey& key : deletes) {
      const StoredObject* entry = Find(key);
      if (const auto* workload = std::get_if<workloads::Workload>(&entry->object))
        unlabeled.Remove(entry, workload->metadata.ns, workload->metadata.labels);
    }
    old_labels = labels_.Prepare(unlabeled);
    auto written = store_->Write({}, std::move(deletes));
    if (!written) return written.error();
    pending = std::move(*written);
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorCode::kResourceExhausted, "out of memory while preparing the delete of " +
                                                        std::to_string(keys.size()) +
                                                        " objects; nothing was changed");
  }
  window.Close();
  [&]() noexcept {
    for (const StoredObject& object : gone) UnindexObject(object);
    labels_.Apply(old_labels);
    store_->Publish(*pending);
    ++revision_;
    // A deleted object's event carries the revision of its delete.
    for (StoredObject& object : gone) object.generation = revision_;
    for (const StoredObject& object : gone) Notify(WatchEventType::kDeleted, object);
  }();
  ReadersWindow after(readers_lock_);
  [&]() noexcept {
    if (!removed_replicas.empty() && on_replicas_removed_) on_replicas_removed_(removed_replicas);
  }();
  for (const StoredObject& object : gone) {
    auto& pool =
        std::holds_alternative<workloads::Service>(object.object) ? *service_pool_ : *node_pool_;
    for (uint32_t address : object.addresses) pool.Release(address);
  }
  store_->MaybeCompact();
  return changes;
}

Status Agent::Mirror(std::vector<MirroredObject> puts, std::vector<ObjectKey> deletes) {
  ReadersWindow window(readers_lock_);
  std::vector<StoredObject> changed;
  for (MirroredObject& put : puts) {
    const ObjectKey key = workloads::KeyOf(put.object);
    // Workloads are each node's own (the cluster view holds the others'):
    // none is mirrored, so the replica and label indexes need no update here.
    if (key.kind == Kind::kWorkload) {
      return MakeError(ErrorCode::kInvalidArgument,
                       KeyText(key) + ": only Services and policies are mirrored");
    }
    std::vector<uint32_t> addresses;
    if (put.vip != 0) addresses.push_back(put.vip);
    const StoredObject* existing = Find(key);
    if (existing != nullptr && existing->object == put.object && existing->addresses == addresses) {
      continue;
    }
    StoredObject next;
    next.object = std::move(put.object);
    next.addresses = std::move(addresses);
    next.secret = existing != nullptr ? existing->secret : RandomSecret();
    next.generation = revision_ + 1;
    next.created_at =
        existing != nullptr ? existing->created_at : static_cast<int64_t>(::time(nullptr));
    changed.push_back(std::move(next));
  }
  for (const ObjectKey& key : deletes) {
    if (key.kind == Kind::kWorkload) {
      return MakeError(ErrorCode::kInvalidArgument,
                       KeyText(key) + ": only Services and policies are mirrored");
    }
  }
  std::erase_if(deletes, [this](const ObjectKey& key) { return Find(key) == nullptr; });
  if (changed.empty() && deletes.empty()) return {};

  // Old versions leave the indexes and the VIP pool; the new ones enter after
  // the commit. The VIPs come from etcd, which keeps them unique.
  std::vector<StoredObject> old;
  std::vector<ObjectKey> changed_keys;
  std::vector<bool> was_present;
  for (const StoredObject& put : changed) {
    changed_keys.push_back(workloads::KeyOf(put.object));
    const StoredObject* existing = Find(changed_keys.back());
    was_present.push_back(existing != nullptr);
    if (existing != nullptr) old.push_back(*existing);
  }
  for (const ObjectKey& key : deletes) old.push_back(*Find(key));
  auto written = store_->Write(std::move(changed), deletes);
  if (!written) return written.error();
  window.Close();
  for (const StoredObject& object : old) UnindexObject(object);
  store_->Publish(**written);
  ++revision_;
  for (const StoredObject& object : old) {
    if (std::holds_alternative<workloads::Service>(object.object)) {
      for (uint32_t vip : object.addresses) service_pool_->Release(vip);
    }
  }
  for (size_t i = 0; i < changed_keys.size(); ++i) {
    const StoredObject* now = Find(changed_keys[i]);
    for (uint32_t vip : now->addresses) (void)service_pool_->Reserve(vip);
    IndexObject(*now);
    Notify(was_present[i] ? WatchEventType::kModified : WatchEventType::kAdded, *now);
  }
  for (const ObjectKey& key : deletes) {
    for (const StoredObject& object : old) {
      if (workloads::KeyOf(object.object) != key) continue;
      StoredObject deleted = object;
      deleted.generation = revision_;
      Notify(WatchEventType::kDeleted, deleted);
    }
  }
  ReadersWindow after(readers_lock_);
  store_->MaybeCompact();
  return {};
}

Result<uint32_t> Agent::ProposeVip(const std::vector<uint32_t>& exclude) {
  const uint32_t cursor = service_pool_->cursor();
  std::vector<uint32_t> taken;
  Result<uint32_t> vip = service_pool_->Allocate();
  while (vip.ok() && std::find(exclude.begin(), exclude.end(), *vip) != exclude.end()) {
    taken.push_back(*vip);
    vip = service_pool_->Allocate();
  }
  if (vip.ok()) taken.push_back(*vip);
  for (uint32_t address : taken) service_pool_->Release(address);
  service_pool_->set_cursor(cursor);
  return vip;
}

Status Agent::Register(std::vector<workloads::Workload> workloads) {
  std::vector<Object> objects;
  try {
    objects.reserve(workloads.size());
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "out of memory while preparing the registration of " +
                         std::to_string(workloads.size()) + " workloads; nothing was changed");
  }
  for (auto& workload : workloads) objects.emplace_back(std::move(workload));  // no allocation
  workloads = {};  // the moved-from array: free it before the commit allocates
  auto applied = ApplyObjects(std::move(objects), /*dry_run=*/false, /*create_only=*/true);
  if (!applied) return applied.error();
  return {};
}

const StoredObject* Agent::Find(const ObjectKey& key) const {
  const auto& objects = store_->objects();
  auto it = objects.find(key);
  return it == objects.end() ? nullptr : &*it;
}

std::vector<const StoredObject*> Agent::List(Kind kind, const std::string& ns) const {
  std::vector<const StoredObject*> out;
  const auto& objects = store_->objects();
  auto it = objects.lower_bound(ObjectKey{kind, ns, ""});
  for (; it != objects.end() && KeyViewOf(*it).kind == kind; ++it) {
    if (!ns.empty() && KeyViewOf(*it).ns != ns) break;
    out.push_back(&*it);
  }
  return out;
}

bool Agent::HasNamespace(const std::string& ns) const {
  const auto& objects = store_->objects();
  if (objects.contains(ObjectKey{Kind::kNamespace, "", ns})) return true;  // declared
  for (Kind kind : workloads::kAllKinds) {
    auto it = objects.lower_bound(ObjectKey{kind, ns, ""});
    if (it != objects.end() && KeyViewOf(*it).kind == kind && KeyViewOf(*it).ns == ns) return true;
  }
  return false;
}

std::vector<ReplicaView> Agent::Replicas(const StoredObject& stored) const {
  return Replicas(stored, 0, static_cast<uint32_t>(stored.addresses.size()));
}

std::vector<ReplicaView> Agent::Replicas(const StoredObject& stored, uint32_t first,
                                         uint32_t count) const {
  std::vector<ReplicaView> out;
  const auto* workload = std::get_if<workloads::Workload>(&stored.object);
  if (workload == nullptr) return out;
  const std::string spiffe_id = SpiffeIdFor(*workload);
  const workloads::SvidPtr cert = certificates_->Cached(spiffe_id);
  const uint32_t end =
      static_cast<uint32_t>(std::min<uint64_t>(stored.addresses.size(), uint64_t{first} + count));
  out.reserve(end > first ? end - first : 0);
  for (uint32_t i = first; i < end; ++i) {
    ReplicaView view;
    view.name = workload->metadata.name + "-" + std::to_string(i);
    view.ordinal = i;
    view.address = stored.addresses[i];
    view.spiffe_id = spiffe_id;
    view.certificate = cert;
    view.ready = IsReplicaReady(*workload, view.address);
    view.started_at = stored.created_at != 0 ? stored.created_at : started_at_;
    if (process_status_ && std::holds_alternative<workloads::ExecApp>(workload->spec.app)) {
      process_status_(view);
    }
    if (port_status_) port_status_(view, workload->spec.ports);
    out.push_back(std::move(view));
  }
  return out;
}

std::vector<uint32_t> Agent::ServiceEndpoints(const workloads::Service& service) const {
  std::vector<uint32_t> out;
  // Kubernetes: an empty selector selects nothing.
  for (const StoredObject* stored : SelectWorkloads(service.metadata.ns, service.selector)) {
    const auto& workload = std::get<workloads::Workload>(stored->object);
    // Only workloads that serve one of its ports are its endpoints: a named
    // targetPort they do not declare would fail every call (502).
    if (std::none_of(service.ports.begin(), service.ports.end(), [&](const auto& port) {
          return workloads::TargetPortOf(port, workload) != 0;
        })) {
      continue;
    }
    for (uint32_t address : stored->addresses) {
      if (IsReplicaReady(workload, address)) out.push_back(address);
    }
  }
  // WorkloadEntries that serve one of its ports, at their own address.
  for (const StoredObject* stored : SelectEntries(service.metadata.ns, service.selector)) {
    const auto& entry = std::get<workloads::WorkloadEntry>(stored->object);
    auto address = workloads::ParseIpv4(entry.address);
    if (!address.ok() ||
        std::none_of(service.ports.begin(), service.ports.end(),
                     [&](const auto& port) { return workloads::TargetPortOf(port, entry) != 0; })) {
      continue;
    }
    out.push_back(*address);
  }
  return out;
}

void Agent::SetReplicaReady(uint32_t address, bool ready) {
  const bool changed = ready ? ready_exec_replicas_.insert(address).second
                             : ready_exec_replicas_.erase(address) != 0;
  if (!changed) return;
  if (on_readiness_change_) on_readiness_change_(address);
  if (status_watchers_.empty()) return;
  const std::optional<ReplicaRef> replica = replicas_.Find(address);
  if (!replica) return;
  // A watcher may remove itself (or another) from inside its callback.
  std::vector<uint64_t> ids;
  for (const auto& [id, callback] : status_watchers_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = status_watchers_.find(id);
    if (it == status_watchers_.end()) continue;
    StatusCallback callback = it->second;
    callback(*replica->workload);
  }
}

uint64_t Agent::AddStatusWatcher(StatusCallback callback) {
  const uint64_t id = next_watcher_id_++;
  status_watchers_.emplace(id, std::move(callback));
  return id;
}

void Agent::RemoveStatusWatcher(uint64_t id) { status_watchers_.erase(id); }

bool Agent::IsReplicaReady(const workloads::Workload& workload, uint32_t address) const {
  if (!std::holds_alternative<workloads::ExecApp>(workload.spec.app)) return true;
  return ready_exec_replicas_.count(address) != 0;
}

Result<ReplicaRef> Agent::FindReplicaByName(const std::string& ns,
                                            const std::string& replica) const {
  std::string workload_name = replica;
  uint32_t ordinal = 0;
  const StoredObject* stored = Find(ObjectKey{Kind::kWorkload, ns, replica});
  if (stored == nullptr && SplitReplicaName(replica, &workload_name, &ordinal)) {
    stored = Find(ObjectKey{Kind::kWorkload, ns, workload_name});
  }
  if (stored == nullptr || ordinal >= stored->addresses.size()) {
    return MakeError(ErrorCode::kNotFound, "replica " + ns + "/" + replica + " not found");
  }
  return ReplicaRef{stored, ordinal};
}

const StoredObject* Agent::FindServiceByVip(uint32_t vip) const {
  auto it = service_by_vip_.find(vip);
  return it == service_by_vip_.end() ? nullptr : it->second;
}

ProxyCredentials Agent::CredentialsFor(const ReplicaRef& replica) const {
  const auto& workload = std::get<workloads::Workload>(replica.workload->object);
  ProxyCredentials out;
  out.user =
      workload.metadata.name + "-" + std::to_string(replica.ordinal) + "." + workload.metadata.ns;
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned mac_len = 0;
  HMAC(EVP_sha256(), replica.workload->secret.data(), replica.workload->secret.size(),
       reinterpret_cast<const uint8_t*>(out.user.data()), out.user.size(), mac, &mac_len);
  static const char kHex[] = "0123456789abcdef";
  for (unsigned i = 0; i < 16 && i < mac_len; ++i) {
    out.password.push_back(kHex[mac[i] >> 4]);
    out.password.push_back(kHex[mac[i] & 15]);
  }
  return out;
}

std::optional<ReplicaRef> Agent::Authenticate(std::string_view user,
                                              std::string_view password) const {
  // user = "<workload>-<ordinal>.<namespace>"
  const auto dot = user.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  auto replica =
      FindReplicaByName(std::string(user.substr(dot + 1)), std::string(user.substr(0, dot)));
  if (!replica) return std::nullopt;
  const ProxyCredentials expected = CredentialsFor(*replica);
  if (expected.user != user || expected.password.size() != password.size() ||
      CRYPTO_memcmp(expected.password.data(), password.data(), password.size()) != 0) {
    return std::nullopt;
  }
  return *replica;
}

Result<std::string> Agent::SpiffeIdOfReplica(const std::string& ns,
                                             const std::string& replica) const {
  auto ref = FindReplicaByName(ns, replica);
  if (!ref) return ref.error();
  return SpiffeIdFor(std::get<workloads::Workload>(ref->workload->object));
}

uint64_t Agent::AddWatcher(WatchCallback callback) {
  const uint64_t id = next_watcher_id_++;
  watchers_.emplace(id, std::move(callback));
  return id;
}

void Agent::RemoveWatcher(uint64_t id) { watchers_.erase(id); }

void Agent::Notify(WatchEventType type, const StoredObject& object) {
  // A watcher may remove itself (or another) from inside its callback.
  std::vector<uint64_t> ids;
  for (const auto& [id, callback] : watchers_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = watchers_.find(id);
    if (it == watchers_.end()) continue;
    WatchCallback callback = it->second;  // it may be erased while it runs
    callback(type, object);
  }
}

size_t Agent::workload_count() const { return List(Kind::kWorkload, "").size(); }

std::string Agent::ConfigDumpJson(
    const std::vector<std::pair<std::string, std::string>>& extra) const {
  std::string out;
  auto stream = StreamConfigDump(extra);
  while (stream(&out)) {
  }
  return out;
}

namespace {

// Where a streamed config dump is: which section, and in the workloads,
// the next workload's key and replica ordinal.
struct DumpCursor {
  enum class Section { kStart, kWorkloads, kRest, kDone } section = Section::kStart;
  workloads::ObjectKey next{Kind::kWorkload, "", ""};  // the first key not yet written
  uint32_t ordinal = 0;                                // > 0: inside `next`'s replicas
  proxy::JsonWriter json;
};

void WriteReplica(proxy::JsonWriter& json, const ReplicaView& replica) {
  json.BeginObject();
  json.Key("name").String(replica.name);
  json.Key("address").String(workloads::FormatIpv4(replica.address));
  json.Key("spiffe_id").String(replica.spiffe_id);
  json.Key("ready").Bool(replica.ready);
  if (!replica.process_state.empty()) {
    json.Key("process").BeginObject();
    json.Key("state").String(replica.process_state);
    json.Key("reason").String(replica.process_reason);
    json.Key("restarts").Int(replica.restarts);
    json.Key("last_exit").String(replica.last_exit);
    json.Key("pid").Int(replica.pid);
    json.EndObject();
    if (replica.containers.size() > 1) {
      json.Key("containers").BeginArray();
      for (const ReplicaView::Container& c : replica.containers) {
        json.BeginObject();
        json.Key("name").String(c.name);
        json.Key("state").String(c.state);
        json.Key("reason").String(c.reason);
        json.Key("ready").Bool(c.ready);
        json.Key("restarts").Int(c.restarts);
        json.Key("last_exit").String(c.last_exit);
        json.Key("pid").Int(c.pid);
        json.EndObject();
      }
      json.EndArray();
    }
  }
  if (replica.certificate) {
    json.Key("certificate").BeginObject();
    json.Key("serial").String(replica.certificate->serial_hex);
    json.Key("not_before").Int(replica.certificate->not_before);
    json.Key("not_after").Int(replica.certificate->not_after);
    json.EndObject();
  } else {
    json.Key("certificate").Null();
  }
  json.EndObject();
}

}  // namespace

std::function<bool(std::string*)> Agent::StreamConfigDump(
    std::vector<std::pair<std::string, std::string>> extra, size_t budget) const {
  auto cursor = std::make_shared<DumpCursor>();
  constexpr uint32_t kReplicasPerStep = 1024;
  return [this, cursor, extra = std::move(extra), budget](std::string* out) {
    proxy::JsonWriter& json = cursor->json;
    size_t written = 0;
    auto flush = [&] {
      std::string piece = json.Take();
      written += piece.size();
      out->append(piece);
    };
    if (cursor->section == DumpCursor::Section::kStart) {
      json.BeginObject();
      json.Key("node").BeginObject();
      json.Key("name").String(config_.node_name);
      json.Key("trust_domain").String(config_.trust_domain);
      json.Key("node_cidr").String(config_.node_cidr);
      json.Key("service_cidr").String(config_.service_cidr);
      json.EndObject();
      json.Key("workloads").BeginArray();
      cursor->section = DumpCursor::Section::kWorkloads;
    }
    const ObjectMap& objects = store_->objects();
    while (cursor->section == DumpCursor::Section::kWorkloads && written < budget) {
      auto it = objects.lower_bound(cursor->next);
      if (cursor->ordinal > 0 &&
          (it == objects.end() || KeyViewOf(*it) != KeyViewOf(cursor->next))) {
        // The workload being written went away: close it.
        json.EndArray();
        json.EndObject();
        cursor->ordinal = 0;
      }
      if (it == objects.end() || KeyViewOf(*it).kind != Kind::kWorkload) {
        json.EndArray();
        cursor->section = DumpCursor::Section::kRest;
        break;
      }
      const StoredObject& stored = *it;
      const auto& workload = std::get<workloads::Workload>(stored.object);
      if (cursor->ordinal == 0) {
        cursor->next = workloads::KeyOf(stored.object);
        json.BeginObject();
        json.Key("namespace").String(workload.metadata.ns);
        json.Key("name").String(workload.metadata.name);
        json.Key("service_account").String(workload.spec.service_account);
        json.Key("labels").BeginObject();
        for (const auto& [k, v] : workload.metadata.labels) json.Key(k).String(v);
        json.EndObject();
        json.Key("replicas").BeginArray();
      }
      for (const ReplicaView& replica : Replicas(stored, cursor->ordinal, kReplicasPerStep)) {
        WriteReplica(json, replica);
      }
      cursor->ordinal += kReplicasPerStep;
      if (cursor->ordinal >= stored.addresses.size()) {
        json.EndArray();
        json.EndObject();
        cursor->ordinal = 0;
        cursor->next.name.push_back('\0');  // the next key after this one
      } else {
        cursor->ordinal = std::max<uint32_t>(cursor->ordinal, 1);
      }
      flush();
    }
    if (cursor->section == DumpCursor::Section::kRest) {
      json.Key("services").BeginArray();
      for (const StoredObject* stored : List(Kind::kService, "")) {
        const auto& service = std::get<workloads::Service>(stored->object);
        json.BeginObject();
        json.Key("namespace").String(service.metadata.ns);
        json.Key("name").String(service.metadata.name);
        json.Key("vip").String(
            stored->addresses.empty() ? "" : workloads::FormatIpv4(stored->addresses[0]));
        json.Key("ports").BeginArray();
        for (const auto& port : service.ports) {
          json.BeginObject();
          json.Key("port").Int(port.port);
          if (port.target_port.name.empty()) {
            json.Key("target_port")
                .Int(port.target_port.number ? port.target_port.number : port.port);
          } else {
            json.Key("target_port").String(port.target_port.name);
          }
          json.EndObject();
        }
        json.EndArray();
        json.Key("endpoints").BeginArray();
        for (uint32_t address : ServiceEndpoints(service))
          json.String(workloads::FormatIpv4(address));
        json.EndArray();
        json.EndObject();
      }
      json.EndArray();

      json.Key("policies").BeginArray();
      for (const StoredObject* stored : List(Kind::kAuthorizationPolicy, "")) {
        const auto& policy = std::get<workloads::AuthorizationPolicy>(stored->object);
        json.BeginObject();
        json.Key("namespace").String(policy.metadata.ns);
        json.Key("name").String(policy.metadata.name);
        json.Key("action").String(policy.action == workloads::PolicyAction::kAllow ? "ALLOW"
                                                                                   : "DENY");
        json.Key("selector").BeginObject();
        for (const auto& [k, v] : policy.selector) json.Key(k).String(v);
        json.EndObject();
        json.Key("rules").Int(static_cast<int64_t>(policy.rules.size()));
        json.EndObject();
      }
      json.EndArray();

      json.Key("peer_authentications").BeginArray();
      for (const StoredObject* stored : List(Kind::kPeerAuthentication, "")) {
        const auto& peer = std::get<workloads::PeerAuthentication>(stored->object);
        json.BeginObject();
        json.Key("namespace").String(peer.metadata.ns);
        json.Key("name").String(peer.metadata.name);
        json.Key("selector").BeginObject();
        for (const auto& [k, v] : peer.selector) json.Key(k).String(v);
        json.EndObject();
        json.Key("mode").String(MtlsModeName(peer.mode));
        json.Key("port_level").BeginObject();
        for (const auto& [port, mode] : peer.port_level) {
          json.Key(std::to_string(port)).String(MtlsModeName(mode));
        }
        json.EndObject();
        json.EndObject();
      }
      json.EndArray();

      json.Key("workload_entries").BeginArray();
      for (const StoredObject* stored : List(Kind::kWorkloadEntry, "")) {
        const auto& entry = std::get<workloads::WorkloadEntry>(stored->object);
        json.BeginObject();
        json.Key("namespace").String(entry.metadata.ns);
        json.Key("name").String(entry.metadata.name);
        json.Key("address").String(entry.address);
        json.Key("hbone_port").Int(entry.hbone_port);
        json.Key("spiffe_id").String(SpiffeIdFor(entry));
        json.Key("labels").BeginObject();
        for (const auto& [k, v] : entry.labels) json.Key(k).String(v);
        json.EndObject();
        json.Key("ports").BeginObject();
        for (const auto& [name, port] : entry.ports) json.Key(name).Int(port);
        json.EndObject();
        json.EndObject();
      }
      json.EndArray();

      json.Key("certificates").BeginArray();
      for (const auto& [id, svid] : certificates_->cache()) {
        json.BeginObject();
        json.Key("spiffe_id").String(id);
        json.Key("serial").String(svid->serial_hex);
        json.Key("not_before").Int(svid->not_before);
        json.Key("not_after").Int(svid->not_after);
        json.EndObject();
      }
      json.EndArray();
      for (const auto& [name, value] : extra) json.Key(name).RawValue(value);
      json.EndObject();
      cursor->section = DumpCursor::Section::kDone;
    }
    flush();
    return cursor->section != DumpCursor::Section::kDone;
  };
}

}  // namespace podless::runtime
