// The write verbs of the Kubernetes API: POST (create), PUT (replace),
// PATCH (merge, JSON, strategic merge, server-side apply with field
// managers and conflicts, managed_fields.h), DELETE, and the scale
// subresource of Deployments, StatefulSets and ReplicaSets.
//
// Every write computes the object's whole Kubernetes document (create and
// replace: the body; patch: the object as GET answers it, patched), strips
// what the server fills in (status, uid, resourceVersion, managedFields,
// ...), and applies it through the agent's Apply, the same path as
// `podless apply`: all or nothing. The answer is the object as a GET
// answers it afterwards. A document podless rejects is 422 Invalid with
// one cause per field; an unknown field is 400 "strict decoding error".
//
// Pods are podless's replicas, not objects of their own: writing them is
// 405 MethodNotAllowed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "api/kube/kube_api.h"
#include "api/kube/managed_fields.h"
#include "api/kube/resources.h"

namespace podless::api::kube {

struct WriteTarget {
  const Resource* resource = nullptr;
  std::string ns;      // "" for a cluster-scoped resource
  std::string name;    // "" for the collection (POST)
  bool scale = false;  // the /scale subresource
  // The query parameters: dryRun, fieldManager, force, fieldValidation.
  std::map<std::string, std::string> params;
  // The object named so as GET answers it now (JSON), or nullopt when it
  // does not exist.
  std::function<std::optional<std::string>(const std::string& name)> get;
  // The object's field managers (server-side apply), kept by the caller;
  // null: not tracked.
  ManagedFields* managed = nullptr;
  // The same for an object named in the body (POST).
  std::function<ManagedFields*(const std::string& name)> managed_of;
  int64_t now = 0;  // unix seconds, for managedFields' times
};

KubeResponse HandleWrite(ObjectSource& source, const WriteTarget& target,
                         const KubeRequest& request);

// A rejected manifest's message ("file:line:col: field: message" lines) as
// a 422 Invalid Status of `kind` `name`, one cause per line; 400 BadRequest
// "strict decoding error" when a line is an unknown field.
KubeResponse InvalidResponse(const Resource& resource, const std::string& name,
                             std::string_view message);

// The autoscaling/v1 Scale of a workload document (JSON, as GET answers
// it); "" when it has no spec.
std::string ScaleJson(const Resource& resource, std::string_view object_json);

}  // namespace podless::api::kube
