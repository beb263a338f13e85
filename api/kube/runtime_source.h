// The Kubernetes API's objects: what the local API's List answers
// (api/runtime_service.h), so kubectl, the CLI and gRPC clients see one state.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/kube/kube_api.h"
#include "api/kube/kube_watch.h"
#include "api/runtime_service.h"

namespace podless::api::kube {

class RuntimeObjectSource final : public ObjectSource {
 public:
  explicit RuntimeObjectSource(RuntimeService& service) : service_(service) {}

  // ObjectSource
  Result<v1::ListResponse> List(v1::Kind kind, const std::string& ns) override {
    v1::ListRequest request;
    request.set_kind(kind);
    request.set_namespace_(ns);
    return service_.List(request);
  }

  // The same Apply and Delete as the gRPC calls. On one node they answer
  // at once; in cluster mode they wait for etcd, which a synchronous
  // handler on the loop cannot, so the Kubernetes API writes on one node
  // only.
  Status Apply(const std::string& manifest, bool dry_run) override {
    if (service_.clustered()) return ClusterMode();
    v1::ApplyRequest request;
    request.set_manifest(manifest);
    request.set_source_name("request");
    request.set_dry_run(dry_run);
    std::optional<Status> outcome;
    service_.Apply(request, [&outcome](Result<v1::ApplyResponse> response) {
      outcome = response ? Status() : Status(response.error());
    });
    if (!outcome) return MakeError(ErrorCode::kInternal, "the agent did not answer the apply");
    return *outcome;
  }

  Status Delete(v1::Kind kind, const std::string& ns, const std::string& name) override {
    if (service_.clustered()) return ClusterMode();
    v1::DeleteRequest request;
    v1::ObjectRef* ref = request.add_refs();
    ref->set_kind(kind);
    ref->set_namespace_(ns);
    ref->set_name(name);
    std::optional<Status> outcome;
    service_.Delete(request, [&outcome](Result<v1::DeleteResponse> response) {
      outcome = response ? Status() : Status(response.error());
    });
    if (!outcome) return MakeError(ErrorCode::kInternal, "the agent did not answer the delete");
    return *outcome;
  }

 private:
  static Error ClusterMode() {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "in cluster mode the Kubernetes API is read-only; apply with `podless apply`");
  }
  RuntimeService& service_;
};

// The agent's changes (Agent::AddWatcher), each object as List shows it,
// and its workloads' status changes (a replica's readiness:
// Agent::AddStatusWatcher), as the workload again: the hub then sees which
// of its pods changed.
class AgentChangeFeed final : public ChangeFeed {
 public:
  AgentChangeFeed(runtime::Agent& agent, RuntimeService& service)
      : agent_(agent), service_(service) {}

  // ChangeFeed
  uint64_t Subscribe(Callback callback) override {
    const uint64_t status =
        agent_.AddStatusWatcher([this, callback](const runtime::StoredObject& workload) {
          callback(service_.ObjectOf(workload), false);
        });
    const uint64_t id =
        agent_.AddWatcher([this, callback = std::move(callback)](
                              runtime::WatchEventType type, const runtime::StoredObject& stored) {
          callback(service_.ObjectOf(stored), type == runtime::WatchEventType::kDeleted);
        });
    status_ids_[id] = status;
    return id;
  }
  void Unsubscribe(uint64_t id) override {
    agent_.RemoveWatcher(id);
    if (auto it = status_ids_.find(id); it != status_ids_.end()) {
      agent_.RemoveStatusWatcher(it->second);
      status_ids_.erase(it);
    }
  }
  uint64_t revision() const override { return agent_.revision(); }

 private:
  runtime::Agent& agent_;
  RuntimeService& service_;
  std::map<uint64_t, uint64_t> status_ids_;  // AddWatcher's id -> AddStatusWatcher's
};

}  // namespace podless::api::kube
