// The OpenAPI 3.0 schemas of the kinds the Kubernetes API serves, as
// `kubectl explain` reads them: each kind's spec is built from the table of
// fields the manifest reader accepts (workloads/manifest_fields.h), so what
// explain shows is what `podless apply` takes, with the fields podless
// accepts but does not act on saying so in their description.
//
// Names are Kubernetes' (io.k8s.api.core.v1.Pod, io.k8s.api.apps.v1.
// Deployment, io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta); CRD kinds
// are named as the API server names them (io.istio.security.v1.
// AuthorizationPolicy, dev.podless.v1alpha1.Workload).
#pragma once

#include <string>
#include <string_view>

#include "api/kube/resources.h"
#include "proxy/base/json.h"

namespace podless::api::kube {

// The schema name of a resource's kind, and of its list.
std::string KindSchemaName(const Resource& resource);
std::string ListSchemaName(const Resource& resource);

// Whether `podless apply` takes the kind (and the API documents its writes):
// not Events or Endpoints, which podless derives.
bool KindIsApplied(const Resource& resource);

// components.schemas of the group/version's document: every kind served in
// it, its list, and every object they refer to. Writes the object's value.
void WriteSchemas(proxy::JsonWriter& w, std::string_view group, std::string_view version);

}  // namespace podless::api::kube
