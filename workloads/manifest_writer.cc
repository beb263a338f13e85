#include "workloads/manifest_writer.h"

#include <yaml-cpp/yaml.h>

#include <string_view>

#include "workloads/quantity.h"

namespace podless::workloads {
namespace {

bool IsPlainChar(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '_' || ch == '.' || ch == '/' || ch == '-' || ch == ':';
}

// Whether a string reads back as the same string when written unquoted. Kept
// deliberately narrow: anything doubtful is quoted, which is always correct.
bool IsSafePlain(std::string_view s) {
  if (s.empty()) return false;
  char first = s.front();
  if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || first == '/')) {
    return false;  // digits, signs and dots may read as numbers; others are indicators
  }
  for (size_t i = 0; i < s.size(); ++i) {
    if (!IsPlainChar(s[i])) return false;
    if (s[i] == ':' && (i + 1 == s.size() || s[i + 1] == ' ')) return false;
  }
  // YAML 1.1 booleans and null, which some readers still resolve.
  std::string lower(s);
  for (char& ch : lower) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  for (const char* word : {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}) {
    if (lower == word) return false;
  }
  return true;
}

void String(YAML::Emitter& out, const std::string& s) {
  if (IsSafePlain(s)) {
    out << s;
  } else {
    out << YAML::DoubleQuoted << s;
  }
}

void Field(YAML::Emitter& out, const char* key, const std::string& value) {
  out << YAML::Key << key << YAML::Value;
  String(out, value);
}

void Field(YAML::Emitter& out, const char* key, unsigned long long value) {
  out << YAML::Key << key << YAML::Value << value;
}

