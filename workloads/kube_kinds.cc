// Kubernetes' workload kinds (apps/v1 Deployment, StatefulSet, ReplicaSet,
// DaemonSet; v1 Pod) and v1 Service, read into the podless model: a pod
// template becomes a Workload (its labels are the Workload's labels, its
// containers' ports the Workload's ports), a container with a command an exec
// app, a pod of image-only containers an in-proxy app. Fields podless keeps
// but does not act on are warnings; unknown fields are errors, as with
// `kubectl apply --validate=strict`. README "Bring your Kubernetes YAML".
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "workloads/document_reader.h"
#include "workloads/manifest_fields.h"

namespace podless::workloads::manifest {

namespace {

// The annotation that picks the in-proxy app of an image-only pod.
constexpr char kAppAnnotation[] = "podless.dev/app";

// Istio's protocol selection by port name: "http", "http2", "http-*",
// "http2-*" are HTTP.
bool IsHttpName(std::string_view name) {
  return name == "http" || name == "http2" || name.starts_with("http-") ||
         name.starts_with("http2-");
}

bool IsHttpAppProtocol(std::string_view protocol) {
  return protocol == "http" || protocol == "http2" || protocol == "kubernetes.io/h2c";
}

// A port name that declares a protocol other than HTTP by Istio's prefixes.
bool NamesOtherProtocol(std::string_view name) {
  for (std::string_view prefix :
       {"tcp", "tls", "https", "grpc", "grpc-web", "mongo", "mysql", "redis", "udp"}) {
    if (name == prefix ||
        (name.size() > prefix.size() && name.starts_with(prefix) && name[prefix.size()] == '-')) {
      return true;
    }
  }
  return false;
}

// A literal value in an exec env var: the supervisor expands $(VAR) in env
// values, and "$$" is a literal '$' (Kubernetes' own escaping).
std::string EscapeDollars(const std::string& text) {
  std::string out;
  for (char ch : text) {
    out += ch;
    if (ch == '$') out += '$';
  }
  return out;
}

// Values that ask for nothing: empty, or what Kubernetes fills in itself
// (`kubectl get -o yaml` output holds them). Ignored fields with such a value
// are accepted without a warning.
bool IsKubeDefault(std::string_view field, const YAML::Node& value) {
  if (value.IsNull() || ((value.IsMap() || value.IsSequence()) && value.size() == 0)) return true;
  if (!value.IsScalar()) return false;
  static constexpr std::pair<const char*, const char*> kDefaults[] = {
      {"dnsPolicy", "ClusterFirst"},
      {"schedulerName", "default-scheduler"},
      {"terminationMessagePath", "/dev/termination-log"},
      {"terminationMessagePolicy", "File"},
      {"enableServiceLinks", "true"},
      {"hostNetwork", "false"},
      {"hostPID", "false"},
      {"hostIPC", "false"},
      {"shareProcessNamespace", "false"},
      {"stdin", "false"},
      {"stdinOnce", "false"},
      {"tty", "false"},
      {"paused", "false"},
      {"automountServiceAccountToken", "true"},
      {"podManagementPolicy", "OrderedReady"},
      {"minReadySeconds", "0"},
      {"revisionHistoryLimit", "10"},
      {"progressDeadlineSeconds", "600"},
  };
  for (const auto& [name, default_value] : kDefaults) {
    if (field == name && value.Scalar() == default_value) return true;
  }
  return false;
}

// The fields of a pod spec and a container podless keeps but does not act
// on, and why: the table's `ignored` entries (workloads/manifest_fields.h).
std::vector<std::pair<const char*, std::string>> IgnoredFields(std::string_view object) {
  std::vector<std::pair<const char*, std::string>> ignored;
  for (const FieldInfo& f : ObjectNamed(object).fields) {
    if (!f.ignored.empty()) ignored.emplace_back(f.name, std::string(f.ignored));
  }
  return ignored;
}

}  // namespace

// What distinguishes the kinds that own pods: their spec's fields (the
// table's object, with the fields podless ignores and why).
struct DocumentReader::PodOwner {
  const char* kind;
  std::string_view spec;
};

void DocumentReader::WarnIgnoredFields(const Fields& fields, std::string_view object) {
  for (const FieldInfo& f : ObjectNamed(object).fields) {
    if (f.ignored.empty()) continue;
    if (const Entry* e = fields.Find(f.name); e != nullptr && !IsKubeDefault(f.name, e->value)) {
      Warn(Join(fields.path, f.name), e->key_node.Mark(), "ignored: " + std::string(f.ignored));
    }
  }
}

void DocumentReader::ReadDeployment(const Fields& root, ObjectMeta meta,
                                    std::optional<Object>& out) {
  static const PodOwner kind{"Deployment", objects::kDeploymentSpec};
  ReadPodOwner(root, std::move(meta), kind, out);
}

void DocumentReader::ReadStatefulSet(const Fields& root, ObjectMeta meta,
                                     std::optional<Object>& out) {
  static const PodOwner kind{"StatefulSet", objects::kStatefulSetSpec};
  ReadPodOwner(root, std::move(meta), kind, out);
}

void DocumentReader::ReadReplicaSet(const Fields& root, ObjectMeta meta,
                                    std::optional<Object>& out) {
  static const PodOwner kind{"ReplicaSet", objects::kReplicaSetSpec};
  ReadPodOwner(root, std::move(meta), kind, out);
}

void DocumentReader::ReadDaemonSet(const Fields& root, ObjectMeta meta,
                                   std::optional<Object>& out) {
  static const PodOwner kind{"DaemonSet", objects::kDaemonSetSpec};
  ReadPodOwner(root, std::move(meta), kind, out);
}

void DocumentReader::ReadPodOwner(const Fields& root, ObjectMeta meta, const PodOwner& kind,
                                  std::optional<Object>& out) {
  Workload w;
  w.metadata = std::move(meta);
  // The Workload's labels are its pods' (what Services and policies select);
  // the object's own labels stay in the stored document.
  w.metadata.labels.clear();
  const Entry* spec_entry = root.Find("spec");
  if (spec_entry == nullptr || spec_entry->value.IsNull()) {
    Error("spec", spec_entry ? spec_entry->key_node.Mark() : root.node.Mark(),
          "missing required field \"spec\" (selector and template)");
    out = std::move(w);
    return;
  }
  auto fields = ReadMapping(spec_entry->value, "spec", FieldNames(kind.spec));
  if (!fields) {
    out = std::move(w);
    return;
  }
  static const std::map<std::string_view, std::vector<std::pair<const char*, std::string>>>
      ignored_by_spec = [] {
        std::map<std::string_view, std::vector<std::pair<const char*, std::string>>> m;
        for (auto spec : {objects::kDeploymentSpec, objects::kStatefulSetSpec,
                          objects::kReplicaSetSpec, objects::kDaemonSetSpec}) {
          m.emplace(spec, IgnoredFields(spec));
        }
        return m;
      }();
  for (const auto& [field, why] : ignored_by_spec.at(kind.spec)) {
    if (const Entry* e = fields->Find(field); e != nullptr && !IsKubeDefault(field, e->value)) {
      Warn(Join("spec", field), e->key_node.Mark(), std::string("ignored: ") + why);
    }
  }
  if (const Entry* e = fields->Find("replicas")) {
    ReadInt(e->value, "spec.replicas", 0, kMaxReplicas, w.spec.replicas);
  }
  const Entry* pod_template = fields->Find("template");
  if (pod_template == nullptr || pod_template->value.IsNull()) {
    Error("spec.template", pod_template ? pod_template->key_node.Mark() : spec_entry->value.Mark(),
          "missing required field \"template\"");
  } else {
    ReadPodTemplate(pod_template->value, "spec.template", w.metadata, w, false);
  }
  const Entry* selector = fields->Find("selector");
  if (selector == nullptr || selector->value.IsNull()) {
    Error("spec.selector", selector ? selector->key_node.Mark() : spec_entry->value.Mark(),
          "missing required field \"selector\" (apps/v1 " + std::string(kind.kind) +
              " needs one; it must match spec.template.metadata.labels)");
  } else if (pod_template != nullptr && !pod_template->value.IsNull() &&
             !w.metadata.labels.empty()) {
    Labels match_labels;
    bool matches = true;
    if (ReadLabelSelector(selector->value, "spec.selector", match_labels, &w.metadata.labels,
                          matches) &&
        !matches) {
      // Kubernetes' own words: "`selector` does not match template `labels`".
      const Path labels_path = "spec.template.metadata.labels";
      auto it = marks_.find(labels_path);
      Error(labels_path, it != marks_.end() ? it->second : pod_template->value.Mark(),
            "selector does not match template labels: spec.selector must select the pods of "
            "spec.template (its matchLabels and matchExpressions must hold for these labels)");
    }
  }
  out = std::move(w);
}

// A LabelSelector: matchLabels, and matchExpressions (In, NotIn, Exists,
// DoesNotExist) evaluated against `labels` for the template check. Returns
// false when it could not be read (errors reported).
bool DocumentReader::ReadLabelSelector(const YAML::Node& node, const Path& path,
                                       Labels& match_labels, const Labels* labels, bool& matches) {
  const size_t errors = errors_.size();
  auto fields = ReadMapping(node, path, FieldNames(objects::kLabelSelector));
  if (!fields) return false;
  if (const Entry* e = fields->Find("matchLabels")) {
    ReadStringMap(e->value, Join(path, "matchLabels"), match_labels);
  }
  size_t expressions = 0;
  if (const Entry* e = fields->Find("matchExpressions")) {
    ForEach(e->value, Join(path, "matchExpressions"), "label selector requirements",
            [&](const YAML::Node& item, const Path& child) {
              ++expressions;
              auto f = ReadMapping(item, child, FieldNames(objects::kLabelSelectorRequirement));
              if (!f) return;
              std::string key;
              std::string op;
              std::vector<std::string> values;
              if (const Entry* x = f->Find("key")) ReadString(x->value, Join(child, "key"), key);
              if (const Entry* x = f->Find("values")) {
                ReadStringList(x->value, Join(child, "values"), values);
              }
              const Entry* op_entry = f->Find("operator");
              if (key.empty())
                Error(Join(child, "key"), item.Mark(), "missing required field \"key\"");
              if (op_entry == nullptr) {
                Error(Join(child, "operator"), item.Mark(),
                      "missing required field \"operator\" (In, NotIn, Exists, DoesNotExist)");
                return;
              }
              ReadString(op_entry->value, Join(child, "operator"), op);
              const bool needs_values = op == "In" || op == "NotIn";
              if (!needs_values && op != "Exists" && op != "DoesNotExist") {
                Error(Join(child, "operator"), op_entry->value.Mark(),
                      "unsupported value: must be one of In, NotIn, Exists, DoesNotExist, got " +
                          Describe(op_entry->value));
                return;
              }
              if (needs_values && values.empty()) {
                Error(Join(child, "values"), item.Mark(),
                      "must be non-empty when operator is " + op);
              } else if (!needs_values && !values.empty()) {
                Error(Join(child, "values"), f->Find("values")->value.Mark(),
                      "must be empty when operator is " + op);
              }
              if (labels == nullptr) return;
              auto it = labels->find(key);
              bool ok = true;
              if (op == "In" || op == "NotIn") {
                bool in = false;
                for (const std::string& v : values)
                  in = in || (it != labels->end() && it->second == v);
                ok = op == "In" ? in : !in;
              } else {
                ok = (it != labels->end()) == (op == "Exists");
              }
              matches = matches && ok;
            });
  }
  if (errors_.size() != errors) return false;
  if (match_labels.empty() && expressions == 0) {
    Error(path, MarkFor(path, node), "empty selector is invalid: it would select every pod");
    return false;
  }
  if (labels != nullptr && !LabelsMatch(match_labels, *labels)) matches = false;
  return true;
}

void DocumentReader::ReadPodTemplate(const YAML::Node& node, const Path& path,
                                     const ObjectMeta& owner, Workload& workload, bool) {
  auto fields = ReadMapping(node, path, FieldNames(objects::kPodTemplateSpec));
  if (!fields) return;
  Labels annotations;
  Path annotations_path;
  if (const Entry* m = fields->Find("metadata")) {
    const Path meta_path = Join(path, "metadata");
    // kubectl's output has `creationTimestamp: null` here; a template's name
    // and namespace are the API server's to set.
    if (auto meta = ReadMapping(m->value, meta_path, FieldNames(objects::kTemplateMeta))) {
      if (const Entry* e = meta->Find("labels")) {
        ReadStringMap(e->value, Join(meta_path, "labels"), workload.metadata.labels);
      }
      if (const Entry* e = meta->Find("annotations")) {
        ReadStringMap(e->value, Join(meta_path, "annotations"), annotations);
        annotations_path = Join(meta_path, "annotations");
      }
    }
  }
  if (workload.metadata.labels.empty()) {
    Error(Join(path, "metadata.labels"), MarkFor(path, node),
          "a pod template needs labels: the selector selects its pods by them");
  }
  // podless.dev/app: the template's annotation, else the object's own.
  Labels app_annotations;
  if (auto it = annotations.find(kAppAnnotation); it != annotations.end()) {
    app_annotations.emplace(it->first, it->second);
  } else if (auto own = owner.annotations->find(kAppAnnotation); own != owner.annotations->end()) {
    app_annotations.emplace(own->first, own->second);
    annotations_path = "metadata.annotations";
  }
  for (const auto& [key, value] : app_annotations) annotations.insert_or_assign(key, value);
  const Entry* spec = fields->Find("spec");
  if (spec == nullptr || spec->value.IsNull()) {
    Error(Join(path, "spec"), MarkFor(path, node), "missing required field \"spec\" (containers)");
    return;
  }
  ReadPodSpec(spec->value, Join(path, "spec"), annotations, Key(annotations_path, kAppAnnotation),
              workload, false);
}

void DocumentReader::ReadPod(const Fields& root, ObjectMeta meta, std::optional<Object>& out) {
  Workload w;
  w.metadata = std::move(meta);
  w.spec.replicas = 1;
  const Entry* spec = root.Find("spec");
  if (spec == nullptr || spec->value.IsNull()) {
    Error("spec", spec ? spec->key_node.Mark() : root.node.Mark(),
          "missing required field \"spec\" (containers)");
  } else {
    Labels annotations = *w.metadata.annotations;
    ReadPodSpec(spec->value, "spec", annotations, Key("metadata.annotations", kAppAnnotation), w,
                true);
  }
  out = std::move(w);
}

// A probe in Kubernetes' shape: tcpSocket and httpGet run; exec and grpc
// probes are not run (a warning; the replica is ready once its process runs).
void DocumentReader::ReadKubeProbe(const YAML::Node& node, const Path& path,
                                   std::optional<Probe>& out) {
  auto fields = ReadMapping(node, path, FieldNames(objects::kProbe));
  if (!fields) return;
  WarnIgnoredFields(*fields, objects::kProbe);
  Probe probe;
  const Entry* handler = nullptr;
  for (const Entry& e : fields->entries) {
    Path child = Join(path, e.key);
    if (e.key == "tcpSocket" || e.key == "httpGet") {
      if (handler != nullptr) {
        Error(child, e.key_node.Mark(),
              "only one of tcpSocket, httpGet may be set, and " + QuoteForMessage(handler->key) +
                  " is set already");
        continue;
      }
      handler = &e;
      const bool http = e.key == "httpGet";
      probe.kind = http ? Probe::Kind::kHttpGet : Probe::Kind::kTcpSocket;
      auto h = ReadMapping(e.value, child,
                           FieldNames(http ? objects::kHttpGetAction : objects::kTcpSocketAction));
      if (!h) continue;
      WarnIgnoredFields(*h, http ? objects::kHttpGetAction : objects::kTcpSocketAction);
      if (const Entry* x = h->Find("scheme");
          x != nullptr && x->value.IsScalar() && x->value.Scalar() != "HTTP") {
        Warn(Join(child, "scheme"), x->key_node.Mark(), "ignored: the probe speaks plain HTTP");
      }
      if (const Entry* x = h->Find("port")) ReadPortRef(x->value, Join(child, "port"), probe.port);
      if (const Entry* x = h->Find("path")) ReadString(x->value, Join(child, "path"), probe.path);
    } else {
      ReadProbeTiming(e, child, probe);
    }
  }
  if (handler == nullptr) {
    if (fields->Find("exec") == nullptr && fields->Find("grpc") == nullptr) {
      Error(path, MarkFor(path, node), "must set one of tcpSocket, httpGet, exec, grpc");
    }
    return;
  }
  out = std::move(probe);
}

void DocumentReader::ReadKubeSecurityContext(const YAML::Node& node, const Path& path,
                                             SecurityContext& out) {
  auto fields = ReadMapping(node, path, FieldNames(objects::kSecurityContext));
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path child = Join(path, e.key);
    if (e.key == "runAsUser" || e.key == "runAsGroup") {
      if (e.value.IsNull()) continue;
      uint32_t id = 0;
      const size_t errors = errors_.size();
      ReadInt(e.value, child, 0, kMaxRunAsId, id);
      if (errors_.size() != errors) continue;
      (e.key == "runAsUser" ? out.run_as_user : out.run_as_group) = id;
    } else if (e.key == "runAsNonRoot") {
      ReadBool(e.value, child, out.run_as_non_root);
    } else if (IsKubeDefault(e.key, e.value)) {
      continue;
    } else if (const FieldInfo* f = ObjectNamed(objects::kSecurityContext).Find(e.key);
               f != nullptr && !f->ignored.empty()) {
      Warn(child, e.key_node.Mark(), "ignored: " + std::string(f->ignored));
    }
  }
}

