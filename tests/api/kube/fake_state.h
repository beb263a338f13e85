// A fake agent state for the watch tests: List, and a change feed; each
// change takes the next revision, as the agent's do.
#pragma once

#include <map>
#include <string>

#include "api/kube/kube_watch.h"
#include "api/output_format.h"
#include "tests/api/kube/test_objects.h"

namespace podless::api::kube::testing {

// The agent's state as the hub sees it: List, and a change feed; each
// change takes the next revision.
class FakeState final : public ObjectSource, public ChangeFeed {
 public:
  Result<v1::ListResponse> List(v1::Kind kind, const std::string& ns) override {
    v1::ListResponse out;
    out.set_resource_version(revision_);
    for (const auto& [key, object] : objects_) {
      const bool of_kind = (kind == v1::WORKLOAD && object.has_workload()) ||
                           (kind == v1::SERVICE && object.has_service());
      if (of_kind && (ns.empty() || MetaOf(object).namespace_() == ns)) {
        *out.add_objects() = object;
      }
    }
    return out;
  }
  uint64_t Subscribe(Callback callback) override {
    callbacks_[next_] = std::move(callback);
    return next_++;
  }
  void Unsubscribe(uint64_t id) override { callbacks_.erase(id); }
  uint64_t revision() const override { return revision_; }

  void Apply(v1::Object object) {
    v1::ObjectMeta& meta = object.has_workload() ? *object.mutable_workload()->mutable_metadata()
                                                 : *object.mutable_service()->mutable_metadata();
    meta.set_resource_version(++revision_);
    objects_[Key(object)] = object;
    for (auto& [id, callback] : std::map(callbacks_)) callback(object, false);
  }
  void Delete(const v1::Object& gone) {
    v1::Object object = objects_.at(Key(gone));
    objects_.erase(Key(gone));
    v1::ObjectMeta& meta = object.has_workload() ? *object.mutable_workload()->mutable_metadata()
                                                 : *object.mutable_service()->mutable_metadata();
    meta.set_resource_version(++revision_);
    for (auto& [id, callback] : std::map(callbacks_)) callback(object, true);
  }
  size_t subscribers() const { return callbacks_.size(); }

 private:
  static std::string Key(const v1::Object& object) {
    return std::string(object.has_workload() ? "w/" : "s/") + MetaOf(object).namespace_() + "/" +
           MetaOf(object).name();
  }
  std::map<std::string, v1::Object> objects_;
  std::map<uint64_t, Callback> callbacks_;
  uint64_t next_ = 1;
  uint64_t revision_ = 0;
};

// A Service named `name` in shop, with `labels` ("{tier: front}").
inline v1::Object Service(const std::string& name, const std::string& labels = "{}") {
  v1::Object s = FromManifest("apiVersion: v1\nkind: Service\nmetadata: {name: " + name +
                              ", namespace: shop, labels: " + labels +
                              "}\nspec:\n  selector: {app: web}\n"
                              "  ports: [{name: http, port: 80, targetPort: 8080}]\n");
  s.mutable_service()->mutable_status()->set_vip("127.128.0.1");
  return s;
}

}  // namespace podless::api::kube::testing