void StringMap(YAML::Emitter& out, const char* key, const std::map<std::string, std::string>& m) {
  out << YAML::Key << key << YAML::Value;
  if (m.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  out << YAML::BeginMap;
  for (const auto& [k, v] : m) {
    out << YAML::Key;
    String(out, k);
    out << YAML::Value;
    String(out, v);
  }
  out << YAML::EndMap;
}

void StringList(YAML::Emitter& out, const char* key, const std::vector<std::string>& values) {
  out << YAML::Key << key << YAML::Value;
  if (values.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const std::string& v : values) String(out, v);
  out << YAML::EndSeq;
}

// Empty sequences are written inline ("ports: []"), the way people write them.
void BeginSeq(YAML::Emitter& out, bool empty) {
  if (empty) out << YAML::Flow;
  out << YAML::BeginSeq;
}

void EmptyMap(YAML::Emitter& out) { out << YAML::Flow << YAML::BeginMap << YAML::EndMap; }

const char* ProtocolName(Protocol p) { return p == Protocol::kHTTP ? "HTTP" : "TCP"; }

void PortRefValue(YAML::Emitter& out, const PortRef& ref) {
  if (!ref.name.empty()) {
    String(out, ref.name);
  } else {
    out << ref.number;
  }
}

void Metadata(YAML::Emitter& out, const ObjectMeta& meta) {
  out << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
  Field(out, "name", meta.name);
  if (!meta.ns.empty()) Field(out, "namespace", meta.ns);  // a Namespace has none
  if (!meta.labels.empty()) StringMap(out, "labels", meta.labels);
  if (!meta.annotations.is_default()) StringMap(out, "annotations", *meta.annotations);
  out << YAML::EndMap;
}

void WriteProbe(YAML::Emitter& out, const Probe& probe) {
  out << YAML::Key << "readinessProbe" << YAML::Value << YAML::BeginMap;
  bool http = probe.kind == Probe::Kind::kHttpGet;
  out << YAML::Key << (http ? "httpGet" : "tcpSocket") << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "port" << YAML::Value;
  PortRefValue(out, probe.port);
  if (http) Field(out, "path", probe.path);
  out << YAML::EndMap;
  Field(out, "initialDelaySeconds", probe.initial_delay_seconds);
  Field(out, "periodSeconds", probe.period_seconds);
  Field(out, "timeoutSeconds", probe.timeout_seconds);
  Field(out, "failureThreshold", probe.failure_threshold);
  Field(out, "successThreshold", probe.success_threshold);
  out << YAML::EndMap;
}

// Only the fields that are set: an unset one means the agent's own identity.
void WriteSecurityContext(YAML::Emitter& out, const SecurityContext& context) {
  out << YAML::Key << "securityContext" << YAML::Value << YAML::BeginMap;
  if (context.run_as_user) Field(out, "runAsUser", *context.run_as_user);
  if (context.run_as_group) Field(out, "runAsGroup", *context.run_as_group);
  if (context.run_as_non_root) {
    out << YAML::Key << "runAsNonRoot" << YAML::Value << *context.run_as_non_root;
  }
  out << YAML::EndMap;
}

// Quantities in their canonical form ("128Mi", "500m"), which are plain
// scalars that read back as the same text.
void WriteLimits(YAML::Emitter& out, const ResourceLimits& limits) {
  out << YAML::Key << "resources" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
  if (limits.memory_bytes != 0) {
    out << YAML::Key << "memory" << YAML::Value << FormatMemoryQuantity(limits.memory_bytes);
  }
  if (limits.cpu_millis != 0) {
    out << YAML::Key << "cpu" << YAML::Value << FormatCpuQuantity(limits.cpu_millis);
  }
  if (limits.pids != 0) Field(out, "pids", limits.pids);
  out << YAML::EndMap << YAML::EndMap;
}

void App(YAML::Emitter& out, const AppSpec& app) {
  out << YAML::Key << "app" << YAML::Value << YAML::BeginMap;
  if (std::holds_alternative<EchoApp>(app)) {
    out << YAML::Key << "echo" << YAML::Value;
    EmptyMap(out);
  } else if (const auto* s = std::get_if<StaticApp>(&app)) {
    out << YAML::Key << "static" << YAML::Value << YAML::BeginMap;
    Field(out, "status", s->status);
    Field(out, "body", s->body);
    if (!s->headers.empty()) StringMap(out, "headers", s->headers);
    out << YAML::EndMap;
  } else if (const auto* f = std::get_if<ForwardApp>(&app)) {
    out << YAML::Key << "forward" << YAML::Value << YAML::BeginMap;
    Field(out, "address", f->address);
    out << YAML::EndMap;
  } else if (const auto* e = std::get_if<ExecApp>(&app)) {
    auto env = [&out](const std::vector<EnvVar>& vars) {
      if (vars.empty()) return;
      out << YAML::Key << "env" << YAML::Value << YAML::BeginSeq;
      for (const EnvVar& var : vars) {
        out << YAML::BeginMap;
        Field(out, "name", var.name);
        Field(out, "value", var.value);
        out << YAML::EndMap;
      }
      out << YAML::EndSeq;
    };
    out << YAML::Key << "exec" << YAML::Value << YAML::BeginMap;
    if (!e->containers->name.empty()) Field(out, "name", e->containers->name);
    StringList(out, "command", e->command);
    env(e->env);
    if (!e->working_dir.empty()) Field(out, "workingDir", e->working_dir);
    if (!e->containers->more.empty()) {
      out << YAML::Key << "containers" << YAML::Value << YAML::BeginSeq;
      for (const ExecContainer& c : e->containers->more) {
        out << YAML::BeginMap;
        Field(out, "name", c.name);
        StringList(out, "command", c.command);
        env(c.env);
        if (!c.working_dir.empty()) Field(out, "workingDir", c.working_dir);
        if (c.readiness_probe) WriteProbe(out, *c.readiness_probe);
        out << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    const char* restart = e->restart_policy == RestartPolicy::kOnFailure ? "OnFailure"
                          : e->restart_policy == RestartPolicy::kNever   ? "Never"
                                                                         : "Always";
    Field(out, "restartPolicy", restart);
    if (e->readiness_probe) WriteProbe(out, *e->readiness_probe);
    Field(out, "terminationGracePeriodSeconds", e->termination_grace_period_seconds);
    const ExecSandbox& sandbox = *e->sandbox;
    if (!(sandbox.security_context == SecurityContext{})) {
      WriteSecurityContext(out, sandbox.security_context);
    }
    if (!(sandbox.limits == ResourceLimits{})) WriteLimits(out, sandbox.limits);
    out << YAML::Key << "keepWorkingDir" << YAML::Value << sandbox.keep_working_dir;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

void WorkloadBody(YAML::Emitter& out, const Workload& w) {
  Field(out, "kind", "Workload");
  Metadata(out, w.metadata);
  out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  Field(out, "replicas", w.spec.replicas);
  Field(out, "serviceAccount", w.spec.service_account);
  out << YAML::Key << "ports" << YAML::Value;
  BeginSeq(out, w.spec.ports.empty());
  for (const PortSpec& port : w.spec.ports) {
    out << YAML::BeginMap;
    if (!port.name.empty()) Field(out, "name", port.name);
    Field(out, "port", port.port);
    Field(out, "protocol", ProtocolName(port.protocol));
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  App(out, w.spec.app);
  out << YAML::EndMap;
}

void ServiceBody(YAML::Emitter& out, const Service& s) {
  Field(out, "kind", "Service");
  Metadata(out, s.metadata);
  out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  StringMap(out, "selector", s.selector);
  out << YAML::Key << "ports" << YAML::Value;
  BeginSeq(out, s.ports.empty());
  for (const ServicePort& port : s.ports) {
    out << YAML::BeginMap;
    if (!port.name.empty()) Field(out, "name", port.name);
    Field(out, "port", port.port);
    out << YAML::Key << "targetPort" << YAML::Value;
    if (port.target_port.name.empty() && port.target_port.number == 0) {
      out << port.port;  // unset means "same as port"
    } else {
      PortRefValue(out, port.target_port);
    }
    Field(out, "protocol", ProtocolName(port.protocol));
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
}

// Istio writes policy ports as strings; so do we, so the output reads like
// an Istio AuthorizationPolicy.
void PortList(YAML::Emitter& out, const char* key, const std::vector<uint16_t>& ports) {
  out << YAML::Key << key << YAML::Value << YAML::BeginSeq;
  for (uint16_t port : ports) out << YAML::DoubleQuoted << std::to_string(port);
  out << YAML::EndSeq;
}

void PolicyBody(YAML::Emitter& out, const AuthorizationPolicy& p) {
  Field(out, "kind", "AuthorizationPolicy");
  Metadata(out, p.metadata);
  out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  if (!p.selector.empty()) {
    out << YAML::Key << "selector" << YAML::Value << YAML::BeginMap;
    StringMap(out, "matchLabels", p.selector);
    out << YAML::EndMap;
  }
  Field(out, "action", p.action == PolicyAction::kDeny ? "DENY" : "ALLOW");
  out << YAML::Key << "rules" << YAML::Value;
  BeginSeq(out, p.rules.empty());
  for (const PolicyRule& rule : p.rules) {
    out << YAML::BeginMap;
    if (!rule.from.empty()) {
      out << YAML::Key << "from" << YAML::Value << YAML::BeginSeq;
      for (const PolicySource& s : rule.from) {
        out << YAML::BeginMap << YAML::Key << "source" << YAML::Value << YAML::BeginMap;
        const std::pair<const char*, const std::vector<std::string>*> lists[] = {
            {"principals", &s.principals},
            {"notPrincipals", &s.not_principals},
            {"namespaces", &s.namespaces},
            {"notNamespaces", &s.not_namespaces},
            {"serviceAccounts", &s.service_accounts},
            {"notServiceAccounts", &s.not_service_accounts},
            {"ipBlocks", &s.ip_blocks},
            {"notIpBlocks", &s.not_ip_blocks},
            {"remoteIpBlocks", &s.remote_ip_blocks},
            {"notRemoteIpBlocks", &s.not_remote_ip_blocks},
            {"requestPrincipals", &s.request_principals},
            {"notRequestPrincipals", &s.not_request_principals},
        };
        for (const auto& [name, list] : lists) {
          if (!list->empty()) StringList(out, name, *list);
        }
        out << YAML::EndMap << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    if (!rule.to.empty()) {
      out << YAML::Key << "to" << YAML::Value << YAML::BeginSeq;
      for (const PolicyOperation& op : rule.to) {
        out << YAML::BeginMap << YAML::Key << "operation" << YAML::Value << YAML::BeginMap;
        if (!op.ports.empty()) PortList(out, "ports", op.ports);
        if (!op.not_ports.empty()) PortList(out, "notPorts", op.not_ports);
        const std::pair<const char*, const std::vector<std::string>*> lists[] = {
            {"hosts", &op.hosts},     {"notHosts", &op.not_hosts},
            {"methods", &op.methods}, {"notMethods", &op.not_methods},
            {"paths", &op.paths},     {"notPaths", &op.not_paths},
        };
        for (const auto& [name, list] : lists) {
          if (!list->empty()) StringList(out, name, *list);
        }
        out << YAML::EndMap << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    if (!rule.when.empty()) {
      out << YAML::Key << "when" << YAML::Value << YAML::BeginSeq;
      for (const PolicyCondition& condition : rule.when) {
        out << YAML::BeginMap;
        Field(out, "key", condition.key);
        if (!condition.values.empty()) StringList(out, "values", condition.values);
        if (!condition.not_values.empty()) StringList(out, "notValues", condition.not_values);
        out << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
}

void Body(YAML::Emitter& out, const Workload& w) {
  Field(out, "apiVersion", kApiVersion);
  WorkloadBody(out, w);
}
void Body(YAML::Emitter& out, const Service& s) {
  Field(out, "apiVersion", kApiVersion);
  ServiceBody(out, s);
}
void Body(YAML::Emitter& out, const AuthorizationPolicy& p) {
  Field(out, "apiVersion", kApiVersion);
  PolicyBody(out, p);
}

// The kinds that exist only as Kubernetes or Istio kinds are written in them.
void Body(YAML::Emitter& out, const Namespace& ns) {
  Field(out, "apiVersion", "v1");
  Field(out, "kind", "Namespace");
  Metadata(out, ns.metadata);
}

void Body(YAML::Emitter& out, const ServiceAccount& account) {
  Field(out, "apiVersion", "v1");
  Field(out, "kind", "ServiceAccount");
  Metadata(out, account.metadata);
}

void Body(YAML::Emitter& out, const PeerAuthentication& peer) {
  Field(out, "apiVersion", "security.istio.io/v1");
  Field(out, "kind", "PeerAuthentication");
  Metadata(out, peer.metadata);
  out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  if (!peer.selector.empty()) {
    out << YAML::Key << "selector" << YAML::Value << YAML::BeginMap;
    StringMap(out, "matchLabels", peer.selector);
    out << YAML::EndMap;
  }
  if (peer.mode != MtlsMode::kUnset) {
    out << YAML::Key << "mtls" << YAML::Value << YAML::BeginMap;
    Field(out, "mode", MtlsModeName(peer.mode));
    out << YAML::EndMap;
  }
  if (!peer.port_level.empty()) {
    out << YAML::Key << "portLevelMtls" << YAML::Value << YAML::BeginMap;
    for (const auto& [port, mode] : peer.port_level) {
      out << YAML::Key << std::to_string(port) << YAML::Value << YAML::BeginMap;
      Field(out, "mode", MtlsModeName(mode));
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

void Body(YAML::Emitter& out, const WorkloadEntry& entry) {
  Field(out, "apiVersion", "networking.istio.io/v1");
  Field(out, "kind", "WorkloadEntry");
  Metadata(out, entry.metadata);
  out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  Field(out, "address", entry.address);
  if (!entry.labels.empty()) StringMap(out, "labels", entry.labels);
  Field(out, "serviceAccount", entry.service_account);
  if (!entry.ports.empty()) {
    out << YAML::Key << "ports" << YAML::Value << YAML::BeginMap;
    for (const auto& [name, port] : entry.ports) Field(out, name.c_str(), port);
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

}  // namespace

std::string WriteManifest(const Object& object) {
  // What the user applied as a Kubernetes or Istio kind is shown as written.
  if (const auto& as = MetaOf(object).applied_as) return as->document;
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::visit([&out](const auto& o) { Body(out, o); }, object);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace podless::workloads
