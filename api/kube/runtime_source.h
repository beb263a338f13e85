// The Kubernetes API's objects: what the local API's List answers
// (api/runtime_service.h), so kubectl, the CLI and gRPC clients see one state.
#pragma once

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

 private:
  RuntimeService& service_;
};

// The agent's changes (Agent::AddWatcher), each object as List shows it.
class AgentChangeFeed final : public ChangeFeed {
 public:
  AgentChangeFeed(runtime::Agent& agent, RuntimeService& service)
      : agent_(agent), service_(service) {}

  // ChangeFeed
  uint64_t Subscribe(Callback callback) override {
    return agent_.AddWatcher(
        [this, callback = std::move(callback)](runtime::WatchEventType type,
                                               const runtime::StoredObject& stored) {
          callback(service_.ObjectOf(stored), type == runtime::WatchEventType::kDeleted);
        });
  }
  void Unsubscribe(uint64_t id) override { agent_.RemoveWatcher(id); }
  uint64_t revision() const override { return agent_.revision(); }

 private:
  runtime::Agent& agent_;
  RuntimeService& service_;
};

}  // namespace podless::api::kube