void DocumentReader::ReadPodSpec(const YAML::Node& node, const Path& path,
                                 const Labels& annotations, const Path& annotation_path,
                                 Workload& workload, bool pod_kind) {
  auto fields = ReadMapping(node, path, FieldNames(objects::kPodSpec));
  if (!fields) return;
  static const auto kIgnoredPodFields = IgnoredFields(objects::kPodSpec);
  for (const auto& [field, why] : kIgnoredPodFields) {
    if (const Entry* e = fields->Find(field); e != nullptr && !IsKubeDefault(field, e->value)) {
      Warn(Join(path, field), e->key_node.Mark(), std::string("ignored: ") + why);
    }
  }
  // Pod-level settings first: containers use them.
  SecurityContext pod_context;
  uint32_t grace_period = 30;
  RestartPolicy restart_policy = RestartPolicy::kAlways;
  for (const char* field : {"serviceAccount", "serviceAccountName"}) {
    // serviceAccountName wins over the deprecated serviceAccount.
    if (const Entry* e = fields->Find(field); e != nullptr && !e->value.IsNull()) {
      ReadString(e->value, Join(path, field), workload.spec.service_account);
      Alias("spec.serviceAccount", Join(path, field), e->value.Mark());
    }
  }
  if (const Entry* e = fields->Find("securityContext")) {
    ReadKubeSecurityContext(e->value, Join(path, "securityContext"), pod_context);
  }
  if (const Entry* e = fields->Find("terminationGracePeriodSeconds")) {
    ReadInt(e->value, Join(path, "terminationGracePeriodSeconds"), 0, kMaxInt32, grace_period);
  }
  if (const Entry* e = fields->Find("restartPolicy"); e != nullptr && !e->value.IsNull()) {
    const Path child = Join(path, "restartPolicy");
    if (pod_kind) {
      ReadEnum<RestartPolicy>(e->value, child,
                              {{"Always", RestartPolicy::kAlways},
                               {"OnFailure", RestartPolicy::kOnFailure},
                               {"Never", RestartPolicy::kNever}},
                              restart_policy);
    } else {
      // Kubernetes: the pods of a controller always restart.
      ReadEnum<RestartPolicy>(e->value, child, {{"Always", RestartPolicy::kAlways}},
                              restart_policy);
    }
  }

  const Entry* containers = fields->Find("containers");
  const Path containers_path = Join(path, "containers");
  if (containers == nullptr || !containers->value.IsSequence() || containers->value.size() == 0) {
    if (containers != nullptr && !containers->value.IsNull() && !containers->value.IsSequence()) {
      Error(containers_path, containers->value.Mark(),
            "expected a sequence of containers, got " + Describe(containers->value));
    } else {
      Error(containers_path, containers ? containers->key_node.Mark() : MarkFor(path, node),
            "missing required field \"containers\": a pod needs at least one container");
    }
    return;
  }
  // Which containers run: those with a command. An image alone names no
  // program podless could run (there is no container runtime). Several run
  // side by side in each replica's one sandbox, as a pod's containers do.
  std::vector<std::pair<std::string, size_t>> with_command;  // name, index
  for (size_t i = 0; i < containers->value.size(); ++i) {
    const YAML::Node c = containers->value[i];
    if (!c.IsMap()) continue;
    const YAML::Node command = c["command"];
    if (command && !command.IsNull()) {
      const YAML::Node name = c["name"];
      with_command.emplace_back(name && name.IsScalar() ? name.Scalar() : "", i);
    }
  }
  const bool exec_pod = !with_command.empty();
  std::string exec_names;  // "a" or "a", "b"
  for (const auto& [name, index] : with_command)
    exec_names += (exec_names.empty() ? "" : ", ") + QuoteForMessage(name);

  // The in-proxy app of an image-only pod: podless.dev/app.
  AppSpec in_proxy = EchoApp{};
  std::string app_name = "echo";
  if (auto it = annotations.find(kAppAnnotation); it != annotations.end()) {
    const std::string& value = it->second;
    const YAML::Mark annotation_mark = MarkFor(annotation_path, YAML::Node(YAML::NodeType::Null));
    if (exec_pod) {
      Error(annotation_path, annotation_mark,
            std::string(kAppAnnotation) + " picks the app of a pod whose containers have no " +
                "command; " + (with_command.size() == 1 ? "container " : "containers ") +
                exec_names + (with_command.size() == 1 ? " runs its command" : " run theirs"));
    } else if (value == "echo") {
      in_proxy = EchoApp{};
    } else if (value == "static" || value.starts_with("static=")) {
      StaticApp s;
      s.status = 200;
      s.body = "ok\n";
      app_name = "static";
      if (value.size() > 7) {
        const std::string code = value.substr(7);
        if (!IsDecimal(code, false) || code.size() != 3 || code < "100" || code > "599") {
          Error(annotation_path, annotation_mark,
                "static=STATUS needs an HTTP status between 100 and 599, got " +
                    QuoteForMessage(code));
        } else {
          s.status = static_cast<uint16_t>(std::stoi(code));
        }
      }
      in_proxy = std::move(s);
    } else if (value.starts_with("forward=")) {
      in_proxy = ForwardApp{value.substr(8)};
      app_name = "forward";
      Alias("spec.app.forward.address", annotation_path, annotation_mark);
    } else {
      Error(annotation_path, annotation_mark,
            "unsupported value " + QuoteForMessage(value) +
                ": must be echo, static, static=STATUS or forward=HOST:PORT");
    }
  }

  ExecApp exec;
  exec.termination_grace_period_seconds = grace_period;
  exec.restart_policy = restart_policy;
  SecurityContext container_context;
  // The containers that run, in order (the first is the app's own command),
  // and the limits each declared (0: none), with where.
  struct DeclaredLimits {
    ResourceLimits limits;
    Path resources_path;
    YAML::Mark mark;  // the container's
  };
  std::vector<ExecContainer> running;
  std::vector<DeclaredLimits> container_limits;
  ForEach(
      containers->value, containers_path, "containers",
      [&](const YAML::Node& item, const Path& child) {
        auto c = ReadMapping(item, child, FieldNames(objects::kContainer));
        if (!c) return;
        std::string name;
        if (const Entry* e = c->Find("name")) ReadString(e->value, Join(child, "name"), name);
        if (name.empty()) {
          Error(Join(child, "name"), MarkFor(child, item), "missing required field \"name\"");
        }
        const YAML::Node command_node = item["command"];
        const bool runs = exec_pod && command_node && !command_node.IsNull();
        const bool sidecar = exec_pod && !runs;
        std::string image;
        if (const Entry* e = c->Find("image")) ReadString(e->value, Join(child, "image"), image);
        const YAML::Mark image_mark =
            c->Find("image") ? c->Find("image")->key_node.Mark() : item.Mark();
        if (runs) {
          if (!image.empty()) {
            Warn(Join(child, "image"), image_mark,
                 "image " + image +
                     " is not pulled: podless has no container runtime; the command runs on "
                     "the host");
          }
        } else if (sidecar) {
          Warn(child, MarkFor(child, item),
               "ignored: container " + QuoteForMessage(name) +
                   " has no command; podless runs the commands of " + exec_names +
                   " only, and serves their ports only");
          return;
        } else {
          Warn(Join(child, "image"), image_mark,
               "image " + (image.empty() ? std::string("(none)") : image) +
                   " is not pulled: podless has no container runtime; the in-proxy " + app_name +
                   " app answers on the container's ports (annotation " + kAppAnnotation +
                   " picks another)");
        }
        static const auto kIgnoredContainerFields = IgnoredFields(objects::kContainer);
        for (const auto& [field, why] : kIgnoredContainerFields) {
          if (const Entry* e = c->Find(field); e != nullptr && !IsKubeDefault(field, e->value)) {
            Warn(Join(child, field), e->key_node.Mark(), std::string("ignored: ") + why);
          }
        }
        // Ports, as the workload's: Istio's naming rule decides HTTP; an
        // unnamed port of an in-proxy app is HTTP (Istio would detect
        // HTTP; the stand-in app answers it), of a process TCP.
        if (const Entry* e = c->Find("ports")) {
          ForEach(e->value, Join(child, "ports"), "ports",
                  [&](const YAML::Node& p, const Path& port_path) {
                    auto pf = ReadMapping(p, port_path, FieldNames(objects::kContainerPort));
                    if (!pf) return;
                    PortSpec port;
                    if (const Entry* x = pf->Find("name")) {
                      ReadString(x->value, Join(port_path, "name"), port.name);
                    }
                    const Entry* number = pf->Find("containerPort");
                    if (number == nullptr || number->value.IsNull()) {
                      Error(Join(port_path, "containerPort"), MarkFor(port_path, p),
                            "missing required field \"containerPort\"");
                    } else {
                      ReadInt(number->value, Join(port_path, "containerPort"), 1, 65535, port.port);
                    }
                    if (const Entry* x = pf->Find("protocol"); x != nullptr && !x->value.IsNull()) {
                      const std::string text = x->value.IsScalar() ? x->value.Scalar() : "";
                      if (text == "UDP" || text == "SCTP") {
                        Error(Join(port_path, "protocol"), x->value.Mark(),
                              text +
                                  " is not supported: podless relays TCP only (HBONE carries "
                                  "TCP streams)");
                      } else if (text != "TCP") {
                        Error(Join(port_path, "protocol"), x->value.Mark(),
                              "unsupported value: must be one of TCP, UDP, SCTP, got " +
                                  Describe(x->value));
                      }
                    }
                    WarnIgnoredFields(*pf, objects::kContainerPort);
                    if (IsHttpName(port.name)) {
                      port.protocol = Protocol::kHTTP;
                    } else if (!NamesOtherProtocol(port.name) && !exec_pod) {
                      port.protocol = Protocol::kHTTP;
                    }
                    const Path model_path = Index("spec.ports", workload.spec.ports.size());
                    Alias(model_path, port_path, p.Mark());
                    if (number != nullptr) {
                      Alias(Join(model_path, "port"), Join(port_path, "containerPort"),
                            number->value.Mark());
                    }
                    workload.spec.ports.push_back(std::move(port));
                  });
        }
        if (!runs) {
          // An image-only container has no process to configure.
          for (const char* field : {"args", "workingDir", "env", "envFrom", "resources",
                                    "readinessProbe", "securityContext"}) {
            if (const Entry* e = c->Find(field); e != nullptr && !IsKubeDefault(field, e->value)) {
              Warn(Join(child, field), e->key_node.Mark(),
                   std::string("ignored: no process runs for a container without a "
                               "command (the image's entrypoint is unknown to podless)"));
            }
          }
          return;
        }
        // The first container that runs is the app's own command; the
        // others are spec.app.exec.containers[k].
        const Path model = running.empty() ? Path("spec.app.exec")
                                           : Index("spec.app.exec.containers", running.size() - 1);
        ExecContainer& container = running.emplace_back();
        container_limits.push_back({ResourceLimits{}, Join(child, "resources"), item.Mark()});
        container.name = name;
        Alias(model, child, item.Mark());
        if (const Entry* e = c->Find("name")) {
          Alias(Join(model, "name"), Join(child, "name"), e->value.Mark());
        }
        std::vector<std::string> args;
        if (const Entry* e = c->Find("command")) {
          ReadStringList(e->value, Join(child, "command"), container.command);
          Alias(Join(model, "command"), Join(child, "command"), e->value.Mark());
        }
        if (const Entry* e = c->Find("args")) ReadStringList(e->value, Join(child, "args"), args);
        container.command.insert(container.command.end(), args.begin(), args.end());
        if (const Entry* e = c->Find("workingDir")) {
          ReadString(e->value, Join(child, "workingDir"), container.working_dir);
        }
        if (const Entry* e = c->Find("envFrom"); e != nullptr && !e->value.IsNull()) {
          Error(Join(child, "envFrom"), e->key_node.Mark(),
                "not supported: podless has no ConfigMaps or Secrets; give each variable "
                "in env with a value");
        }
        if (const Entry* e = c->Find("env")) {
          ForEach(
              e->value, Join(child, "env"), "environment variables",
              [&](const YAML::Node& v, const Path& var_path) {
                EnvVar var;
                auto vf = ReadMapping(v, var_path, FieldNames(objects::kEnvVar));
                if (vf) {
                  if (const Entry* x = vf->Find("name")) {
                    ReadString(x->value, Join(var_path, "name"), var.name);
                  }
                  if (const Entry* x = vf->Find("value")) {
                    ReadString(x->value, Join(var_path, "value"), var.value);
                  }
                  if (const Entry* x = vf->Find("valueFrom"); x != nullptr && !x->value.IsNull()) {
                    const Path from_path = Join(var_path, "valueFrom");
                    if (!var.value.empty()) {
                      Error(from_path, x->key_node.Mark(),
                            "may not be set when value is not empty");
                    }
                    auto from =
                        ReadMapping(x->value, from_path, FieldNames(objects::kEnvVarSource));
                    if (from) {
                      for (const char* other :
                           {"resourceFieldRef", "configMapKeyRef", "secretKeyRef"}) {
                        if (const Entry* y = from->Find(other)) {
                          Error(Join(from_path, other), y->key_node.Mark(),
                                std::string("not supported: podless has no ConfigMaps "
                                            "or Secrets and resolves fieldRef only"));
                        }
                      }
                      if (const Entry* y = from->Find("fieldRef")) {
                        const Path ref_path = Join(from_path, "fieldRef");
                        std::string field_path;
                        if (auto r = ReadMapping(y->value, ref_path,
                                                 FieldNames(objects::kObjectFieldSelector))) {
                          if (const Entry* z = r->Find("fieldPath")) {
                            ReadString(z->value, Join(ref_path, "fieldPath"), field_path);
                          }
                        }
                        // Resolved per replica by the supervisor's
                        // $(VAR) expansion, or here when fixed.
                        auto quoted_key =
                            [&](std::string_view prefix) -> std::optional<std::string> {
                          std::string_view p = field_path;
                          if (!p.starts_with(prefix) || !p.ends_with("']")) {
                            return std::nullopt;
                          }
                          p.remove_prefix(prefix.size());
                          p.remove_suffix(2);
                          return std::string(p);
                        };
                        if (field_path == "metadata.name") {
                          var.value = "$(PODLESS_REPLICA)";
                        } else if (field_path == "metadata.namespace") {
                          var.value = "$(PODLESS_NAMESPACE)";
                        } else if (field_path == "status.podIP" || field_path == "status.podIPs") {
                          var.value = "$(PODLESS_ADDRESS)";
                        } else if (field_path == "spec.serviceAccountName") {
                          var.value = EscapeDollars(workload.spec.service_account);
                        } else if (auto key = quoted_key("metadata.labels['")) {
                          auto it = workload.metadata.labels.find(*key);
                          if (it != workload.metadata.labels.end()) {
                            var.value = EscapeDollars(it->second);
                          }
                        } else if (auto key = quoted_key("metadata.annotations['")) {
                          auto it = annotations.find(*key);
                          if (it != annotations.end()) var.value = EscapeDollars(it->second);
                        } else {
                          Error(Join(ref_path, "fieldPath"),
                                MarkFor(Join(ref_path, "fieldPath"), y->value),
                                "unsupported fieldPath " + QuoteForMessage(field_path) +
                                    ": podless resolves metadata.name (the replica's "
                                    "name), metadata.namespace, status.podIP (the "
                                    "replica's address), spec.serviceAccountName, "
                                    "metadata.labels['KEY'] and "
                                    "metadata.annotations['KEY']");
                        }
                      }
                    }
                  }
                }
                container.env.push_back(std::move(var));
              });
        }
        if (const Entry* e = c->Find("securityContext")) {
          ReadKubeSecurityContext(e->value, Join(child, "securityContext"), container_context);
        }
        if (const Entry* e = c->Find("readinessProbe"); e != nullptr && !e->value.IsNull()) {
          std::optional<Probe> probe;
          ReadKubeProbe(e->value, Join(child, "readinessProbe"), probe);
          if (probe) container.readiness_probe = std::move(*probe);
        }
        if (const Entry* e = c->Find("resources")) {
          const Path resources_path = Join(child, "resources");
          auto r =
              ReadMapping(e->value, resources_path, FieldNames(objects::kResourceRequirements));
          if (!r) return;
          WarnIgnoredFields(*r, objects::kResourceRequirements);
          const Entry* limits = r->Find("limits");
          if (limits == nullptr || limits->value.IsNull()) return;
          const Path limits_path = Join(resources_path, "limits");
          if (!limits->value.IsMap()) {
            Error(limits_path, limits->value.Mark(),
                  "expected a mapping, got " + Describe(limits->value));
            return;
          }
          // cpu and memory go to the sandbox; other resources
          // (ephemeral-storage, hugepages, devices) are warned about.
          YAML::Node kept(YAML::NodeType::Map);
          for (auto it = limits->value.begin(); it != limits->value.end(); ++it) {
            YAML::Node key = it->first;
            YAML::Node value = it->second;
            if (!key.IsScalar()) continue;
            if (key.Scalar() == "cpu" || key.Scalar() == "memory") {
              kept[key.Scalar()] = value;
            } else {
              Warn(Key(limits_path, key.Scalar()), key.Mark(),
                   "ignored: podless limits cpu and memory only");
            }
          }
          ReadLimits(kept, limits_path, container_limits.back().limits);
        }
      });
  if (exec_pod && !running.empty()) {
    // Resources (decision, README "Bring your Kubernetes YAML"): podless
    // enforces limits per replica (its cgroup, or rlimits), not per
    // container, as the containers share one sandbox. So the replica's
    // limit of a resource is the sum of its containers' limits, as kubelet
    // sizes a pod's cgroup, when every container that runs sets one. When
    // only some do, Kubernetes would still bound those containers each on
    // its own, which podless cannot: refused rather than silently dropped.
    ResourceLimits sum;
    bool refused = false;
    auto combine = [&](auto member, const char* resource) {
      size_t with = 0;
      uint64_t total = 0;
      for (const DeclaredLimits& declared : container_limits) {
        if (declared.limits.*member != 0) {
          ++with;
          total += declared.limits.*member;
        }
      }
      if (with == 0) return;
      if (with != container_limits.size()) {
        for (const DeclaredLimits& declared : container_limits) {
          if (declared.limits.*member != 0) continue;
          Error(Join(Join(declared.resources_path, "limits"), resource), declared.mark,
                std::string("missing: podless limits a replica's containers together (their "
                            "sum goes to the replica's cgroup), so either every container "
                            "that runs a command sets limits.") +
                    resource + " or none does");
          refused = true;
          break;
        }
        return;
      }
      using T = std::remove_reference_t<decltype(sum.*member)>;
      sum.*member = static_cast<T>(std::min<uint64_t>(total, std::numeric_limits<T>::max()));
    };
    combine(&ResourceLimits::memory_bytes, "memory");
    combine(&ResourceLimits::cpu_millis, "cpu");
    if (!refused && !(sum == ResourceLimits{})) exec.sandbox.mutable_value().limits = sum;
    ExecContainer& first = running.front();
    exec.command = std::move(first.command);
    exec.env = std::move(first.env);
    exec.working_dir = std::move(first.working_dir);
    exec.readiness_probe = std::move(first.readiness_probe);
    // The container's name is kept (logs -c, statuses), one container too.
    {
      ExecContainers& more = exec.containers.mutable_value();
      more.name = first.name;
      more.more.assign(std::make_move_iterator(running.begin() + 1),
                       std::make_move_iterator(running.end()));
    }
  }
  if (exec_pod) {
    // The container's settings override the pod's, field by field.
    SecurityContext context = pod_context;
    if (container_context.run_as_user) context.run_as_user = container_context.run_as_user;
    if (container_context.run_as_group) context.run_as_group = container_context.run_as_group;
    if (container_context.run_as_non_root) {
      context.run_as_non_root = container_context.run_as_non_root;
    }
    if (!(context == SecurityContext{})) exec.sandbox.mutable_value().security_context = context;
    workload.spec.app = std::move(exec);
  } else {
    if (const Entry* e = fields->Find("securityContext")) {
      if (!(pod_context == SecurityContext{})) {
        Warn(Join(path, "securityContext"), e->key_node.Mark(),
             "ignored: no process runs for a pod whose containers have no command");
      }
    }
    workload.spec.app = std::move(in_proxy);
  }
}

