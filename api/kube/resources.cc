#include "api/kube/resources.h"

#include <utility>

#include "api/kube/media_type.h"
#include "proxy/base/json.h"

namespace podless::api::kube {
namespace {

using proxy::JsonWriter;

std::vector<Resource> MakeResources() {
  const std::vector<std::string> all = {"all"};
  const std::vector<std::string> istio_security = {"istio-io", "security-istio-io"};
  const std::vector<std::string> istio_networking = {"istio-io", "networking-istio-io"};
  std::vector<Resource> r;
  r.push_back({"", "v1", "pods", "pod", "Pod", {"po"}, all, true, Source::kPods, v1::WORKLOAD, ""});
  r.push_back({"",
               "v1",
               "services",
               "service",
               "Service",
               {"svc"},
               all,
               true,
               Source::kObjects,
               v1::SERVICE,
               ""});
  r.push_back({"",
               "v1",
               "namespaces",
               "namespace",
               "Namespace",
               {"ns"},
               {},
               false,
               Source::kObjects,
               v1::NAMESPACE,
               ""});
  r.push_back({"",
               "v1",
               "serviceaccounts",
               "serviceaccount",
               "ServiceAccount",
               {"sa"},
               {},
               true,
               Source::kObjects,
               v1::SERVICE_ACCOUNT,
               ""});
  // What `kubectl describe` asks for besides the object: its events (podless
  // records none; Namespaces are listed for the agent's revision only) and a
  // Service's endpoints.
  r.push_back(
      {"", "v1", "events", "event", "Event", {"ev"}, {}, true, Source::kNone, v1::NAMESPACE, ""});
  r.push_back({"",
               "v1",
               "endpoints",
               "endpoints",
               "Endpoints",
               {"ep"},
               {},
               true,
               Source::kEndpoints,
               v1::SERVICE,
               ""});
  for (const std::vector<std::string>& k :
       std::vector<std::vector<std::string>>{{"deployments", "deployment", "Deployment", "deploy"},
                                             {"statefulsets", "statefulset", "StatefulSet", "sts"},
                                             {"replicasets", "replicaset", "ReplicaSet", "rs"},
                                             {"daemonsets", "daemonset", "DaemonSet", "ds"}}) {
    r.push_back({"apps",
                 "v1",
                 k[0],
                 k[1],
                 k[2],
                 {k[3]},
                 all,
                 true,
                 Source::kAppliedAs,
                 v1::WORKLOAD,
                 k[2]});
  }
  r.push_back({"security.istio.io",
               "v1",
               "authorizationpolicies",
               "authorizationpolicy",
               "AuthorizationPolicy",
               {"ap"},
               istio_security,
               true,
               Source::kObjects,
               v1::AUTHORIZATION_POLICY,
               ""});
  r.push_back({"security.istio.io",
               "v1",
               "peerauthentications",
               "peerauthentication",
               "PeerAuthentication",
               {"pa"},
               istio_security,
               true,
               Source::kObjects,
               v1::PEER_AUTHENTICATION,
               ""});
  r.push_back({"networking.istio.io",
               "v1",
               "workloadentries",
               "workloadentry",
               "WorkloadEntry",
               {"we"},
               istio_networking,
               true,
               Source::kObjects,
               v1::WORKLOAD_ENTRY,
               ""});
  r.push_back({"discovery.k8s.io",
               "v1",
               "endpointslices",
               "endpointslice",
               "EndpointSlice",
               {},
               {},
               true,
               Source::kEndpointSlices,
               v1::SERVICE,
               ""});
  r.push_back({"podless.dev",
               "v1alpha1",
               "workloads",
               "workload",
               "Workload",
               {"wl"},
               {},
               true,
               Source::kNativeWorkload,
               v1::WORKLOAD,
               ""});
  return r;
}

// The named groups with their one version each, in the order of Resources().
std::vector<std::pair<std::string, std::string>> NamedGroups() {
  std::vector<std::pair<std::string, std::string>> groups;
  for (const Resource& resource : Resources()) {
    if (resource.group.empty()) continue;
    std::pair<std::string, std::string> gv{resource.group, resource.version};
    if (groups.empty() || groups.back() != gv) groups.push_back(gv);
  }
  return groups;
}

void WriteStrings(JsonWriter& w, const std::vector<std::string>& values) {
  w.BeginArray();
  for (const std::string& value : values) w.String(value);
  w.EndArray();
}

// verbs, shortNames and categories: the same fields in both discovery forms.
void WriteVerbsAndNames(JsonWriter& w, const Resource& r) {
  w.Key("verbs");
  WriteStrings(w, r.source == Source::kPods ? Verbs() : WriteVerbs());
  if (!r.short_names.empty()) {
    w.Key("shortNames");
    WriteStrings(w, r.short_names);
  }
  if (!r.categories.empty()) {
    w.Key("categories");
    WriteStrings(w, r.categories);
  }
}

// Deployments, StatefulSets and ReplicaSets have a scale subresource
// (write_handlers.h), which `kubectl scale` finds in discovery.
bool Scalable(const Resource& r) { return r.group == "apps" && r.name != "daemonsets"; }
const std::vector<std::string>& ScaleVerbs() {
  static const std::vector<std::string> verbs = {"get", "patch", "update"};
  return verbs;
}

// The APIResource of a scale subresource ("deployments/scale").
void WriteScaleResource(JsonWriter& w, const Resource& r) {
  w.BeginObject();
  w.Key("name").String(r.name + "/scale");
  w.Key("singularName").String("");
  w.Key("namespaced").Bool(true);
  w.Key("group").String("autoscaling").Key("version").String("v1");
  w.Key("kind").String("Scale");
  w.Key("verbs");
  WriteStrings(w, ScaleVerbs());
  w.EndObject();
}

// One APIResource of an APIResourceList.
void WriteApiResource(JsonWriter& w, const Resource& r) {
  w.BeginObject();
  w.Key("name").String(r.name);
  w.Key("singularName").String(r.singular);
  w.Key("namespaced").Bool(r.namespaced);
  w.Key("kind").String(r.kind);
  WriteVerbsAndNames(w, r);
  w.EndObject();
}

// One APIGroupDiscovery: the group's one version and its resources.
void WriteGroupDiscovery(JsonWriter& w, const std::string& group, const std::string& version) {
  w.BeginObject();
  w.Key("metadata").BeginObject().Key("name").String(group).EndObject();
  w.Key("versions").BeginArray().BeginObject();
  w.Key("version").String(version);
  w.Key("resources").BeginArray();
  for (const Resource& r : Resources()) {
    if (r.group != group || r.version != version) continue;
    w.BeginObject();
    w.Key("resource").String(r.name);
    w.Key("responseKind").BeginObject();
    w.Key("group").String(r.group).Key("version").String(r.version).Key("kind").String(r.kind);
    w.EndObject();
    w.Key("scope").String(r.namespaced ? "Namespaced" : "Cluster");
    w.Key("singularResource").String(r.singular);
    WriteVerbsAndNames(w, r);
    if (Scalable(r)) {
      w.Key("subresources").BeginArray().BeginObject();
      w.Key("subresource").String("scale");
      w.Key("responseKind").BeginObject();
      w.Key("group").String("autoscaling").Key("version").String("v1").Key("kind").String("Scale");
      w.EndObject();
      w.Key("verbs");
      WriteStrings(w, ScaleVerbs());
      w.EndObject().EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
  w.Key("freshness").String("Current");
  w.EndObject().EndArray();
  w.EndObject();
}

void WriteGroupVersion(JsonWriter& w, const std::string& group, const std::string& version) {
  w.BeginObject();
  w.Key("groupVersion").String(group + "/" + version);
  w.Key("version").String(version);
  w.EndObject();
}

}  // namespace

std::string Resource::GroupVersion() const {
  return group.empty() ? version : group + "/" + version;
}

bool Resource::BuiltIn() const {
  const std::string_view suffix = ".k8s.io";
  return group.empty() || group == "apps" || group == "autoscaling" ||
         (group.size() > suffix.size() && group.ends_with(suffix));
}

const std::vector<std::string>& Verbs() {
  static const std::vector<std::string> verbs = {"get", "list"};
  return verbs;
}

const std::vector<std::string>& WriteVerbs() {
  static const std::vector<std::string> verbs = {"create", "delete", "get",
                                                 "list",   "patch",  "update"};
  return verbs;
}

const std::vector<Resource>& Resources() {
  static const std::vector<Resource> resources = MakeResources();
  return resources;
}

const Resource* FindResource(std::string_view group, std::string_view version,
                             std::string_view name) {
  for (const Resource& r : Resources()) {
    if (r.group == group && r.version == version && r.name == name) return &r;
  }
  return nullptr;
}

std::string VersionJson() {
  JsonWriter w;
  w.BeginObject();
  w.Key("major").String("1");
  w.Key("minor").String("32");
  w.Key("gitVersion").String("v1.32.0+podless");
  w.Key("gitCommit").String("");
  w.Key("gitTreeState").String("clean");
  w.Key("buildDate").String("1970-01-01T00:00:00Z");
  w.Key("goVersion").String("none (podless, C++)");
  w.Key("compiler").String("podless");
  w.Key("platform").String("linux/amd64");
  w.EndObject();
  return w.Take();
}

std::string ApiVersionsJson(std::string_view server_address) {
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("APIVersions");
  w.Key("versions").BeginArray().String("v1").EndArray();
  w.Key("serverAddressByClientCIDRs").BeginArray().BeginObject();
  w.Key("clientCIDR").String("0.0.0.0/0").Key("serverAddress").String(server_address);
  w.EndObject().EndArray();
  w.EndObject();
  return w.Take();
}

std::string ApiGroupListJson() {
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("APIGroupList");
  w.Key("apiVersion").String("v1");
  w.Key("groups").BeginArray();
  for (const auto& [group, version] : NamedGroups()) {
    w.BeginObject();
    w.Key("name").String(group);
    w.Key("versions").BeginArray();
    WriteGroupVersion(w, group, version);
    w.EndArray();
    w.Key("preferredVersion");
    WriteGroupVersion(w, group, version);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::string ApiResourceListJson(std::string_view group, std::string_view version) {
  JsonWriter w;
  bool any = false;
  w.BeginObject();
  w.Key("kind").String("APIResourceList");
  w.Key("apiVersion").String("v1");
  w.Key("groupVersion")
      .String(group.empty() ? std::string(version)
                            : std::string(group) + "/" + std::string(version));
  w.Key("resources").BeginArray();
  for (const Resource& r : Resources()) {
    if (r.group != group || r.version != version) continue;
    WriteApiResource(w, r);
    if (Scalable(r)) WriteScaleResource(w, r);
    any = true;
  }
  w.EndArray();
  w.EndObject();
  return any ? w.Take() : std::string();
}

std::string AggregatedDiscoveryJson(bool core, std::string_view version) {
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("APIGroupDiscoveryList");
  w.Key("apiVersion").String("apidiscovery.k8s.io/" + std::string(version));
  w.Key("metadata").BeginObject().EndObject();
  w.Key("items").BeginArray();
  if (core) {
    WriteGroupDiscovery(w, "", "v1");
  } else {
    for (const auto& [group, group_version] : NamedGroups()) {
      WriteGroupDiscovery(w, group, group_version);
    }
  }
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::string AggregatedDiscoveryVersion(std::string_view accept) {
  for (const MediaType& type : ParseAccept(accept)) {
    if (type.Param("g") == "apidiscovery.k8s.io" && type.Param("as") == "APIGroupDiscoveryList") {
      const std::string version = type.Param("v");
      if (version == "v2" || version == "v2beta1") return version;
      continue;
    }
    if (type.type == "application/json" || type.type == "*/*") return "";
  }
  return "";
}

std::string AggregatedDiscoveryContentType(std::string_view version) {
  return "application/json;g=apidiscovery.k8s.io;v=" + std::string(version) +
         ";as=APIGroupDiscoveryList";
}

}  // namespace podless::api::kube
