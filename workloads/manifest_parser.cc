#include "workloads/manifest_parser.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include "workloads/document_reader.h"
#include "workloads/manifest_fields.h"
#include "workloads/quantity.h"

namespace podless::workloads::manifest {

void DocumentReader::ReadWorkloadSpec(const YAML::Node& node, WorkloadSpec& spec) {
  auto fields = ReadMapping(node, "spec", FieldNames("dev.podless.v1alpha1.WorkloadSpec"));
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path path = Join("spec", e.key);
    if (e.key == "replicas") {
      ReadInt(e.value, path, 0, kMaxReplicas, spec.replicas);
    } else if (e.key == "serviceAccount") {
      ReadString(e.value, path, spec.service_account);
    } else if (e.key == "ports") {
      ForEach(e.value, path, "ports", [&](const YAML::Node& item, const Path& child) {
        PortSpec port;
        if (auto p = ReadMapping(item, child, FieldNames("dev.podless.v1alpha1.WorkloadPort"))) {
          if (const Entry* f = p->Find("name"))
            ReadString(f->value, Join(child, "name"), port.name);
          if (const Entry* f = p->Find("port")) {
            ReadInt(f->value, Join(child, "port"), 1, 65535, port.port);
          }
          if (!p->Find("port") || p->Find("port")->value.IsNull()) {
            Error(Join(child, "port"), MarkFor(child, item), "missing required field \"port\"");
          }
          if (const Entry* f = p->Find("protocol")) {
            ReadProtocol(f->value, Join(child, "protocol"), port.protocol);
          }
        }
        spec.ports.push_back(std::move(port));
      });
    }
  }
  const Entry* app = fields->Find("app");
  if (app == nullptr) {
    Error("spec.app", node.IsNull() ? MarkFor("spec", node) : node.Mark(),
          "missing required field \"app\" (one of echo, static, forward, exec)");
  } else {
    ReadApp(app->value, "spec.app", spec.app);
  }
}

void DocumentReader::ReadApp(const YAML::Node& node, const Path& path, AppSpec& app) {
  auto fields = ReadMapping(node, path, FieldNames("dev.podless.v1alpha1.App"));
  if (!fields) return;
  if (fields->entries.empty()) {
    Error(path, MarkFor(path, node), "must set exactly one of echo, static, forward, exec");
    return;
  }
  for (size_t i = 1; i < fields->entries.size(); ++i) {
    const Entry& e = fields->entries[i];
    Error(Join(path, e.key), e.key_node.Mark(),
          "only one of echo, static, forward, exec may be set, and " +
              QuoteForMessage(fields->entries[0].key) + " is set already");
  }
  const Entry& e = fields->entries[0];
  Path child = Join(path, e.key);
  if (e.key == "echo") {
    ReadMapping(e.value, child, {});
    app = EchoApp{};
  } else if (e.key == "static") {
    StaticApp s;
    if (auto f = ReadMapping(e.value, child, FieldNames("dev.podless.v1alpha1.StaticApp"))) {
      if (const Entry* x = f->Find("status"))
        ReadInt(x->value, Join(child, "status"), 100, 599, s.status);
      if (const Entry* x = f->Find("body")) ReadString(x->value, Join(child, "body"), s.body);
      if (const Entry* x = f->Find("headers")) {
        ReadStringMap(x->value, Join(child, "headers"), s.headers);
      }
    }
    app = std::move(s);
  } else if (e.key == "forward") {
    ForwardApp f;
    if (auto m = ReadMapping(e.value, child, FieldNames("dev.podless.v1alpha1.ForwardApp"))) {
      if (const Entry* x = m->Find("address"))
        ReadString(x->value, Join(child, "address"), f.address);
    }
    app = std::move(f);
  } else if (e.key == "exec") {
    ExecApp exec;
    ReadExec(e.value, child, exec);
    app = std::move(exec);
  }
}

void DocumentReader::ReadExecEnv(const YAML::Node& node, const Path& path,
                                 std::vector<EnvVar>& env) {
  ForEach(node, path, "environment variables", [&](const YAML::Node& item, const Path& item_path) {
    EnvVar var;
    if (auto f = ReadMapping(item, item_path, FieldNames("dev.podless.v1alpha1.EnvVar"))) {
      if (const Entry* x = f->Find("name")) ReadString(x->value, Join(item_path, "name"), var.name);
      if (const Entry* x = f->Find("value")) {
        ReadString(x->value, Join(item_path, "value"), var.value);
      }
    }
    env.push_back(std::move(var));
  });
}