// ---------------------------------------------------------------------------
// v1 Service.

void DocumentReader::ReadKubeService(const Fields& root, ObjectMeta meta,
                                     std::optional<Object>& out) {
  Service s;
  s.metadata = std::move(meta);
  ReadKubeServiceSpec(SpecOf(root), s);
  out = std::move(s);
}

void DocumentReader::ReadKubeServiceSpec(const YAML::Node& node, Service& service) {
  auto fields = ReadMapping(node, "spec", FieldNames(objects::kServiceSpec));
  if (!fields) return;
  auto scalar = [](const Entry* e) -> std::string {
    return e != nullptr && e->value.IsScalar() ? e->value.Scalar() : "";
  };
  // Values that change nothing are accepted silently (kubectl's output holds
  // them); others are warned about.
  if (const Entry* e = fields->Find("type"); e != nullptr && !e->value.IsNull()) {
    const std::string type = scalar(e);
    if (type == "NodePort" || type == "LoadBalancer") {
      Warn("spec.type", e->key_node.Mark(),
           "ignored: served as ClusterIP (a VIP on this agent); podless opens no node ports or "
           "load balancers");
    } else if (type == "ExternalName") {
      Error("spec.type", e->value.Mark(),
            "ExternalName Services are not supported: podless Services select workloads");
    } else if (type != "ClusterIP") {
      Error("spec.type", e->value.Mark(),
            "unsupported value: must be one of ClusterIP, NodePort, LoadBalancer, got " +
                Describe(e->value));
    }
  }
  for (const char* field : {"clusterIP", "clusterIPs"}) {
    const Entry* e = fields->Find(field);
    if (e == nullptr || e->value.IsNull()) continue;
    // kubectl's output holds both, with the same address: one warning.
    if (std::string_view(field) == "clusterIPs" && fields->Find("clusterIP") != nullptr) continue;
    const bool headless =
        scalar(e) == "None" || (e->value.IsSequence() && e->value.size() == 1 &&
                                e->value[0].IsScalar() && e->value[0].Scalar() == "None");
    if (headless) {
      Warn(Join("spec", field), e->key_node.Mark(),
           "ignored: headless Services get a VIP too; replicas are also reachable at their own "
           "addresses");
    } else if (scalar(e) != "" || e->value.IsSequence()) {
      Warn(Join("spec", field), e->key_node.Mark(),
           "ignored: podless assigns the VIP (get services shows it)");
    }
  }
  if (const Entry* e = fields->Find("ipFamilies")) {
    bool ipv4_only =
        e->value.IsNull() || (e->value.IsSequence() && e->value.size() == 1 &&
                              e->value[0].IsScalar() && e->value[0].Scalar() == "IPv4");
    if (!ipv4_only) Warn("spec.ipFamilies", e->key_node.Mark(), "ignored: podless serves IPv4");
  }
  if (const Entry* e = fields->Find("ipFamilyPolicy");
      e != nullptr && !e->value.IsNull() && scalar(e) != "SingleStack") {
    Warn("spec.ipFamilyPolicy", e->key_node.Mark(), "ignored: podless serves IPv4");
  }
  if (const Entry* e = fields->Find("sessionAffinity");
      e != nullptr && !e->value.IsNull() && scalar(e) != "None") {
    Warn("spec.sessionAffinity", e->key_node.Mark(),
         "ignored: each connection picks an endpoint of its own");
  }
  if (const Entry* e = fields->Find("internalTrafficPolicy");
      e != nullptr && !e->value.IsNull() && scalar(e) != "Cluster") {
    Warn("spec.internalTrafficPolicy", e->key_node.Mark(),
         "ignored: a Service's endpoints span the cluster");
  }
  if (const Entry* e = fields->Find("externalTrafficPolicy");
      e != nullptr && !e->value.IsNull() && scalar(e) != "Cluster") {
    Warn("spec.externalTrafficPolicy", e->key_node.Mark(),
         "ignored: podless opens no node ports or load balancers");
  }
  WarnIgnoredFields(*fields, objects::kServiceSpec);
  if (const Entry* e = fields->Find("selector")) {
    ReadStringMap(e->value, "spec.selector", service.selector);
  }
  if (const Entry* e = fields->Find("ports")) {
    ForEach(e->value, "spec.ports", "ports", [&](const YAML::Node& item, const Path& child) {
      ServicePort port;
      auto p = ReadMapping(item, child, FieldNames(objects::kServicePort));
      if (p) {
        if (const Entry* f = p->Find("name")) ReadString(f->value, Join(child, "name"), port.name);
        const Entry* number = p->Find("port");
        if (number != nullptr) ReadInt(number->value, Join(child, "port"), 1, 65535, port.port);
        if (number == nullptr || number->value.IsNull()) {
          Error(Join(child, "port"), MarkFor(child, item), "missing required field \"port\"");
        }
        if (const Entry* target = p->Find("targetPort")) {
          ReadPortRef(target->value, Join(child, "targetPort"), port.target_port);
        }
        if (port.target_port.number == 0 && port.target_port.name.empty()) {
          port.target_port.number = port.port;
        }
        if (const Entry* f = p->Find("protocol"); f != nullptr && !f->value.IsNull()) {
          const std::string text = scalar(f);
          if (text == "UDP" || text == "SCTP") {
            Error(Join(child, "protocol"), f->value.Mark(),
                  text +
                      " is not supported: podless relays TCP only (HBONE carries TCP "
                      "streams)");
          } else if (text != "TCP") {
            Error(Join(child, "protocol"), f->value.Mark(),
                  "unsupported value: must be one of TCP, UDP, SCTP, got " + Describe(f->value));
          }
        }
        std::string app_protocol;
        if (const Entry* f = p->Find("appProtocol")) {
          ReadString(f->value, Join(child, "appProtocol"), app_protocol);
        }
        WarnIgnoredFields(*p, objects::kServicePort);
        // Istio's protocol selection: appProtocol, else the port's name.
        if (IsHttpAppProtocol(app_protocol) || (app_protocol.empty() && IsHttpName(port.name))) {
          port.protocol = Protocol::kHTTP;
        }
      }
      service.ports.push_back(std::move(port));
    });
  }
}

}  // namespace podless::workloads::manifest
