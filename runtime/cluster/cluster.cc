#include "runtime/cluster/cluster.h"

#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <optional>
#include <random>
#include <set>

#include "proxy/base/json.h"
#include "proxy/base/log.h"
#include "workloads/ipam.h"

namespace podless::runtime {
namespace {

using workloads::Kind;
using workloads::ObjectKey;

constexpr std::chrono::milliseconds kMaxBackoff{5000};
// Operations per etcd transaction when publishing (etcd's default limit is 128).
constexpr int kOpsPerTxn = 100;
// VIP claims retried with another VIP when another node took it meanwhile.
constexpr int kVipAttempts = 4;

void Log(const std::string& line, proxy::LogLevel level = proxy::LogLevel::kWarning) {
  proxy::Log(level, "cluster", line);
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// "objects/<Kind>/<ns>/<name>" after the prefix -> the key, if well formed.
std::optional<ObjectKey> ParseObjectKey(std::string_view rest) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (parts.size() < 3) {
    size_t slash = rest.find('/', start);
    if (parts.size() == 2) slash = rest.size();
    if (slash == std::string_view::npos) return std::nullopt;
    parts.emplace_back(rest.substr(start, slash - start));
    start = slash + 1;
  }
  for (Kind kind : workloads::kClusterKinds) {
    if (parts[0] == workloads::KindName(kind)) return ObjectKey{kind, parts[1], parts[2]};
  }
  return std::nullopt;
}

}  // namespace

Cluster::Cluster(uv_loop_t* loop, const AgentConfig& config)
    : loop_(loop),
      config_(config),
      keys_{config.cluster.etcd_prefix},
      view_(ClusterKeys{config.cluster.etcd_prefix}, config.node_name) {
  self_.name = config.node_name;
  self_.address = config.cluster.node_address;
  self_.started_at = time(nullptr);
  if (auto colon = config.hbone_address.rfind(':'); colon != std::string::npos) {
    self_.hbone_port = static_cast<uint16_t>(std::atoi(config.hbone_address.c_str() + colon + 1));
  }
  retry_timer_ = std::make_unique<proxy::Timer>(loop_, [this] { Sync(); });
}

Cluster::~Cluster() {
  if (agent_ != nullptr && agent_watcher_ != 0) agent_->RemoveWatcher(agent_watcher_);
  if (agent_ != nullptr) agent_->OnReadinessChange(nullptr);
  // Destroying the client drops its callbacks unrun (they point here).
  keepalive_.reset();
  watch_.reset();
  etcd_.reset();
  if (lock_fd_ >= 0) close(lock_fd_);
}

void Cluster::Start(Agent& agent, proxy::Registry& metrics, std::function<void()> on_view_change) {
  agent_ = &agent;
  on_view_change_ = std::move(on_view_change);
  connected_gauge_ = &metrics
                          .AddGauge("podless_cluster_connected",
                                    "1 while the node follows etcd, 0 while etcd is unreachable.")
                          .WithLabels({});
  errors_ = &metrics
                 .AddCounter("podless_cluster_etcd_errors_total",
                             "etcd calls or streams that failed (each is retried).")
                 .WithLabels({});
  metrics.AddCallbackGauge("podless_cluster_nodes", "Nodes in this node's view of the cluster.",
                           [this] { return static_cast<double>(view_.nodes().size()); });
  metrics.AddCallbackGauge("podless_cluster_remote_workloads",
                           "Other nodes' workloads in this node's view.",
                           [this] { return static_cast<double>(view_.workloads().size()); });
  agent_watcher_ = agent.AddWatcher([this](WatchEventType, const StoredObject& stored) {
    if (std::holds_alternative<workloads::Workload>(stored.object)) {
      MarkDirty(workloads::KeyOf(stored.object));
    }
  });
  agent.OnReadinessChange([this](uint32_t address) {
    if (std::optional<ReplicaRef> ref = agent_->FindReplica(address)) {
      MarkDirty(workloads::KeyOf(ref->workload->object));
    }
  });
  Sync();
}

std::string Cluster::WorkloadValue(const StoredObject& stored) const {
  WorkloadRecord record;
  record.node = self_.name;
  record.workload = std::get<workloads::Workload>(stored.object);
  record.addresses = stored.addresses;
  for (uint32_t ordinal = 0; ordinal < stored.addresses.size(); ++ordinal) {
    if (!agent_->IsReplicaReady(record.workload, stored.addresses[ordinal])) {
      record.not_ready.push_back(ordinal);
    }
  }
  return EncodeWorkloadRecord(record);
}

// (Re)connects: lease, node record, keep-alive, a consistent read of the
// whole prefix, then the watch from that revision.
void Cluster::Sync() {
  if (syncing_ || shutting_down_) return;
  syncing_ = true;
  auto fail = [this](const Status& why) {
    syncing_ = false;
    Disconnected(why);
  };
  auto list = [this, fail] {
    etcdpb::RangeRequest request;
    request.set_key(config_.cluster.etcd_prefix);
    request.set_range_end(EtcdPrefixEnd(config_.cluster.etcd_prefix));
    etcd_->Range(request, [this, fail](Result<etcdpb::RangeResponse> listing) {
      if (!listing) return fail(listing.error());
      syncing_ = false;
      OnSynced(*listing);
    });
  };
  auto keep_alive = [this, list] {
    keepalive_ = etcd_->KeepAlive(
        lease_, std::chrono::milliseconds(config_.cluster.lease_ttl) / 3,
        [this](const etcdpb::LeaseKeepAliveResponse& response) {
          if (response.ttl() > 0) return;
          lease_ = 0;  // expired (etcd was away too long): start over
          Disconnected(MakeError(ErrorCode::kUnavailable, "lease expired"));
        },
        [this](Status why) { Disconnected(why); });
    list();
  };
  auto claim = [this, fail, keep_alive] {
    ClaimNode([fail, keep_alive](Status claimed) {
      if (!claimed) {
        if (claimed.error().code == ErrorCode::kAlreadyExists) Log(claimed.error().message);
        return fail(claimed);
      }
      keep_alive();
    });
  };
  if (lease_ != 0) return claim();
  etcdpb::LeaseGrantRequest grant;
  grant.set_ttl(config_.cluster.lease_ttl.count());
  etcd_->LeaseGrant(grant, [this, fail, claim](Result<etcdpb::LeaseGrantResponse> reply) {
    if (!reply) return fail(reply.error());
    lease_ = reply->id();
    claim();
  });
}

void Cluster::OnSynced(const etcdpb::RangeResponse& listing) {
  revision_ = listing.header().revision();
  view_.Clear();
  std::vector<Agent::MirroredObject> mirrored;
  std::set<ObjectKey> in_etcd;
  std::map<ObjectKey, std::string> published;  // this node's records as etcd has them
  for (const auto& kv : listing.kvs()) {
    const std::string& key = kv.key();
    if (StartsWith(key, keys_.Objects())) {
      auto record = DecodeClusterObjectRecord(kv.value());
      if (!record) {
        Log(key + ": " + record.error().message);
        continue;
      }
      in_etcd.insert(workloads::KeyOf(record->object));
      mirrored.push_back({std::move(record->object), record->vip});
    } else if (StartsWith(key, keys_.NodeWorkloads(self_.name))) {
      // ".../workloads/<self>/<ns>/<name>"
      const std::string rest = key.substr(keys_.NodeWorkloads(self_.name).size());
      if (const size_t slash = rest.find('/'); slash != std::string::npos) {
        published[ObjectKey{Kind::kWorkload, rest.substr(0, slash), rest.substr(slash + 1)}] =
            kv.value();
      }
    } else if (Status s = view_.Put(key, kv.value()); !s) {
      Log(s.error().message);
    }
  }
  // etcd is the truth for cluster-wide objects: what it lacks goes.
  std::vector<ObjectKey> gone;
  for (Kind kind : workloads::kClusterKinds) {
    for (const StoredObject* stored : agent_->List(kind, "")) {
      if (!in_etcd.contains(workloads::KeyOf(stored->object))) {
        gone.push_back(workloads::KeyOf(stored->object));
      }
    }
  }
  if (Status s = agent_->Mirror(std::move(mirrored), std::move(gone)); !s) {
    Log("cannot store the cluster's objects: " + s.error().message);
  }
  // This node's records: write what differs, delete what it no longer hosts.
  for (const StoredObject* stored : agent_->List(Kind::kWorkload, "")) {
    const ObjectKey key = workloads::KeyOf(stored->object);
    auto it = published.find(key);
    if (it == published.end() || it->second != WorkloadValue(*stored)) MarkDirty(key);
    if (it != published.end()) published.erase(it);
  }
  for (const auto& [key, value] : published) MarkDirty(key);

  etcdpb::WatchCreateRequest create;
  create.set_key(config_.cluster.etcd_prefix);
  create.set_range_end(EtcdPrefixEnd(config_.cluster.etcd_prefix));
  create.set_start_revision(revision_ + 1);
  watch_ = etcd_->Watch(
      create,
      [this](const etcdpb::WatchResponse& response) {
        if (response.compact_revision() != 0 || response.canceled()) {
          Log("watch cancelled (" +
              (response.cancel_reason().empty() ? std::string("compacted")
                                                : response.cancel_reason()) +
              "): reading everything again");
          watch_.reset();
          return Sync();
        }
        for (const auto& event : response.events()) HandleEvent(event);
        if (response.header().revision() > revision_) revision_ = response.header().revision();
        if (!response.events().empty() && on_view_change_) on_view_change_();
      },
      [this](Status why) { Disconnected(why); });

  connected_ = true;
  backoff_ = std::chrono::milliseconds(200);
  last_error_.clear();
  if (connected_gauge_ != nullptr) connected_gauge_->Set(1);
  Log("following etcd " + etcd_->current_endpoint() + " at revision " + std::to_string(revision_) +
          " (" + std::to_string(view_.nodes().size()) + " nodes)",
      proxy::LogLevel::kInfo);
  if (on_view_change_) on_view_change_();
  Flush();
}

void Cluster::HandleEvent(const mvccpb::Event& event) {
  const std::string& key = event.kv().key();
  const bool put = event.type() == mvccpb::Event::PUT;
  if (StartsWith(key, keys_.Objects()))
    return MirrorObject(key, put ? &event.kv().value() : nullptr);
  if (StartsWith(key, keys_.NodeWorkloads(self_.name))) return;  // ours: the agent has them
  if (key == keys_.Node(self_.name) && !put && connected_) {
    // Someone removed our record while we live: put it back.
    ClaimNode([this](Status s) {
      if (!s) Disconnected(s);
    });
  }
  if (!put) return view_.Delete(key);
  if (Status s = view_.Put(key, event.kv().value()); !s) Log(s.error().message);
}

void Cluster::MirrorObject(const std::string& key, const std::string* value) {
  Status s;
  if (value != nullptr) {
    auto record = DecodeClusterObjectRecord(*value);
    if (!record) return Log(key + ": " + record.error().message);
    s = agent_->Mirror({{std::move(record->object), record->vip}}, {});
  } else if (auto object = ParseObjectKey(key.substr(keys_.Objects().size()))) {
    s = agent_->Mirror({}, {*object});
  }
  if (!s) Log("cannot store " + key + ": " + s.error().message);
}

void Cluster::Disconnected(const Status& why) {
  if (errors_ != nullptr) errors_->Inc();
  // etcd's NOT_FOUND here is "requested lease not found": it expired while
  // this node could not reach etcd. Start over with a new one.
  if (!why && why.error().code == ErrorCode::kNotFound) lease_ = 0;
  last_error_ = why ? std::string("disconnected") : why.error().message;
  if (connected_) Log("lost etcd: " + last_error_ + "; serving the last view, retrying");
  connected_ = false;
  if (connected_gauge_ != nullptr) connected_gauge_->Set(0);
  keepalive_.reset();
  watch_.reset();
  ScheduleSync();
}

void Cluster::ScheduleSync() {
  if (shutting_down_ || syncing_ || retry_timer_->IsActive()) return;
  static thread_local std::minstd_rand jitter(std::random_device{}());
  const auto delay =
      backoff_ / 2 + std::chrono::milliseconds(jitter() % (backoff_.count() / 2 + 1));
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  retry_timer_->Start(static_cast<uint64_t>(delay.count()));
}

void Cluster::MarkDirty(const ObjectKey& key) {
  dirty_[key] = ++dirty_seq_;
  Flush();
}

// Writes up to kOpsPerTxn dirty records in one transaction, then the next.
void Cluster::Flush() {
  if (flushing_ || !connected_ || dirty_.empty()) return;
  flushing_ = true;
  etcdpb::TxnRequest txn;
  std::vector<std::pair<ObjectKey, uint64_t>> batch;
  for (const auto& [key, seq] : dirty_) {
    if (static_cast<int>(batch.size()) == kOpsPerTxn) break;
    batch.emplace_back(key, seq);
    const std::string etcd_key = keys_.Workload(self_.name, key);
    if (const StoredObject* stored = agent_->Find(key)) {
      auto* put = txn.add_success()->mutable_request_put();
      put->set_key(etcd_key);
      put->set_value(WorkloadValue(*stored));
      put->set_lease(lease_);
    } else {
      txn.add_success()->mutable_request_delete_range()->set_key(etcd_key);
    }
  }
  etcd_->Txn(txn, [this, batch = std::move(batch)](Result<etcdpb::TxnResponse> reply) {
    flushing_ = false;
    if (!reply) return Disconnected(reply.error());
    for (const auto& [key, seq] : batch) {
      auto it = dirty_.find(key);
      if (it != dirty_.end() && it->second == seq) dirty_.erase(it);
    }
    Flush();
  });
}

void Cluster::Apply(std::vector<workloads::Object> objects, bool dry_run, ChangesCallback done) {
  // Validation and the change list come from the agent, as for one node.
  auto changes = agent_->Apply(objects, /*dry_run=*/true);
  if (!changes || dry_run) return done(std::move(changes));
  std::vector<workloads::Object> cluster_objects, node_objects;
  for (size_t i = 0; i < objects.size(); ++i) {
    if ((*changes)[i].action == "unchanged") continue;
    auto& target =
        IsClusterKind(workloads::KeyOf(objects[i]).kind) ? cluster_objects : node_objects;
    target.push_back(std::move(objects[i]));
  }
  auto apply_local = [this, node_objects = std::move(node_objects), changes = *changes,
                      done](Status committed) mutable {
    if (!committed) return done(committed.error());
    if (!node_objects.empty()) {
      auto applied = agent_->Apply(std::move(node_objects), /*dry_run=*/false);
      if (!applied) {
        return done(MakeError(applied.error().code,
                              "Services and policies were stored in etcd, but this node's "
                              "workloads were not: " +
                                  applied.error().message));
      }
    }
    done(std::move(changes));
  };
  if (cluster_objects.empty()) return apply_local({});
  CommitClusterObjects(std::move(cluster_objects), {}, {}, 1, std::move(apply_local));
}

void Cluster::Delete(std::vector<ObjectKey> keys, bool ignore_not_found, ChangesCallback done) {
  std::vector<ObjectKey> cluster_keys, node_keys;
  for (const ObjectKey& key : keys) {
    (IsClusterKind(key.kind) ? cluster_keys : node_keys).push_back(key);
  }
  // NOT_FOUND before anything changes, as for one node (the agent mirrors
  // etcd, so it knows the cluster-wide objects too).
  for (const ObjectKey& key : keys) {
    if (agent_->Find(key) == nullptr && !ignore_not_found) {
      return done(MakeError(ErrorCode::kNotFound, std::string(workloads::KindName(key.kind)) + " " +
                                                      key.ns + "/" + key.name + " not found"));
    }
  }
  // Whether each cluster-wide object existed is decided now: by the time
  // etcd answers, the watch may have mirrored the delete already.
  std::vector<bool> existed;
  for (const ObjectKey& key : keys) existed.push_back(agent_->Find(key) != nullptr);
  auto delete_local = [this, keys, existed, node_keys, ignore_not_found, done](Status committed) {
    if (!committed) return done(committed.error());
    std::vector<ObjectChange> changes;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (IsClusterKind(keys[i].kind)) {
        changes.push_back({keys[i], existed[i] ? "deleted" : "unchanged", {}});
      }
    }
    if (!node_keys.empty()) {
      auto deleted = agent_->Delete(node_keys, ignore_not_found);
      if (!deleted) return done(deleted.error());
      changes.insert(changes.end(), deleted->begin(), deleted->end());
    }
    std::vector<ObjectKey> present;
    for (const ObjectKey& key : keys) {
      if (IsClusterKind(key.kind) && agent_->Find(key) != nullptr) present.push_back(key);
    }
    if (Status s = agent_->Mirror({}, present); !s) return done(s.error());
    done(std::move(changes));
  };
  std::erase_if(cluster_keys,
                [this](const ObjectKey& key) { return agent_->Find(key) == nullptr; });
  if (cluster_keys.empty()) return delete_local({});
  CommitClusterObjects({}, std::move(cluster_keys), {}, 1, std::move(delete_local));
}