void DocumentReader::ReadExec(const YAML::Node& node, const Path& path, ExecApp& exec) {
  auto fields = ReadMapping(node, path, FieldNames("dev.podless.v1alpha1.ExecApp"));
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path child = Join(path, e.key);
    if (e.key == "command") {
      ReadStringList(e.value, child, exec.command);
    } else if (e.key == "name") {
      std::string name;
      ReadString(e.value, child, name);
      if (!name.empty()) exec.containers.mutable_value().name = name;
    } else if (e.key == "env") {
      ReadExecEnv(e.value, child, exec.env);
    } else if (e.key == "containers") {
      // Further processes of each replica, in its sandbox.
      ForEach(e.value, child, "containers", [&](const YAML::Node& item, const Path& item_path) {
        ExecContainer container;
        if (auto f =
                ReadMapping(item, item_path, FieldNames("dev.podless.v1alpha1.ExecContainer"))) {
          for (const Entry& x : f->entries) {
            const Path field = Join(item_path, x.key);
            if (x.key == "name") {
              ReadString(x.value, field, container.name);
            } else if (x.key == "command") {
              ReadStringList(x.value, field, container.command);
            } else if (x.key == "env") {
              ReadExecEnv(x.value, field, container.env);
            } else if (x.key == "workingDir") {
              ReadString(x.value, field, container.working_dir);
            } else if (x.key == "readinessProbe" && !x.value.IsNull()) {
              Probe probe;
              ReadProbe(x.value, field, probe);
              container.readiness_probe = std::move(probe);
            }
          }
        }
        exec.containers.mutable_value().more.push_back(std::move(container));
      });
    } else if (e.key == "workingDir") {
      ReadString(e.value, child, exec.working_dir);
    } else if (e.key == "restartPolicy") {
      ReadEnum<RestartPolicy>(e.value, child,
                              {{"Always", RestartPolicy::kAlways},
                               {"OnFailure", RestartPolicy::kOnFailure},
                               {"Never", RestartPolicy::kNever}},
                              exec.restart_policy);
    } else if (e.key == "readinessProbe") {
      if (e.value.IsNull()) continue;
      Probe probe;
      ReadProbe(e.value, child, probe);
      exec.readiness_probe = std::move(probe);
    } else if (e.key == "terminationGracePeriodSeconds") {
      ReadInt(e.value, child, 0, kMaxInt32, exec.termination_grace_period_seconds);
    } else if (e.key == "securityContext") {
      SecurityContext context;
      ReadSecurityContext(e.value, child, context);
      if (!(context == SecurityContext{})) exec.sandbox.mutable_value().security_context = context;
    } else if (e.key == "resources") {
      // Kubernetes' `requests` has no meaning without a scheduler.
      auto r = ReadMapping(e.value, child, FieldNames("dev.podless.v1alpha1.Resources"));
      const Entry* limits = r ? r->Find("limits") : nullptr;
      if (limits == nullptr) continue;
      ResourceLimits read;
      ReadLimits(limits->value, Join(child, "limits"), read);
      if (!(read == ResourceLimits{})) exec.sandbox.mutable_value().limits = read;
    } else if (e.key == "keepWorkingDir") {
      bool keep = false;
      ReadBool(e.value, child, keep);
      if (keep) exec.sandbox.mutable_value().keep_working_dir = true;
    }
  }
}

void DocumentReader::ReadSecurityContext(const YAML::Node& node, const Path& path,
                                         SecurityContext& out) {
  auto fields = ReadMapping(node, path, FieldNames("dev.podless.v1alpha1.SecurityContext"));
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
    }
  }
}

void DocumentReader::ReadLimits(const YAML::Node& node, const Path& path, ResourceLimits& out) {
  auto fields = ReadMapping(node, path, FieldNames("dev.podless.v1alpha1.Limits"));
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path child = Join(path, e.key);
    if (e.value.IsNull()) continue;
    if (e.key == "pids") {
      ReadInt(e.value, child, 1, kMaxInt32, out.pids);
      continue;
    }
    // Quantities are strings in Kubernetes; plain numbers ("cpu: 2",
    // "memory: 1e9") are read as the same text.
    if (!e.value.IsScalar()) {
      Error(child, e.value.Mark(), "expected a quantity, got " + Describe(e.value));
      continue;
    }
    const std::string& text = e.value.Scalar();
    if (e.key == "memory") {
      Result<uint64_t> bytes = ParseMemoryQuantity(text);
      if (!bytes.ok()) {
        Error(child, e.value.Mark(), bytes.error().message);
      } else if (*bytes == 0) {
        // 0 is "no limit" in the model; a written 0 is a mistake.
        Error(child, e.value.Mark(), "must be at least 1Mi, got " + text);
      } else {
        out.memory_bytes = *bytes;
      }
    } else if (e.key == "cpu") {
      Result<uint32_t> millis = ParseCpuQuantity(text);
      if (!millis.ok()) {
        Error(child, e.value.Mark(), millis.error().message);
      } else if (*millis == 0) {
        Error(child, e.value.Mark(), "must be more than 0, got " + text);
      } else {
        out.cpu_millis = *millis;
      }
    }
  }
}

