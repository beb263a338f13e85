#include "api/kube/schemas.h"

#include <set>
#include <string>
#include <vector>

#include "workloads/manifest_fields.h"

namespace podless::api::kube {
namespace {

using proxy::JsonWriter;
using workloads::manifest::FieldInfo;
using workloads::manifest::ManifestObjects;
using workloads::manifest::ObjectInfo;
namespace objects = workloads::manifest::objects;

constexpr std::string_view kRefPrefix = "#/components/schemas/";
constexpr std::string_view kObjectMeta = objects::kObjectMeta;
constexpr std::string_view kListMeta = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

// What a kind holds besides apiVersion, kind and metadata: its spec (an
// object of the table), fields of its own at the top level (a
// ServiceAccount's), and what podless reports in its status.
struct KindInfo {
  std::string_view kind;
  std::string_view description;
  std::string_view spec;              // a table object, or ""
  std::vector<FieldInfo> top_fields;  // besides apiVersion, kind, metadata
  std::string_view status;            // what podless reports, or "" for none
  bool applied = true;                // podless apply takes it
};

const std::vector<KindInfo>& Kinds() {
  static const std::vector<KindInfo> kinds = {
      {"Pod",
       "A replica of a workload: podless runs one per replica of each workload.",
       objects::kPodSpec,
       {},
       "What podless reports of the replica: phase, podIP, podIPs (the replica's address), "
       "conditions (Ready) and containerStatuses (ready, restartCount, state)."},
      {"Service",
       "A Service: a VIP balanced over the ready replicas its selector picks.",
       objects::kServiceSpec,
       {},
       "loadBalancer (empty): the VIP is spec.clusterIP."},
      {"Namespace",
       "A namespace: objects' names are unique within one.",
       "",
       {{"spec", "object", "finalizers only, which podless has no use for."}},
       "phase: Active."},
      {"ServiceAccount",
       "A service account: the SPIFFE identity (spiffe://<trust domain>/ns/<namespace>/sa/<name>) "
       "of the workloads that name it.",
       "",
       {},
       ""},
      {"Deployment",
       "A Deployment: a podless Workload of its pod template's replicas.",
       objects::kDeploymentSpec,
       {},
       "replicas, readyReplicas, availableReplicas, updatedReplicas as podless counts them."},
      {"StatefulSet",
       "A StatefulSet: a podless Workload of its pod template's replicas.",
       objects::kStatefulSetSpec,
       {},
       "replicas, readyReplicas, currentReplicas."},
      {"ReplicaSet",
       "A ReplicaSet: a podless Workload of its pod template's replicas.",
       objects::kReplicaSetSpec,
       {},
       "replicas, readyReplicas, availableReplicas."},
      {"DaemonSet",
       "A DaemonSet: one replica on the agent it is applied to.",
       objects::kDaemonSetSpec,
       {},
       "desiredNumberScheduled, numberReady, numberAvailable."},
      {"AuthorizationPolicy",
       "Istio's AuthorizationPolicy, enforced by the destination's agent.",
       objects::kAuthorizationPolicySpec,
       {},
       ""},
      {"PeerAuthentication",
       "Istio's PeerAuthentication: plaintext or mutual TLS (HBONE) only.",
       objects::kPeerAuthenticationSpec,
       {},
       ""},
      {"WorkloadEntry",
       "Istio's WorkloadEntry: a workload outside podless, reached over HBONE.",
       objects::kWorkloadEntrySpec,
       {},
       ""},
      {"Workload",
       "A podless Workload: replicas of an in-proxy app or a process.",
       "dev.podless.v1alpha1.WorkloadSpec",
       {},
       "replicas: name, address, spiffeId, ready and the process's state, per replica."},
      {"Event",
       "An event. podless records no events: lists of events are always empty (kubectl describe "
       "prints none).",
       "",
       {{"involvedObject", "object", "The object the event is about."},
        {"reason", "string", "Why the event happened."},
        {"message", "string", "A description of the event."},
        {"type", "string", "Normal or Warning."}},
       "",
       false},
      {"EndpointSlice",
       "A slice of a Service's endpoints: the addresses of the replicas its selector picks, with "
       "their readiness, labeled kubernetes.io/service-name.",
       "",
       {{"addressType", "string", "IPv4."},
        {"endpoints", "[]object", "addresses, conditions (ready, serving), nodeName, targetRef."},
        {"ports", "[]object", "The replicas' ports, named as the Service's."}},
       "",
       false},
      {"Endpoints",
       "The endpoints of a Service: the addresses of the replicas its selector picks, ready ones "
       "in addresses and the others in notReadyAddresses, with the Service's ports.",
       "",
       {{"subsets", "[]object", "addresses, notReadyAddresses and ports."}},
       "",
       false},
  };
  return kinds;
}

const KindInfo* KindInfoOf(std::string_view kind) {
  for (const KindInfo& k : Kinds()) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

const ObjectInfo* TableObject(std::string_view name) {
  for (const ObjectInfo& o : ManifestObjects()) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

// A type names a table object when it is none of the basic types.
std::string_view ObjectOfType(std::string_view type) {
  if (type.starts_with("[]")) type.remove_prefix(2);
  static const std::set<std::string_view> basic = {"string",        "integer", "boolean",
                                                   "int-or-string", "object",  "map"};
  return basic.count(type) ? std::string_view() : type;
}

void WriteRef(JsonWriter& w, std::string_view name) {
  w.Key("allOf").BeginArray().BeginObject();
  w.Key("$ref").String(std::string(kRefPrefix) + std::string(name));
  w.EndObject().EndArray();
  w.Key("default").BeginObject().EndObject();
}

// The schema of one value of `type` (no description): keys into an open
// object.
void WriteTypeKeys(JsonWriter& w, std::string_view type) {
  if (type == "string") {
    w.Key("type").String("string");
  } else if (type == "integer") {
    w.Key("type").String("integer").Key("format").String("int32");
  } else if (type == "boolean") {
    w.Key("type").String("boolean");
  } else if (type == "int-or-string") {
    w.Key("x-kubernetes-int-or-string").Bool(true);
  } else if (type == "object") {
    w.Key("type").String("object");
    w.Key("x-kubernetes-preserve-unknown-fields").Bool(true);
  } else if (type == "map") {
    w.Key("type").String("object");
    w.Key("additionalProperties").BeginObject();
    w.Key("type").String("string").Key("default").String("");
    w.EndObject();
  } else if (type.starts_with("[]")) {
    w.Key("type").String("array");
    w.Key("items").BeginObject();
    WriteTypeKeys(w, type.substr(2));
    w.EndObject();
  } else {
    WriteRef(w, type);
  }
}

std::string Description(const FieldInfo& f) {
  std::string text(f.description);
  if (!f.ignored.empty()) {
    text += " podless accepts this field but does not act on it (a warning says so): " +
            std::string(f.ignored) + ".";
  }
  return text;
}

void WriteField(JsonWriter& w, const FieldInfo& f) {
  w.Key(f.name).BeginObject();
  WriteTypeKeys(w, f.type);
  w.Key("description").String(Description(f));
  if (!f.merge_key.empty()) {
    w.Key("x-kubernetes-patch-merge-key").String(f.merge_key);
    w.Key("x-kubernetes-patch-strategy").String("merge");
  }
  if (!f.map_keys.empty()) {
    w.Key("x-kubernetes-list-map-keys").BeginArray();
    std::string_view keys = f.map_keys;
    while (!keys.empty()) {
      const size_t comma = keys.find(',');
      w.String(keys.substr(0, comma));
      keys = comma == std::string_view::npos ? std::string_view() : keys.substr(comma + 1);
    }
    w.EndArray();
    w.Key("x-kubernetes-list-type").String("map");
  }
  w.EndObject();
}

void WriteRequired(JsonWriter& w, const std::vector<FieldInfo>& fields) {
  bool any = false;
  for (const FieldInfo& f : fields) {
    if (!f.required) continue;
    if (!any) w.Key("required").BeginArray();
    any = true;
    w.String(f.name);
  }
  if (any) w.EndArray();
}

void WriteTableObject(JsonWriter& w, const ObjectInfo& o) {
  w.Key(o.name).BeginObject();
  w.Key("description").String(o.description);
  w.Key("type").String("object");
  w.Key("properties").BeginObject();
  for (const FieldInfo& f : o.fields) WriteField(w, f);
  w.EndObject();
  WriteRequired(w, o.fields);
  w.EndObject();
}

void WriteGvk(JsonWriter& w, const Resource& r, std::string_view kind) {
  w.Key("x-kubernetes-group-version-kind").BeginArray().BeginObject();
  w.Key("group").String(r.group).Key("kind").String(kind).Key("version").String(r.version);
  w.EndObject().EndArray();
}

FieldInfo ApiVersionField() {
  return {"apiVersion", "string",
          "APIVersion defines the versioned schema of this representation of an object."};
}
FieldInfo KindField() {
  return {"kind", "string",
          "Kind is a string value representing the REST resource this object "
          "represents."};
}

void WriteKind(JsonWriter& w, const Resource& r) {
  const KindInfo* info = KindInfoOf(r.kind);
  w.Key(KindSchemaName(r)).BeginObject();
  w.Key("description").String(info ? info->description : r.kind);
  w.Key("type").String("object");
  w.Key("properties").BeginObject();
  WriteField(w, ApiVersionField());
  WriteField(w, KindField());
  WriteField(w, {"metadata", kObjectMeta, "Standard object's metadata."});
  if (info != nullptr) {
    if (!info->spec.empty()) {
      WriteField(w, {"spec", info->spec,
                     "The specification, as podless reads it: the fields below are those "
                     "`podless apply` takes (any other is an error)."});
    }
    for (const FieldInfo& f : info->top_fields) WriteField(w, f);
    // A kind of the table (ServiceAccount) takes its fields at the top.
    if (const ObjectInfo* own = TableObject(KindSchemaName(r))) {
      for (const FieldInfo& f : own->fields) WriteField(w, f);
    }
    if (!info->status.empty()) {
      WriteField(w, {"status", "object", std::string_view(info->status)});
    }
  }
  w.EndObject();
  WriteGvk(w, r, r.kind);
  w.EndObject();

  w.Key(ListSchemaName(r)).BeginObject();
  w.Key("description").String("A list of " + r.kind + " objects.");
  w.Key("type").String("object");
  w.Key("properties").BeginObject();
  WriteField(w, ApiVersionField());
  const std::string items = "[]" + KindSchemaName(r);
  WriteField(w, {"items", items, "The objects."});
  WriteField(w, {"metadata", kListMeta, "Standard list metadata."});
  w.EndObject();
  w.EndObject();
}

// The table objects reachable from `name`, depth first.
void Reach(std::string_view name, std::set<std::string_view>& seen) {
  const ObjectInfo* o = TableObject(name);
  if (o == nullptr || !seen.insert(o->name).second) return;
  for (const FieldInfo& f : o->fields) {
    if (std::string_view inner = ObjectOfType(f.type); !inner.empty()) Reach(inner, seen);
  }
}

}  // namespace

std::string KindSchemaName(const Resource& r) {
  if (r.group.empty()) return "io.k8s.api.core.v1." + r.kind;
  if (r.group == "apps") return "io.k8s.api.apps." + r.version + "." + r.kind;
  // Kubernetes' own groups: discovery.k8s.io -> io.k8s.api.discovery.
  if (r.group.ends_with(".k8s.io")) {
    return "io.k8s.api." + r.group.substr(0, r.group.find('.')) + "." + r.version + "." + r.kind;
  }
  // Other groups as the API server names CRDs: the group's labels reversed.
  std::string reversed;
  std::string_view group = r.group;
  while (!group.empty()) {
    const size_t dot = group.rfind('.');
    const std::string_view label = dot == std::string_view::npos ? group : group.substr(dot + 1);
    if (!reversed.empty()) reversed += '.';
    reversed += label;
    group = dot == std::string_view::npos ? std::string_view() : group.substr(0, dot);
  }
  return reversed + "." + r.version + "." + r.kind;
}

bool KindIsApplied(const Resource& r) {
  const KindInfo* info = KindInfoOf(r.kind);
  return info != nullptr && info->applied;
}

std::string ListSchemaName(const Resource& r) { return KindSchemaName(r) + "List"; }

void WriteSchemas(JsonWriter& w, std::string_view group, std::string_view version) {
  std::set<std::string_view> reached;
  Reach(kObjectMeta, reached);
  w.BeginObject();
  for (const Resource& r : Resources()) {
    if (r.group != group || r.version != version) continue;
    WriteKind(w, r);
    if (const KindInfo* info = KindInfoOf(r.kind); info != nullptr && !info->spec.empty()) {
      Reach(info->spec, reached);
    }
  }
  for (const ObjectInfo& o : ManifestObjects()) {
    if (reached.count(o.name)) WriteTableObject(w, o);
  }
  // What the operations of the paths refer to.
  w.Key("io.k8s.apimachinery.pkg.apis.meta.v1.Patch").BeginObject();
  w.Key("description")
      .String(
          "Patch is provided to give a concrete name and type to the Kubernetes PATCH "
          "request body.");
  w.Key("type").String("object");
  w.EndObject();
  w.Key("io.k8s.apimachinery.pkg.apis.meta.v1.Status").BeginObject();
  w.Key("description")
      .String("Status is a return value for calls that don't return other objects.");
  w.Key("type").String("object");
  w.Key("properties").BeginObject();
  WriteField(w, {"code", "integer", "Suggested HTTP return code for this status."});
  WriteField(w, {"message", "string", "A human-readable description of the status."});
  WriteField(w, {"reason", "string",
                 "A machine-readable description of why this operation is "
                 "in the \"Failure\" status."});
  WriteField(w, {"details", "object", "Extended data: name, kind and causes (field, message)."});
  w.EndObject();
  w.EndObject();
  w.Key(kListMeta).BeginObject();
  w.Key("description").String("Standard list metadata.");
  w.Key("type").String("object");
  w.Key("properties").BeginObject();
  WriteField(w, {"resourceVersion", "string", "The list's version."});
  w.EndObject();
  w.EndObject();
  w.EndObject();
}

}  // namespace podless::api::kube
