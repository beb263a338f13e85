// The Kubernetes API resources podless serves, and the discovery documents
// that describe them (/api, /apis, /api/v1, /apis/<group>/<version>, and the
// aggregated discovery kubectl 1.27+ asks for).
//
// This is the one place that maps Kubernetes kinds to resources: the router
// finds a resource here by group, version and plural name; discovery lists
// exactly these. A later session adds verbs (watch, create, patch, ...) by
// widening `verbs` and the handlers, not by another table.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "podless/v1/runtime.pb.h"

namespace podless::api::kube {

// Where a resource's objects come from in the agent's state.
enum class Source {
  kPods,            // one object per replica of every workload
  kAppliedAs,       // workloads applied as `applied_kind` (Deployment, ...)
  kNativeWorkload,  // workloads applied as podless.dev/v1alpha1 Workload
  kObjects,         // every object of `kind` (Services, Namespaces, ...)
  kNone,            // podless records none (Events): always an empty list
  kEndpoints,       // one per Service, from the workloads it selects (endpoints.h)
  kEndpointSlices,  // the same, as discovery.k8s.io EndpointSlices
};

struct Resource {
  std::string group;     // "" for the core group
  std::string version;   // "v1"
  std::string name;      // plural, "deployments"
  std::string singular;  // "deployment"
  std::string kind;      // "Deployment"
  std::vector<std::string> short_names;
  std::vector<std::string> categories;
  bool namespaced = true;
  Source source = Source::kObjects;
  v1::Kind object_kind = v1::KIND_UNSPECIFIED;  // what the agent's List is asked for
  std::string applied_kind;                     // kAppliedAs: the kind applied

  // "apps/v1", or "v1" for the core group.
  std::string GroupVersion() const;
  // A kind of Kubernetes' own groups ("", apps, autoscaling, *.k8s.io), not
  // a custom resource's (Istio's, podless.dev's): only these take strategic
  // merge patches, as on the API server, and OpenAPI says so.
  bool BuiltIn() const;
};

// What pods allow (podless's replicas are read-only).
const std::vector<std::string>& Verbs();
// What every other resource allows (write_handlers.h).
const std::vector<std::string>& WriteVerbs();

// Every served resource, core group first, then the named groups in the
// order /apis lists them.
const std::vector<Resource>& Resources();
const Resource* FindResource(std::string_view group, std::string_view version,
                             std::string_view name);

// GET /version: a 1.32 server, so kubectl 1.31-1.33 print no skew warning.
std::string VersionJson();
// GET /api (APIVersions): `server_address` is host:port as clients reach it.
std::string ApiVersionsJson(std::string_view server_address);
// GET /apis (APIGroupList).
std::string ApiGroupListJson();
// GET /api/v1 or /apis/<group>/<version> (APIResourceList); "" when the
// group/version is not served.
std::string ApiResourceListJson(std::string_view group, std::string_view version);
// Aggregated discovery (apidiscovery.k8s.io): the core group (`core` true,
// for /api) or every named group (/apis). `version` is "v2" or "v2beta1".
std::string AggregatedDiscoveryJson(bool core, std::string_view version);

// The Accept header asks for aggregated discovery: the version it names
// ("v2" or "v2beta1") ahead of plain JSON, or "" when it does not.
std::string AggregatedDiscoveryVersion(std::string_view accept);
// The Content-Type of an aggregated discovery answer of `version`.
std::string AggregatedDiscoveryContentType(std::string_view version);

}  // namespace podless::api::kube