// A probe's timing fields, the same in podless's and Kubernetes' probes.
void DocumentReader::ReadProbeTiming(const Entry& e, const Path& child, Probe& probe) {
  if (e.key == "initialDelaySeconds") {
    ReadInt(e.value, child, 0, kMaxInt32, probe.initial_delay_seconds);
  } else if (e.key == "periodSeconds") {
    ReadInt(e.value, child, 1, kMaxInt32, probe.period_seconds);
  } else if (e.key == "timeoutSeconds") {
    ReadInt(e.value, child, 1, kMaxInt32, probe.timeout_seconds);
  } else if (e.key == "failureThreshold") {
    ReadInt(e.value, child, 1, kMaxInt32, probe.failure_threshold);
  } else if (e.key == "successThreshold") {
    ReadInt(e.value, child, 1, kMaxInt32, probe.success_threshold);
  }
}

void DocumentReader::ReadProbe(const YAML::Node& node, const Path& path, Probe& probe) {
  auto fields = ReadMapping(node, path, FieldNames("dev.podless.v1alpha1.Probe"));
  if (!fields) return;
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
      bool http = e.key == "httpGet";
      probe.kind = http ? Probe::Kind::kHttpGet : Probe::Kind::kTcpSocket;
      auto h = ReadMapping(e.value, child,
                           FieldNames(http ? "dev.podless.v1alpha1.ProbeHttpGet"
                                           : "dev.podless.v1alpha1.ProbePort"));
      if (!h) continue;
      if (const Entry* x = h->Find("port")) ReadPortRef(x->value, Join(child, "port"), probe.port);
      if (const Entry* x = h->Find("path")) ReadString(x->value, Join(child, "path"), probe.path);
    } else {
      ReadProbeTiming(e, child, probe);
    }
  }
  if (handler == nullptr) {
    Error(path, MarkFor(path, node), "must set exactly one of tcpSocket, httpGet");
  }
}

void DocumentReader::ReadServiceSpec(const YAML::Node& node, Service& service) {
  auto fields = ReadMapping(node, "spec", FieldNames("dev.podless.v1alpha1.ServiceSpec"));
  if (!fields) return;
  if (const Entry* e = fields->Find("selector")) {
    ReadStringMap(e->value, "spec.selector", service.selector);
  }
  if (const Entry* e = fields->Find("ports")) {
    ForEach(e->value, "spec.ports", "ports", [&](const YAML::Node& item, const Path& child) {
      ServicePort port;
      if (auto p = ReadMapping(item, child, FieldNames("dev.podless.v1alpha1.ServicePort"))) {
        if (const Entry* f = p->Find("name")) ReadString(f->value, Join(child, "name"), port.name);
        const Entry* number = p->Find("port");
        if (number != nullptr) ReadInt(number->value, Join(child, "port"), 1, 65535, port.port);
        if (number == nullptr || number->value.IsNull()) {
          Error(Join(child, "port"), MarkFor(child, item), "missing required field \"port\"");
        }
        const Entry* target = p->Find("targetPort");
        if (target != nullptr)
          ReadPortRef(target->value, Join(child, "targetPort"), port.target_port);
        // Kubernetes: targetPort defaults to port.
        if (port.target_port.number == 0 && port.target_port.name.empty()) {
          port.target_port.number = port.port;
        }
        if (const Entry* f = p->Find("protocol")) {
          ReadProtocol(f->value, Join(child, "protocol"), port.protocol);
        }
      }
      service.ports.push_back(std::move(port));
    });
  }
}

void DocumentReader::ReadPolicySpec(const YAML::Node& node, AuthorizationPolicy& policy) {
  auto fields = ReadMapping(node, "spec", FieldNames(objects::kAuthorizationPolicySpec));
  if (!fields) return;
  if (const Entry* e = fields->Find("selector")) {
    if (auto s = ReadMapping(e->value, "spec.selector", FieldNames(objects::kWorkloadSelector))) {
      if (const Entry* m = s->Find("matchLabels")) {
        ReadStringMap(m->value, "spec.selector.matchLabels", policy.selector);
      }
    }
  }
  if (const Entry* e = fields->Find("action")) {
    ReadEnum<PolicyAction>(e->value, "spec.action",
                           {{"ALLOW", PolicyAction::kAllow}, {"DENY", PolicyAction::kDeny}},
                           policy.action);
  }
  if (const Entry* e = fields->Find("rules")) {
    ForEach(e->value, "spec.rules", "rules", [&](const YAML::Node& item, const Path& child) {
      PolicyRule rule;
      ReadRule(item, child, rule);
      policy.rules.push_back(std::move(rule));
    });
  }
}

