#include "api/kube/objects.h"

#include <openssl/sha.h>
#include <yaml-cpp/yaml.h>

#include <ctime>

#include "api/kube/kube_defaults.h"
#include "api/output_format.h"
#include "api/yaml_json.h"
#include "proxy/base/json.h"

namespace podless::api::kube {
namespace {

using proxy::JsonWriter;

constexpr const char* kNone = "<none>";

// A string node that stays a string in JSON whatever it reads as ("true").
YAML::Node Str(const std::string& text) {
  YAML::Node node(text);
  node.SetTag("!");
  return node;
}

YAML::Node Load(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception&) {
    return YAML::Node(YAML::NodeType::Map);
  }
}

// A stable uid for an object (its kind, namespace and name), in UUID form:
// podless keeps no uids, and clients only compare them.
std::string Uid(const std::string& kind, const std::string& ns, const std::string& name) {
  const std::string key = kind + "/" + ns + "/" + name;
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(key.data()), key.size(), digest);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string NamespaceOf(const v1::ObjectMeta& meta) {
  return meta.namespace_().empty() ? "default" : meta.namespace_();
}

std::map<std::string, std::string> Labels(
    const google::protobuf::Map<std::string, std::string>& m) {
  return {m.begin(), m.end()};
}

// The labels of a node's metadata.labels (an applied document's own).
std::map<std::string, std::string> NodeLabels(const YAML::Node& object) {
  std::map<std::string, std::string> labels;
  const YAML::Node node = object["metadata"] ? object["metadata"]["labels"] : YAML::Node();
  if (!node || !node.IsMap()) return labels;
  for (const auto& entry : node) {
    if (entry.second.IsScalar()) labels[entry.first.Scalar()] = entry.second.Scalar();
  }
  return labels;
}

// The earliest start of a workload's replicas: its creation by this agent
// (or the agent's start, for an older one). 0 when it has none.
int64_t WorkloadCreated(const v1::Workload& workload) {
  int64_t created = 0;
  for (const v1::Replica& r : workload.status().replicas()) {
    if (r.started_at() > 0 && (created == 0 || r.started_at() < created)) created = r.started_at();
  }
  return created;
}

uint32_t DesiredReplicas(const v1::Workload& workload) {
  return workload.spec().has_replicas() ? workload.spec().replicas().value() : 1;
}

int ReadyReplicas(const v1::Workload& workload) {
  int ready = 0;
  for (const v1::Replica& r : workload.status().replicas()) ready += r.ready() ? 1 : 0;
  return ready;
}

// metadata.namespace, uid and creationTimestamp, which podless's own
// documents leave out, then the node as JSON.
void FillMetadata(YAML::Node& object, const Resource& resource, const Item& item) {
  const std::string& name = item.name;
  const std::string& ns = item.ns;
  YAML::Node meta = object["metadata"];
  if (!meta || !meta.IsMap()) {
    meta = YAML::Node(YAML::NodeType::Map);
    object["metadata"] = meta;
  }
  meta["name"] = Str(name);
  if (resource.namespaced) meta["namespace"] = Str(ns);
  meta["uid"] = Str(Uid(resource.kind, ns, name));
  meta["resourceVersion"] = Str(std::to_string(item.resource_version));
  if (item.created > 0) meta["creationTimestamp"] = Str(Rfc3339(item.created));
}

// ---------------------------------------------------------------------------
// Pods: one per replica.

// The pod template of an applied workload's document: a Pod's own metadata
// and spec, a controller's spec.template.
YAML::Node PodTemplate(const YAML::Node& document, bool is_pod) {
  if (is_pod) return document;
  const YAML::Node spec = document["spec"];
  if (spec && spec["template"]) return spec["template"];
  return YAML::Node(YAML::NodeType::Map);
}

// A spec for a workload applied in podless's own form: a container named
// after the workload, its image naming the in-proxy app.
YAML::Node NativePodSpec(const v1::Workload& workload) {
  YAML::Node container;
  container["name"] = Str(workload.metadata().name());
  std::string app = "echo";
  if (workload.spec().app().has_static_()) app = "static";
  if (workload.spec().app().has_forward()) app = "forward";
  if (workload.spec().app().has_exec()) app = "exec";
  container["image"] = Str("podless/" + app);
  for (const v1::Port& port : workload.spec().ports()) {
    YAML::Node p;
    if (!port.name().empty()) p["name"] = Str(port.name());
    p["containerPort"] = port.port();
    p["protocol"] = Str("TCP");
    container["ports"].push_back(p);
  }
  YAML::Node spec;
  spec["containers"].push_back(container);
  return spec;
}

// The container names of a pod spec, with `command: [x]` marking those that
// run one: what output_format's Pod status reads from a document.
std::string ContainerSkeleton(const YAML::Node& spec) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "spec" << YAML::Value << YAML::BeginMap << YAML::Key
      << "containers" << YAML::Value << YAML::BeginSeq;
  const YAML::Node containers = spec["containers"];
  if (containers && containers.IsSequence()) {
    for (const YAML::Node& c : containers) {
      if (!c.IsMap() || !c["name"] || !c["name"].IsScalar()) continue;
      out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted
          << c["name"].Scalar();
      if (c["command"] && !c["command"].IsNull()) {
        out << YAML::Key << "command" << YAML::Value << YAML::Flow << YAML::BeginSeq << "x"
            << YAML::EndSeq;
      }
      out << YAML::EndMap;
    }
  }
  out << YAML::EndSeq << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

// A workload as a Pod of one replica, for PodStatus: `object` without its
// replicas (each pod's status is made from a copy of this, not of a workload
// of N replicas: that was O(N) per pod), applied as a Pod of `spec`.
v1::Object PodShell(const v1::Object& object, const YAML::Node& spec) {
  v1::Object shell;
  v1::Workload* workload = shell.mutable_workload();
  *workload->mutable_metadata() = object.workload().metadata();
  *workload->mutable_spec() = object.workload().spec();
  *workload->mutable_status() = object.workload().status();
  workload->mutable_status()->clear_replicas();
  v1::AppliedAs* as = workload->mutable_metadata()->mutable_applied_as();
  as->set_api_version("v1");
  as->set_kind("Pod");
  as->set_document(ContainerSkeleton(spec));
  return shell;
}

// The Pod status output_format gives a workload applied as a Pod, for one
// replica: `shell` is PodShell's, with no replica (it has none again after).
YAML::Node PodStatus(v1::Object& shell, const v1::Replica& replica) {
  v1::WorkloadStatus* status = shell.mutable_workload()->mutable_status();
  *status->add_replicas() = replica;
  YAML::Node node = Load(FormatObject(shell, OutputFormat::kYaml))["status"];
  status->clear_replicas();
  return node;
}

// A replica's phase, as output_format's Pod status writes it (KubeStatus):
// Pending while a process waits, Succeeded once it completed, else Running.
std::string PodPhase(const v1::Replica& r) {
  if (r.process_reason() == "Completed") return "Succeeded";
  const bool waiting = !r.process_state().empty() && r.process_state() != "Running";
  return waiting ? "Pending" : "Running";
}

// The container names of a pod spec.
std::vector<std::string> ContainerNamesOf(const YAML::Node& spec) {
  std::vector<std::string> names;
  const YAML::Node containers = spec["containers"];
  if (!containers || !containers.IsSequence()) return names;
  for (const YAML::Node& c : containers) {
    if (c.IsMap() && c["name"] && c["name"].IsScalar()) names.push_back(c["name"].Scalar());
  }
  return names;
}

// kubectl's READY of a pod, "1/2": each container's own readiness when its
// process reports one, else the replica's (output_format's containerStatuses
// say the same).
std::string PodReady(const v1::Replica& r, const std::vector<std::string>& names) {
  if (names.empty()) return std::string(r.ready() ? "1" : "0") + "/1";
  size_t ready = 0;
  for (const std::string& name : names) {
    const v1::ContainerStatus* own = nullptr;
    for (const v1::ContainerStatus& c : r.containers()) {
      if (c.name() == name) own = &c;
    }
    ready += (own != nullptr ? own->ready() : r.ready()) ? 1 : 0;
  }
  return std::to_string(ready) + "/" + std::to_string(names.size());
}

// kubectl's STATUS of a pod: the waiting reason of a container when one
// waits, else the phase.
std::string PodStatusWord(const v1::Replica& r, const std::string& phase) {
  if (r.process_state() == "Terminating") return "Terminating";
  if (!r.process_reason().empty() && r.process_state() != "Running") return r.process_reason();
  return phase;
}

void AddPods(const Resource& resource, const v1::Object& object, int64_t now,
             const ItemFilter& select, bool with_json, std::vector<Item>& items) {
  const v1::Workload& workload = object.workload();
  const v1::ObjectMeta& meta = workload.metadata();
  const std::string ns = NamespaceOf(meta);
  const bool applied = meta.has_applied_as();
  const bool is_pod = applied && meta.applied_as().kind() == "Pod";
  const YAML::Node document = applied ? Load(meta.applied_as().document()) : YAML::Node();
  const YAML::Node tmpl = applied ? PodTemplate(document, is_pod) : YAML::Node();
  const YAML::Node template_spec = tmpl && tmpl["spec"] ? tmpl["spec"] : NativePodSpec(workload);
  v1::Object shell = PodShell(object, template_spec);
  const std::vector<std::string> container_names = ContainerNamesOf(template_spec);
  // What every pod of the workload shares, as JSON, made once: a pod is
  // written around these (YAML nodes per pod cost 1 ms each in a debug
  // build; 100,000 pods are listed).
  std::string spec_json, annotations_json, owner_json;
  if (with_json) {
    YAML::Node spec = YAML::Clone(template_spec);
    FillPodSpecDefaults(spec);
    spec_json = YamlNodeToJson(spec);
    if (tmpl && tmpl["metadata"] && tmpl["metadata"]["annotations"]) {
      annotations_json = YamlNodeToJson(tmpl["metadata"]["annotations"]);
    }
    if (applied && !is_pod) {
      JsonWriter owner;
      owner.BeginObject();
      owner.Key("apiVersion").String(meta.applied_as().api_version());
      owner.Key("kind").String(meta.applied_as().kind());
      owner.Key("name").String(meta.name());
      owner.Key("uid").String(Uid(meta.applied_as().kind(), ns, meta.name()));
      owner.Key("controller").Bool(true);
      owner.EndObject();
      owner_json = owner.Take();
    }
  }
  const std::map<std::string, std::string> labels = Labels(meta.labels());
  for (const v1::Replica& r : workload.status().replicas()) {
    const std::string& name = is_pod ? meta.name() : r.name();
    if (select && !select(name, ns, labels)) continue;
    Item item;
    item.name = name;
    item.ns = ns;
    item.labels = labels;
    item.created = r.started_at();
    // A pod changes with its workload (podless keeps no revision of a
    // replica's status).
    item.resource_version = meta.resource_version();
    if (with_json) {
      YAML::Node status = PodStatus(shell, r);
      JsonWriter w;
      w.BeginObject();
      w.Key("apiVersion").String("v1");
      w.Key("kind").String("Pod");
      w.Key("metadata").BeginObject();
      w.Key("name").String(item.name);
      if (!item.labels.empty()) {
        w.Key("labels").BeginObject();
        for (const auto& [key, value] : item.labels) w.Key(key).String(value);
        w.EndObject();
      }
      if (!annotations_json.empty()) w.Key("annotations").RawValue(annotations_json);
      if (!owner_json.empty())
        w.Key("ownerReferences").BeginArray().RawValue(owner_json).EndArray();
      w.Key("namespace").String(ns);
      w.Key("uid").String(Uid(resource.kind, ns, item.name));
      w.Key("resourceVersion").String(std::to_string(item.resource_version));
      if (item.created > 0) w.Key("creationTimestamp").String(Rfc3339(item.created));
      w.EndObject();
      if (r.node().empty() || spec_json.size() < 2) {
        w.Key("spec").RawValue(spec_json);
      } else {
        JsonWriter node;
        node.BeginObject().Key("nodeName").String(r.node()).EndObject();
        std::string spec = node.Take();  // {"nodeName":"x"}
        if (spec_json != "{}") spec.back() = ',', spec += spec_json.substr(1);
        w.Key("spec").RawValue(spec);
      }
      if (status) w.Key("status").RawValue(YamlNodeToJson(status));
      w.EndObject();
      item.json = w.Take();
    }

    const std::string address = r.address().empty() ? kNone : r.address();
    item.cells = {item.name,
                  PodReady(r, container_names),
                  PodStatusWord(r, PodPhase(r)),
                  std::to_string(r.restarts()),
                  HumanAge(item.created, now),
                  address,
                  r.node().empty() ? kNone : r.node(),
                  kNone,
                  kNone};
    items.push_back(std::move(item));
  }
}

// ---------------------------------------------------------------------------
// Every other resource: the object as `podless get -o json` prints it.

std::string ServiceType(const YAML::Node& object) {
  const YAML::Node spec = object["spec"];
  if (spec && spec["type"] && spec["type"].IsScalar()) return spec["type"].Scalar();
  return "ClusterIP";
}

std::string ServicePorts(const v1::Service& service) {
  std::string out;
  for (const v1::ServicePort& port : service.spec().ports()) {
    if (!out.empty()) out += ',';
    out += std::to_string(port.port()) + "/TCP";
  }
  return out.empty() ? kNone : out;
}

std::string Selector(const google::protobuf::Map<std::string, std::string>& selector) {
  std::string out;
  for (const auto& [key, value] : Labels(selector)) {
    if (!out.empty()) out += ',';
    out += key + "=" + value;
  }
  return out.empty() ? kNone : out;
}

const char* MtlsModeWord(v1::MtlsMode mode) {
  switch (mode) {
    case v1::STRICT:
      return "STRICT";
    case v1::PERMISSIVE:
      return "PERMISSIVE";
    case v1::DISABLE:
      return "DISABLE";
    default:
      return "UNSET";
  }
}

std::vector<std::string> CellsOf(const Resource& resource, const v1::Object& object,
                                 const YAML::Node& node, const std::string& name,
                                 const std::string& age) {
  const std::string& r = resource.name;
  if (object.has_workload()) {
    const v1::Workload& w = object.workload();
    const int ready = ReadyReplicas(w);
    const int current = w.status().replicas_size();
    const uint32_t desired = DesiredReplicas(w);
    const std::string ratio = std::to_string(ready) + "/" + std::to_string(desired);
    if (r == "deployments") {
      return {name, ratio, std::to_string(current), std::to_string(ready), age};
    }
    if (r == "statefulsets") return {name, ratio, age};
    if (r == "replicasets") {
      return {name, std::to_string(desired), std::to_string(current), std::to_string(ready), age};
    }
    if (r == "daemonsets") {
      const std::string n = std::to_string(current);
      return {name, n, n, std::to_string(ready), n, std::to_string(ready), kNone, age};
    }
    return {name, ratio, std::to_string(desired), age};  // workloads
  }
  if (object.has_service()) {
    const v1::Service& s = object.service();
    const std::string vip = s.status().vip().empty() ? kNone : s.status().vip();
    return {
        name, ServiceType(node), vip, kNone, ServicePorts(s), age, Selector(s.spec().selector())};
  }
  if (object.has_namespace_()) return {name, "Active", age};
  if (object.has_service_account()) return {name, "0", age};
  if (object.has_authorization_policy()) {
    const auto action = object.authorization_policy().spec().action();
    return {name, action == v1::DENY ? "DENY" : "ALLOW", age};
  }
  if (object.has_peer_authentication()) {
    return {name, MtlsModeWord(object.peer_authentication().spec().mode()), age};
  }
  if (object.has_workload_entry()) {
    return {name, age, object.workload_entry().spec().address()};
  }
  return {name, age};
}

bool Holds(const Resource& resource, const v1::Object& object) {
  switch (resource.source) {
    case Source::kPods:
      return object.has_workload();
    case Source::kAppliedAs:
      return object.has_workload() && object.workload().metadata().has_applied_as() &&
             object.workload().metadata().applied_as().kind() == resource.applied_kind;
    case Source::kNativeWorkload:
      return object.has_workload() && !object.workload().metadata().has_applied_as();
    case Source::kObjects:
      return KindOf(object) == resource.object_kind;
    case Source::kNone:
    case Source::kEndpoints:  // endpoints.h
    case Source::kEndpointSlices:
      return false;
  }
  return false;
}

void AddObject(const Resource& resource, const v1::Object& object, int64_t now,
               const ItemFilter& select, bool with_json, std::vector<Item>& items) {
  const v1::ObjectMeta& meta = MetaOf(object);
  Item item;
  item.name = meta.name();
  item.ns = resource.namespaced ? NamespaceOf(meta) : "";
  if (object.has_workload()) item.created = WorkloadCreated(object.workload());
  item.resource_version = meta.resource_version();
  YAML::Node node = Load(FormatObject(object, OutputFormat::kYaml));
  // A Deployment's own labels are its document's; the workload's labels are
  // its pod template's.
  item.labels = meta.has_applied_as() ? NodeLabels(node) : Labels(meta.labels());
  if (select && !select(item.name, item.ns, item.labels)) return;
  if (with_json) {
    if (object.has_service() && !object.service().status().vip().empty()) {
      // The VIP is where the API server keeps a Service's address (kubectl
      // describe prints IP and IPs from there).
      YAML::Node spec = node["spec"];
      if (!spec || !spec.IsMap()) {
        spec = YAML::Node(YAML::NodeType::Map);
        node["spec"] = spec;
      }
      spec["clusterIP"] = Str(object.service().status().vip());
      YAML::Node ips(YAML::NodeType::Sequence);
      ips.push_back(Str(object.service().status().vip()));
      spec["clusterIPs"] = ips;
      if (!spec["type"]) spec["type"] = Str("ClusterIP");
    }
    FillMetadata(node, resource, item);
    FillKubeDefaults(node);
    item.json = YamlNodeToJson(node);
  }
  item.cells = CellsOf(resource, object, node, item.name, HumanAge(item.created, now));
  items.push_back(std::move(item));
}

std::vector<Column> MakeColumns(std::vector<std::pair<std::string, int>> names) {
  std::vector<Column> columns;
  for (auto& [name, priority] : names) {
    Column c;
    c.name = name;
    c.type = "string";
    c.priority = priority;
    if (name == "Name") {
      c.format = "name";
      c.description = "Name must be unique within a namespace.";
    }
    columns.push_back(std::move(c));
  }
  return columns;
}

void WritePartialMetadata(JsonWriter& w, const Resource& resource, const Item& item) {
  w.BeginObject();
  w.Key("kind").String("PartialObjectMetadata");
  w.Key("apiVersion").String("meta.k8s.io/v1");
  w.Key("metadata").BeginObject();
  w.Key("name").String(item.name);
  if (!item.ns.empty()) w.Key("namespace").String(item.ns);
  w.Key("uid").String(Uid(resource.kind, item.ns, item.name));
  w.Key("resourceVersion").String(std::to_string(item.resource_version));
  if (item.created > 0) w.Key("creationTimestamp").String(Rfc3339(item.created));
  if (!item.labels.empty()) {
    w.Key("labels").BeginObject();
    for (const auto& [key, value] : item.labels) w.Key(key).String(value);
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
}

}  // namespace

std::string Rfc3339(int64_t unix_seconds) {
  const time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const std::vector<Column>& Columns(const Resource& resource) {
  static const std::map<std::string, std::vector<Column>> columns = {
      {"pods", MakeColumns({{"Name", 0},
                            {"Ready", 0},
                            {"Status", 0},
                            {"Restarts", 0},
                            {"Age", 0},
                            {"IP", 1},
                            {"Node", 1},
                            {"Nominated Node", 1},
                            {"Readiness Gates", 1}})},
      {"deployments",
       MakeColumns({{"Name", 0}, {"Ready", 0}, {"Up-to-date", 0}, {"Available", 0}, {"Age", 0}})},
      {"statefulsets", MakeColumns({{"Name", 0}, {"Ready", 0}, {"Age", 0}})},
      {"replicasets",
       MakeColumns({{"Name", 0}, {"Desired", 0}, {"Current", 0}, {"Ready", 0}, {"Age", 0}})},
      {"daemonsets", MakeColumns({{"Name", 0},
                                  {"Desired", 0},
                                  {"Current", 0},
                                  {"Ready", 0},
                                  {"Up-to-date", 0},
                                  {"Available", 0},
                                  {"Node Selector", 0},
                                  {"Age", 0}})},
      {"workloads", MakeColumns({{"Name", 0}, {"Ready", 0}, {"Replicas", 0}, {"Age", 0}})},
      {"services", MakeColumns({{"Name", 0},
                                {"Type", 0},
                                {"Cluster-IP", 0},
                                {"External-IP", 0},
                                {"Port(s)", 0},
                                {"Age", 0},
                                {"Selector", 1}})},
      {"namespaces", MakeColumns({{"Name", 0}, {"Status", 0}, {"Age", 0}})},
      {"serviceaccounts", MakeColumns({{"Name", 0}, {"Secrets", 0}, {"Age", 0}})},
      {"authorizationpolicies", MakeColumns({{"Name", 0}, {"Action", 0}, {"Age", 0}})},
      {"peerauthentications", MakeColumns({{"Name", 0}, {"Mode", 0}, {"Age", 0}})},
      {"workloadentries", MakeColumns({{"Name", 0}, {"Age", 0}, {"Address", 0}})},
      {"endpoints", MakeColumns({{"Name", 0}, {"Endpoints", 0}, {"Age", 0}})},
      {"endpointslices",
       MakeColumns({{"Name", 0}, {"AddressType", 0}, {"Ports", 0}, {"Endpoints", 0}, {"Age", 0}})},
  };
  static const std::vector<Column> fallback = MakeColumns({{"Name", 0}, {"Age", 0}});
  auto it = columns.find(resource.name);
  return it == columns.end() ? fallback : it->second;
}

std::vector<Item> ItemsOf(const Resource& resource, const std::vector<v1::Object>& objects,
                          int64_t now, const ItemFilter& select, bool with_json) {
  std::vector<Item> items;
  for (const v1::Object& object : objects) {
    if (!Holds(resource, object)) continue;
    if (resource.source == Source::kPods) {
      AddPods(resource, object, now, select, with_json, items);
    } else {
      AddObject(resource, object, now, select, with_json, items);
    }
  }
  return items;
}

std::string ObjectUid(std::string_view kind, const std::string& ns, const std::string& name) {
  return Uid(std::string(kind), ns, name);
}

std::string HumanAge(int64_t created, int64_t now) {
  if (created <= 0) return "<unknown>";
  int64_t s = now - created;
  if (s < 0) s = 0;
  const int64_t m = s / 60, h = s / 3600, d = s / 86400;
  if (s < 120) return std::to_string(s) + "s";
  if (m < 10) return std::to_string(m) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
  if (h < 3) return std::to_string(m) + "m";
  if (h < 8) return std::to_string(h) + "h" + (m % 60 ? std::to_string(m % 60) + "m" : "");
  if (h < 48) return std::to_string(h) + "h";
  if (h < 24 * 8) return std::to_string(d) + "d" + (h % 24 ? std::to_string(h % 24) + "h" : "");
  if (d < 365 * 2) return std::to_string(d) + "d";
  return std::to_string(d / 365) + "y";
}

void WriteListMeta(JsonWriter& w, const ListMeta& meta) {
  w.Key("metadata").BeginObject();
  w.Key("resourceVersion").String(std::to_string(meta.resource_version));
  if (!meta.continue_token.empty()) {
    w.Key("continue").String(meta.continue_token);
    w.Key("remainingItemCount").Int(static_cast<int64_t>(meta.remaining));
  }
  w.EndObject();
}

std::string ListJson(const Resource& resource, const std::vector<Item>& items,
                     const ListMeta& meta) {
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String(resource.kind + "List");
  w.Key("apiVersion").String(resource.GroupVersion());
  WriteListMeta(w, meta);
  w.Key("items").BeginArray();
  for (const Item& item : items) w.RawValue(item.json);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::string TableJson(const Resource& resource, std::string_view version,
                      const std::vector<Item>& items, const ListMeta& meta) {
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("Table");
  w.Key("apiVersion").String("meta.k8s.io/" + std::string(version));
  WriteListMeta(w, meta);
  w.Key("columnDefinitions").BeginArray();
  for (const Column& c : Columns(resource)) {
    w.BeginObject();
    w.Key("name").String(c.name);
    w.Key("type").String(c.type);
    w.Key("format").String(c.format);
    w.Key("description").String(c.description);
    w.Key("priority").Int(c.priority);
    w.EndObject();
  }
  w.EndArray();
  w.Key("rows").BeginArray();
  for (const Item& item : items) {
    w.BeginObject();
    w.Key("cells").BeginArray();
    for (const std::string& cell : item.cells) w.String(cell);
    w.EndArray();
    w.Key("object");
    WritePartialMetadata(w, resource, item);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return w.Take();
}

}  // namespace podless::api::kube