// One etcd transaction: puts (new Services claim a VIP: the claim must not
// exist yet) and deletes (with their VIP claims). Then mirrors the result.
void Cluster::CommitClusterObjects(std::vector<workloads::Object> objects,
                                   std::vector<ObjectKey> deletes,
                                   std::vector<uint32_t> excluded_vips, int attempt,
                                   std::function<void(Status)> done) {
  if (!connected_) {
    return done(MakeError(
        ErrorCode::kUnavailable,
        "etcd is unreachable (" + last_error_ +
            "): Services and AuthorizationPolicies are cluster-wide and change "
            "only through etcd; try again once etcd is back (`podless get nodes` shows Ready)"));
  }
  etcdpb::TxnRequest txn;
  std::vector<Agent::MirroredObject> mirrored;
  std::vector<uint32_t> proposed;
  for (const workloads::Object& object : objects) {
    const ObjectKey key = workloads::KeyOf(object);
    uint32_t vip = 0;
    if (key.kind == Kind::kService) {
      const StoredObject* existing = agent_->Find(key);
      if (existing != nullptr && !existing->addresses.empty()) {
        vip = existing->addresses[0];
      } else {
        std::vector<uint32_t> exclude = excluded_vips;
        exclude.insert(exclude.end(), proposed.begin(), proposed.end());
        auto free = agent_->ProposeVip(exclude);
        if (!free)
          return done(MakeError(free.error().code, "Service " + key.ns + "/" + key.name + ": " +
                                                       free.error().message));
        vip = *free;
        proposed.push_back(vip);
        CompareAbsent(txn, keys_.Vip(vip));
      }
      auto* claim = txn.add_success()->mutable_request_put();
      claim->set_key(keys_.Vip(vip));
      claim->set_value(key.ns + "/" + key.name);
    }
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(keys_.Object(key));
    put->set_value(EncodeClusterObjectRecord({object, vip}));
    mirrored.push_back({object, vip});
  }
  for (const ObjectKey& key : deletes) {
    txn.add_success()->mutable_request_delete_range()->set_key(keys_.Object(key));
    const StoredObject* existing = agent_->Find(key);
    if (key.kind == Kind::kService && existing != nullptr && !existing->addresses.empty()) {
      txn.add_success()->mutable_request_delete_range()->set_key(keys_.Vip(existing->addresses[0]));
    }
  }
  etcd_->Txn(txn, [this, objects = std::move(objects), deletes = std::move(deletes),
                   excluded_vips = std::move(excluded_vips), proposed, attempt,
                   mirrored = std::move(mirrored),
                   done = std::move(done)](Result<etcdpb::TxnResponse> reply) mutable {
    if (!reply) {
      if (reply.error().code == ErrorCode::kUnavailable) Disconnected(reply.error());
      return done(MakeError(reply.error().code, "etcd: " + reply.error().message));
    }
    if (!reply->succeeded()) {
      // Another node claimed one of the proposed VIPs meanwhile.
      if (attempt >= kVipAttempts) {
        return done(MakeError(ErrorCode::kUnavailable,
                              "could not claim a free Service VIP in etcd after " +
                                  std::to_string(attempt) + " attempts; try again"));
      }
      excluded_vips.insert(excluded_vips.end(), proposed.begin(), proposed.end());
      return CommitClusterObjects(std::move(objects), std::move(deletes), std::move(excluded_vips),
                                  attempt + 1, std::move(done));
    }
    // Mirror now rather than on the watch event, so the caller reads its own
    // write; the event then finds nothing to change.
    if (Status s = agent_->Mirror(std::move(mirrored), {}); !s) return done(s);
    done({});
  });
}

void Cluster::Shutdown(std::function<void()> done) {
  shutting_down_ = true;
  retry_timer_->Stop();
  keepalive_.reset();
  watch_.reset();
  if (lease_ == 0 || !connected_) {
    etcd_->Close();
    return done();
  }
  etcdpb::LeaseRevokeRequest revoke;
  revoke.set_id(lease_);
  etcd_->LeaseRevoke(revoke, [this, done](Result<etcdpb::LeaseRevokeResponse>) {
    lease_ = 0;
    etcd_->Close();
    done();
  });
}

std::string Cluster::StatusJson() const {
  proxy::JsonWriter json;
  json.BeginObject();
  json.Key("connected").Bool(connected_);
  json.Key("node").String(self_.name);
  json.Key("endpoint").String(etcd_ ? etcd_->current_endpoint() : "");
  json.Key("revision").Int(revision_);
  json.Key("nodes").Int(static_cast<int64_t>(view_.nodes().size()));
  json.Key("remote_workloads").Int(static_cast<int64_t>(view_.workloads().size()));
  json.Key("last_error").String(last_error_);
  json.EndObject();
  return json.Take();
}

}  // namespace podless::runtime