void DocumentReader::ReadRule(const YAML::Node& node, const Path& path, PolicyRule& rule) {
  auto fields = ReadMapping(node, path, FieldNames(objects::kRule));
  if (!fields) return;
  if (const Entry* e = fields->Find("from")) {
    ForEach(e->value, Join(path, "from"), "sources",
            [&](const YAML::Node& item, const Path& child) {
              PolicySource source;
              if (auto f = ReadMapping(item, child, FieldNames(objects::kRuleFrom))) {
                if (const Entry* s = f->Find("source")) {
                  ReadSource(s->value, Join(child, "source"), source);
                }
              }
              rule.from.push_back(std::move(source));
            });
  }
  if (const Entry* e = fields->Find("to")) {
    ForEach(e->value, Join(path, "to"), "operations",
            [&](const YAML::Node& item, const Path& child) {
              PolicyOperation op;
              if (auto f = ReadMapping(item, child, FieldNames(objects::kRuleTo))) {
                if (const Entry* o = f->Find("operation")) {
                  ReadOperation(o->value, Join(child, "operation"), op);
                }
              }
              rule.to.push_back(std::move(op));
            });
  }
  if (const Entry* e = fields->Find("when")) {
    ForEach(e->value, Join(path, "when"), "conditions",
            [&](const YAML::Node& item, const Path& child) {
              PolicyCondition condition;
              if (auto f = ReadMapping(item, child, FieldNames(objects::kCondition))) {
                for (const Entry& x : f->entries) {
                  Path xp = Join(child, x.key);
                  if (x.key == "key") ReadString(x.value, xp, condition.key);
                  if (x.key == "values") ReadStringList(x.value, xp, condition.values);
                  if (x.key == "notValues") ReadStringList(x.value, xp, condition.not_values);
                }
              }
              rule.when.push_back(std::move(condition));
            });
  }
}

void DocumentReader::ReadSource(const YAML::Node& node, const Path& path, PolicySource& source) {
  // Istio's field names, each to its list in the model.
  const std::pair<const char*, std::vector<std::string>*> lists[] = {
      {"principals", &source.principals},
      {"notPrincipals", &source.not_principals},
      {"namespaces", &source.namespaces},
      {"notNamespaces", &source.not_namespaces},
      {"serviceAccounts", &source.service_accounts},
      {"notServiceAccounts", &source.not_service_accounts},
      {"ipBlocks", &source.ip_blocks},
      {"notIpBlocks", &source.not_ip_blocks},
      {"remoteIpBlocks", &source.remote_ip_blocks},
      {"notRemoteIpBlocks", &source.not_remote_ip_blocks},
      {"requestPrincipals", &source.request_principals},
      {"notRequestPrincipals", &source.not_request_principals},
  };
  auto m = ReadMapping(node, path, FieldNames(objects::kSource));
  if (!m) return;
  for (const Entry& x : m->entries) {
    for (const auto& [name, list] : lists) {
      if (x.key == name) ReadStringList(x.value, Join(path, x.key), *list);
    }
  }
}

void DocumentReader::ReadOperation(const YAML::Node& node, const Path& path, PolicyOperation& op) {
  const std::pair<const char*, std::vector<std::string>*> lists[] = {
      {"hosts", &op.hosts},     {"notHosts", &op.not_hosts},
      {"methods", &op.methods}, {"notMethods", &op.not_methods},
      {"paths", &op.paths},     {"notPaths", &op.not_paths},
  };
  auto m = ReadMapping(node, path, FieldNames(objects::kOperation));
  if (!m) return;
  for (const Entry& x : m->entries) {
    Path xp = Join(path, x.key);
    if (x.key == "ports") ReadPortList(x.value, xp, op.ports);
    if (x.key == "notPorts") ReadPortList(x.value, xp, op.not_ports);
    for (const auto& [name, list] : lists) {
      if (x.key == name) ReadStringList(x.value, xp, *list);
    }
  }
}

namespace {

// The kinds podless reads, by apiVersion and kind. Kubernetes and Istio kinds
// keep their document (AppliedAs) and take Kubernetes' metadata.
using KindReadFn = void (DocumentReader::*)(const Fields& root, ObjectMeta meta,
                                            std::optional<Object>& out);
struct KindEntry {
  const char* api_version;
  const char* kind;
  KindReadFn read;
  bool namespaced = true;
  // Top-level fields besides apiVersion, kind, metadata, spec and status.
  std::vector<const char*> extra_fields = {};
};

const std::vector<KindEntry>& Kinds() {
  static const std::vector<KindEntry> kinds = {
      {kApiVersion, "Workload", &DocumentReader::ReadWorkload},
      {kApiVersion, "Service", &DocumentReader::ReadService},
      {kApiVersion, "AuthorizationPolicy", &DocumentReader::ReadPolicy},
      {"v1", "Namespace", &DocumentReader::ReadNamespace, false},
      {"v1", "ServiceAccount", &DocumentReader::ReadServiceAccount, true,
       ObjectNamed(objects::kServiceAccount).names},
      {"v1", "Service", &DocumentReader::ReadKubeService},
      {"v1", "Pod", &DocumentReader::ReadPod},
      {"apps/v1", "Deployment", &DocumentReader::ReadDeployment},
      {"apps/v1", "StatefulSet", &DocumentReader::ReadStatefulSet},
      {"apps/v1", "ReplicaSet", &DocumentReader::ReadReplicaSet},
      {"apps/v1", "DaemonSet", &DocumentReader::ReadDaemonSet},
      {"security.istio.io/v1", "AuthorizationPolicy", &DocumentReader::ReadPolicy},
      {"security.istio.io/v1", "PeerAuthentication", &DocumentReader::ReadPeerAuthentication},
      {"security.istio.io/v1beta1", "AuthorizationPolicy", &DocumentReader::ReadPolicy},
      {"security.istio.io/v1beta1", "PeerAuthentication", &DocumentReader::ReadPeerAuthentication},
      {"networking.istio.io/v1", "WorkloadEntry", &DocumentReader::ReadWorkloadEntry},
      {"networking.istio.io/v1beta1", "WorkloadEntry", &DocumentReader::ReadWorkloadEntry},
      {"networking.istio.io/v1alpha3", "WorkloadEntry", &DocumentReader::ReadWorkloadEntry},
  };
  return kinds;
}

// What a reader that does not know a kind says: the kinds it runs, by
// apiVersion, the versions of a group that take the same kinds together
// ("security.istio.io/v1, v1beta1: AuthorizationPolicy, PeerAuthentication").
std::string SupportedKinds() {
  std::vector<std::pair<std::string, std::string>> by_version;  // apiVersion, kinds
  for (const KindEntry& entry : Kinds()) {
    auto it = std::find_if(by_version.begin(), by_version.end(),
                           [&](const auto& v) { return v.first == entry.api_version; });
    if (it == by_version.end()) {
      by_version.emplace_back(entry.api_version, entry.kind);
    } else {
      it->second += std::string(", ") + entry.kind;
    }
  }
  auto group = [](const std::string& version) { return version.substr(0, version.rfind('/')); };
  std::string out;
  for (size_t i = 0; i < by_version.size(); ++i) {
    std::string versions = by_version[i].first;
    while (i + 1 < by_version.size() && by_version[i + 1].second == by_version[i].second &&
           group(by_version[i + 1].first) == group(by_version[i].first) &&
           by_version[i].first.find('/') != std::string::npos) {
      ++i;
      versions += ", " + by_version[i].first.substr(by_version[i].first.rfind('/') + 1);
    }
    if (!out.empty()) out += "; ";
    out += versions + ": " + by_version[i].second;
  }
  return out;
}

bool IsPodless(const KindEntry& entry) {
  return std::string_view(entry.api_version) == kApiVersion;
}

// Fields the API server sets; accepted in what is applied (the output of
// `kubectl get -o yaml` applies again) and left out of the stored document.
constexpr const char* kServerMetadata[] = {
    "uid",           "resourceVersion", "generation",        "creationTimestamp",
    "managedFields", "selfLink",        "deletionTimestamp", "deletionGracePeriodSeconds"};

}  // namespace

void DocumentReader::ReadKubeMeta(const YAML::Node& node, ObjectMeta& meta, bool namespaced) {
  auto fields = ReadMapping(node, "metadata", FieldNames(objects::kObjectMeta));
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path path = Join("metadata", e.key);
    if (e.key == "name") {
      ReadString(e.value, path, meta.name);
    } else if (e.key == "namespace") {
      if (!namespaced) {
        Error(path, e.key_node.Mark(), "a cluster-scoped kind has no namespace");
      } else {
        ReadString(e.value, path, meta.ns);
      }
    } else if (e.key == "labels") {
      ReadStringMap(e.value, path, meta.labels);
    } else if (e.key == "annotations") {
      Labels annotations;
      ReadStringMap(e.value, path, annotations);
      if (!annotations.empty()) meta.annotations = std::move(annotations);
    } else if (e.key == "generateName") {
      Warn(path, e.key_node.Mark(), "ignored: podless needs a fixed metadata.name");
    } else if (e.key == "finalizers" || e.key == "ownerReferences") {
      Warn(path, e.key_node.Mark(), "ignored: podless deletes objects at once");
    }
  }
  if (!namespaced) meta.ns.clear();
}

// The document as it is kept: without status and the fields the server
// sets, with the namespace written out, in yaml-cpp's block layout.
void SetBlockStyle(YAML::Node node) {
  if (!node.IsMap() && !node.IsSequence()) return;
  node.SetStyle(YAML::EmitterStyle::Block);
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) SetBlockStyle(it->second);
  } else {
    for (auto it = node.begin(); it != node.end(); ++it) SetBlockStyle(*it);
  }
}

std::string StoredDocument(const YAML::Node& root, const ObjectMeta& meta, bool namespaced) {
  YAML::Node doc = YAML::Clone(root);
  SetBlockStyle(doc);  // `{a: b}` and `a: b` are the same document
  doc.remove("status");
  if (doc["metadata"] && doc["metadata"].IsMap()) {
    YAML::Node metadata = doc["metadata"];
    for (const char* field : kServerMetadata) metadata.remove(field);
    if (namespaced && !metadata["namespace"]) metadata["namespace"] = meta.ns;
  }
  YAML::Emitter out;
  out << doc;
  return std::string(out.c_str()) + "\n";
}

void DocumentReader::ReadWorkload(const Fields& root, ObjectMeta meta, std::optional<Object>& out) {
  Workload w;
  w.metadata = std::move(meta);
  ReadWorkloadSpec(SpecOf(root), w.spec);
  out = std::move(w);
}

void DocumentReader::ReadService(const Fields& root, ObjectMeta meta, std::optional<Object>& out) {
  Service s;
  s.metadata = std::move(meta);
  ReadServiceSpec(SpecOf(root), s);
  out = std::move(s);
}

void DocumentReader::ReadPolicy(const Fields& root, ObjectMeta meta, std::optional<Object>& out) {
  AuthorizationPolicy p;
  p.metadata = std::move(meta);
  ReadPolicySpec(SpecOf(root), p);
  out = std::move(p);
}

void DocumentReader::ReadNamespace(const Fields& root, ObjectMeta meta,
                                   std::optional<Object>& out) {
  // A Namespace's spec holds only `finalizers`, which podless has no use for.
  if (const Entry* spec = root.Find("spec")) ReadMapping(spec->value, "spec", {"finalizers"});
  out = Namespace{std::move(meta)};
}

void DocumentReader::ReadServiceAccount(const Fields& root, ObjectMeta meta,
                                        std::optional<Object>& out) {
  for (const FieldInfo& f : ObjectNamed(objects::kServiceAccount).fields) {
    if (const Entry* e = root.Find(f.name)) {
      Warn(f.name, e->key_node.Mark(), "ignored: " + std::string(f.ignored));
    }
  }
  if (const Entry* spec = root.Find("spec")) {
    Error("spec", spec->key_node.Mark(), "unknown field \"spec\"; a ServiceAccount has none");
  }
  out = ServiceAccount{std::move(meta)};
}

// Whether the document can be copied and written out (StoredDocument walks
// it recursively): bounded depth, and its nodes, aliases expanded, within
// the input's budget (an alias bomb in a field the reader never looks at).
bool DocumentReader::Storable(const YAML::Node& node, int depth) {
  if (depth > kMaxStoredDepth || !Spend()) return false;
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!Storable(it->first, depth + 1) || !Storable(it->second, depth + 1)) return false;
    }
  } else if (node.IsSequence()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!Storable(*it, depth + 1)) return false;
    }
  }
  return true;
}

YAML::Node DocumentReader::SpecOf(const Fields& root) {
  const Entry* spec = root.Find("spec");
  return spec != nullptr ? spec->value : YAML::Node(YAML::NodeType::Null);
}

std::optional<Object> DocumentReader::Read(const YAML::Node& root) {
  root_mark_ = root.Mark();
  Record("", root.Mark());
  if (!root.IsMap()) {
    Error("", root.Mark(),
          "expected a mapping with apiVersion, kind, metadata and spec, got " + Describe(root));
    return std::nullopt;
  }
  // apiVersion and kind first: they decide which fields the rest may have.
  const YAML::Node api_version = root["apiVersion"];
  const YAML::Node kind = root["kind"];
  const bool api_text = api_version && api_version.IsScalar();
  const bool kind_text = kind && kind.IsScalar();
  const KindEntry* entry = nullptr;
  bool kind_known = false;
  for (const KindEntry& candidate : Kinds()) {
    if (kind_text && kind.Scalar() == candidate.kind) {
      kind_known = true;
      if (api_text && api_version.Scalar() == candidate.api_version) entry = &candidate;
    }
  }
  if (!api_version) {
    Error("apiVersion", root.Mark(),
          std::string("missing required field \"apiVersion\" (e.g. ") + kApiVersion + ")");
  }
  if (!kind) {
    Error("kind", root.Mark(), "missing required field \"kind\" (" + SupportedKinds() + ")");
  }
  if (!api_version || !kind) return std::nullopt;
  if (entry == nullptr) {
    std::string versions;
    for (const KindEntry& candidate : Kinds()) {
      if (kind_text && kind.Scalar() == candidate.kind) {
        versions += (versions.empty() ? "" : " or ") + std::string(candidate.api_version);
      }
    }
    if (kind_known) {
      Error("apiVersion", api_version.Mark(),
            "unsupported apiVersion for " + kind.Scalar() + ": expected " + versions + ", got " +
                Describe(api_version));
    } else if (skip_unsupported_) {
      skipped_ = SkippedDocument{api_text ? api_version.Scalar() : "", kind.Scalar(), "",
                                 Where(root.Mark())};
      if (const YAML::Node meta = root["metadata"];
          meta && meta.IsMap() && meta["name"] && meta["name"].IsScalar()) {
        skipped_->name = meta["name"].Scalar();
      }
    } else {
      Error("kind", kind.Mark(),
            "unsupported kind " + QuoteForMessage(kind.Scalar()) +
                (api_text ? " (" + api_version.Scalar() + ")" : "") + ": podless runs " +
                SupportedKinds() +
                "; apply with --skip-unsupported to skip the documents of other kinds");
    }
    return std::nullopt;
  }

  std::vector<const char*> allowed = {"apiVersion", "kind", "metadata", "spec", "status"};
  allowed.insert(allowed.end(), entry->extra_fields.begin(), entry->extra_fields.end());
  // `status` is output only (what `get -o yaml` prints); it is accepted and
  // ignored so that output can be applied again, as kubectl does.
  auto fields = ReadMapping(root, "", allowed);
  if (!fields) return std::nullopt;

  ObjectMeta meta;
  if (const Entry* m = fields->Find("metadata")) {
    if (IsPodless(*entry)) {
      ReadMeta(m->value, meta);
    } else {
      ReadKubeMeta(m->value, meta, entry->namespaced);
    }
  }
  if (!entry->namespaced) meta.ns.clear();
  std::optional<Object> object;
  (this->*entry->read)(*fields, meta, object);
  if (object && !IsPodless(*entry) && !Storable(root, 0)) {
    Error("", root.Mark(),
          "document too deep or too large to keep: it nests more than " +
              std::to_string(kMaxStoredDepth) + " levels or its aliases expand to too many nodes");
    return std::nullopt;
  }
  if (object && !IsPodless(*entry)) {
    ObjectMeta& stored_meta =
        std::visit([](auto& o) -> ObjectMeta& { return o.metadata; }, *object);
    stored_meta.applied_as = AppliedAs{entry->api_version, entry->kind,
                                       StoredDocument(root, stored_meta, entry->namespaced)};
  }
  return object;
}

}  // namespace podless::workloads::manifest

namespace podless::workloads {
namespace {

using manifest::DocumentReader;
using manifest::Path;

// True when one field path is the other or lies inside it.
bool Overlaps(const std::string& a, const std::string& b) {
  const std::string& shorter = a.size() <= b.size() ? a : b;
  const std::string& longer = a.size() <= b.size() ? b : a;
  if (shorter.empty()) return false;  // document-level problems hide nothing
  if (longer.compare(0, shorter.size(), shorter) != 0) return false;
  return longer.size() == shorter.size() || longer[shorter.size()] == '.' ||
         longer[shorter.size()] == '[';
}

void SortByPosition(std::vector<Diagnostic>& diagnostics) {
  std::stable_sort(diagnostics.begin(), diagnostics.end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::make_pair(a.where.line, a.where.column) <
                            std::make_pair(b.where.line, b.where.column);
                   });
}

ParseResult ParseDocuments(const std::vector<YAML::Node>& documents, std::string_view file_name,
                           size_t budget, const ParseOptions& options) {
  ParseResult result;
  std::vector<ParsedObject> all;           // every readable object, for ValidateBatch
  std::vector<bool> clean;                 // whether all[i] had no problem
  std::vector<SourceLocation> name_where;  // where all[i]'s metadata.name is
  for (const YAML::Node& document : documents) {
    if (document.IsNull()) continue;  // an empty document, e.g. after a trailing ---
    DocumentReader reader(file_name, budget, options.skip_unsupported);
    std::optional<Object> object = reader.Read(document);
    if (reader.skipped()) result.skipped.push_back(*reader.skipped());
    std::vector<Diagnostic> errors = std::move(reader.errors());
    if (object) {
      // Validate()'s findings, unless the parser already reported the same
      // field (a wrong type leaves a default value that Validate would
      // report a second time, less clearly).
      size_t parser_errors = errors.size();
      for (Diagnostic& d : Validate(*object)) {
        // Validate names the model's fields; a Kubernetes document has them
        // elsewhere (spec.ports[0] is a container's port).
        std::string field = reader.Translate(d.field);
        bool covered = false;
        for (size_t i = 0; i < parser_errors && !covered; ++i) {
          covered = Overlaps(errors[i].field, field);
        }
        if (covered) continue;
        d.where = reader.Locate(d.field);
        d.field = std::move(field);
        errors.push_back(std::move(d));
      }
      SourceLocation where = reader.Locate("");
      std::vector<std::string> warnings;
      SortByPosition(reader.warnings());  // readers warn in the order they read
      for (const Diagnostic& w : reader.warnings()) warnings.push_back(w.ToString());
      all.push_back(ParsedObject{std::move(*object), where, std::move(warnings)});
      clean.push_back(errors.empty());
      name_where.push_back(reader.Locate("metadata.name"));
    }
    SortByPosition(errors);
    for (Diagnostic& d : errors) result.errors.push_back(std::move(d));
  }
  // Duplicates are reported at the later object's name.
  std::vector<Diagnostic> batch = ValidateBatch(all);
  for (Diagnostic& d : batch) {
    for (size_t i = 0; i < all.size(); ++i) {
      if (all[i].where == d.where) {
        d.where = name_where[i];
        clean[i] = false;
      }
    }
    result.errors.push_back(std::move(d));
  }
  for (size_t i = 0; i < all.size(); ++i) {
    if (clean[i]) result.objects.push_back(std::move(all[i]));
  }
  return result;
}

// yaml-cpp 0.7 loops forever, adding an empty document per turn until memory
// runs out, when a document starts with a token that cannot begin a node (a
// stray ',' at the top level). A first pass over the parser's events finds
// such a document before LoadAll would hang on it: a document that starts
// where the previous one started has consumed nothing.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    stuck_ = started_ && mark.pos == last_.pos;
    last_ = mark;
    started_ = true;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  bool stuck() const { return stuck_; }
  const YAML::Mark& last() const { return last_; }

 private:
  YAML::Mark last_;
  bool started_ = false;
  bool stuck_ = false;
};

// Returns a Diagnostic when yaml-cpp would never finish reading `text`.
// Syntax errors it finds on the way are thrown, as LoadAll would throw them.
std::optional<Diagnostic> FindEndlessDocument(const std::string& text, std::string_view file) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts starts;
  size_t documents = 0;
  while (parser.HandleNextDocument(starts)) {
    // Every real document uses up at least one character of the input.
    if (starts.stuck() || ++documents > text.size() + 1) {
      const YAML::Mark& mark = starts.last();
      Diagnostic d;
      d.where.file = std::string(file);
      d.where.line = mark.line + 1;
      d.where.column = mark.column + 1;
      std::string_view found;
      if (mark.pos >= 0 && static_cast<size_t>(mark.pos) < text.size()) {
        found = std::string_view(text).substr(static_cast<size_t>(mark.pos), 1);
      }
      d.message =
          "invalid YAML: unexpected " + QuoteForMessage(found) + " where a node should start";
      return d;
    }
  }
  return std::nullopt;
}

}  // namespace

// kubectl's `kind: List` (what `podless get -o yaml` prints for several
// objects) is unpacked into its items, so that output can be applied again.
// Items keep their own positions, so errors still point into the file.
static std::vector<YAML::Node> UnpackLists(const std::vector<YAML::Node>& documents) {
  std::vector<YAML::Node> out;
  for (const YAML::Node& document : documents) {
    const bool is_list = document.IsMap() && document["kind"] && document["kind"].IsScalar() &&
                         document["kind"].Scalar() == "List" && document["items"] &&
                         document["items"].IsSequence();
    if (!is_list) {
      out.push_back(document);
      continue;
    }
    for (const YAML::Node& item : document["items"]) out.push_back(item);
  }
  return out;
}

ParseResult ParseManifests(std::string_view text, std::string_view file_name,
                           const ParseOptions& options) {
  ParseResult result;
  Diagnostic failure;
  failure.where.file = std::string(file_name);
  if (text.size() > kMaxManifestBytes) {
    // Refused before yaml-cpp builds a tree of it (several times its size).
    failure.message = "the manifest is " + SizeLimitMessage(text.size(), kMaxManifestBytes) +
                      " per file; split it into several files";
    result.errors.push_back(std::move(failure));
    return result;
  }
  try {
    // LoadAll needs the whole stream; a syntax error in any document throws
    // before any document is returned.
    std::string input(text);
    if (std::optional<Diagnostic> endless = FindEndlessDocument(input, file_name)) {
      result.errors.push_back(std::move(*endless));
      return result;
    }
    std::vector<YAML::Node> documents = YAML::LoadAll(input);
    // Enough for any real manifest (a node costs at least a byte of text),
    // small enough that alias expansion cannot exhaust memory or time.
    size_t budget = text.size() + 10'000;
    return ParseDocuments(UnpackLists(documents), file_name, budget, options);
  } catch (const YAML::Exception& e) {
    if (!e.mark.is_null() && e.mark.line >= 0 && e.mark.column >= 0) {
      failure.where.line = e.mark.line + 1;
      failure.where.column = e.mark.column + 1;
    }
    failure.message = "invalid YAML: " + e.msg;
  } catch (const std::exception& e) {
    failure.message = std::string("cannot read manifest: ") + e.what();
  } catch (...) {
    failure.message = "cannot read manifest";
  }
  result.errors.push_back(std::move(failure));
  return result;
}

}  // namespace podless::workloads
