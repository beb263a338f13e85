#include "api/model_convert.h"

#include <string>
#include <utility>
#include <vector>

#include "workloads/validation.h"

namespace podless::api {
namespace {

namespace wl = workloads;

// ---------------------------------------------------------------------------
// Model -> proto.

v1::Protocol ToProtoProtocol(wl::Protocol protocol) {
  return protocol == wl::Protocol::kHTTP ? v1::HTTP : v1::TCP;
}

void FillMeta(const wl::ObjectMeta& meta, v1::ObjectMeta* out) {
  out->set_name(meta.name);
  out->set_namespace_(meta.ns);
  out->mutable_labels()->insert(meta.labels.begin(), meta.labels.end());
  out->mutable_annotations()->insert(meta.annotations->begin(), meta.annotations->end());
  if (meta.applied_as) {
    v1::AppliedAs* as = out->mutable_applied_as();
    as->set_api_version(meta.applied_as->api_version);
    as->set_kind(meta.applied_as->kind);
    as->set_document(meta.applied_as->document);
  }
}

void FillPortRef(const wl::PortRef& ref, v1::PortRef* out) {
  // The model keeps exactly one of the two; a name wins if both were set.
  if (!ref.name.empty()) {
    out->set_name(ref.name);
  } else {
    out->set_number(ref.number);
  }
}

void FillProbe(const wl::Probe& probe, v1::Probe* out) {
  if (probe.kind == wl::Probe::Kind::kHttpGet) {
    v1::Probe::HttpGet* get = out->mutable_http_get();
    FillPortRef(probe.port, get->mutable_port());
    get->set_path(probe.path);
  } else {
    FillPortRef(probe.port, out->mutable_tcp_socket()->mutable_port());
  }
  out->set_initial_delay_seconds(probe.initial_delay_seconds);
  out->mutable_period_seconds()->set_value(probe.period_seconds);
  out->mutable_timeout_seconds()->set_value(probe.timeout_seconds);
  out->mutable_failure_threshold()->set_value(probe.failure_threshold);
  out->mutable_success_threshold()->set_value(probe.success_threshold);
}

v1::RestartPolicy ToProtoRestartPolicy(wl::RestartPolicy policy) {
  switch (policy) {
    case wl::RestartPolicy::kAlways:
      return v1::ALWAYS;
    case wl::RestartPolicy::kOnFailure:
      return v1::ON_FAILURE;
    case wl::RestartPolicy::kNever:
      return v1::NEVER;
  }
  return v1::ALWAYS;
}

// Only what is set: an absent field means the agent's own identity, or no
// limit, and a client must be able to tell that from any value.
void FillSandbox(const wl::ExecSandbox& sandbox, v1::ExecApp* out) {
  const wl::SecurityContext& context = sandbox.security_context;
  if (!(context == wl::SecurityContext{})) {
    v1::SecurityContext* c = out->mutable_security_context();
    if (context.run_as_user) c->mutable_run_as_user()->set_value(*context.run_as_user);
    if (context.run_as_group) c->mutable_run_as_group()->set_value(*context.run_as_group);
    if (context.run_as_non_root) {
      c->mutable_run_as_non_root()->set_value(*context.run_as_non_root);
    }
  }
  const wl::ResourceLimits& limits = sandbox.limits;
  if (!(limits == wl::ResourceLimits{})) {
    v1::ResourceLimits* l = out->mutable_resources()->mutable_limits();
    if (limits.memory_bytes != 0) l->mutable_memory_bytes()->set_value(limits.memory_bytes);
    if (limits.cpu_millis != 0) l->mutable_cpu_millis()->set_value(limits.cpu_millis);
    if (limits.pids != 0) l->mutable_pids()->set_value(limits.pids);
  }
  out->set_keep_working_dir(sandbox.keep_working_dir);
}

struct AppFiller {
  v1::App* out;
  void operator()(const wl::EchoApp&) const { out->mutable_echo(); }
  void operator()(const wl::StaticApp& app) const {
    v1::StaticApp* s = out->mutable_static_();
    s->set_status(app.status);
    s->set_body(app.body);
    s->mutable_headers()->insert(app.headers.begin(), app.headers.end());
  }
  void operator()(const wl::ForwardApp& app) const {
    out->mutable_forward()->set_address(app.address);
  }
  void operator()(const wl::ExecApp& app) const {
    v1::ExecApp* e = out->mutable_exec();
    for (const std::string& arg : app.command) e->add_command(arg);
    for (const wl::EnvVar& var : app.env) {
      v1::EnvVar* v = e->add_env();
      v->set_name(var.name);
      v->set_value(var.value);
    }
    e->set_working_dir(app.working_dir);
    e->set_restart_policy(ToProtoRestartPolicy(app.restart_policy));
    if (app.readiness_probe) FillProbe(*app.readiness_probe, e->mutable_readiness_probe());
    e->mutable_termination_grace_period_seconds()->set_value(app.termination_grace_period_seconds);
    FillSandbox(*app.sandbox, e);
    e->set_name(app.containers->name);
    for (const wl::ExecContainer& container : app.containers->more) {
      v1::ExecContainer* c = e->add_containers();
      c->set_name(container.name);
      for (const std::string& arg : container.command) c->add_command(arg);
      for (const wl::EnvVar& var : container.env) {
        v1::EnvVar* v = c->add_env();
        v->set_name(var.name);
        v->set_value(var.value);
      }
      c->set_working_dir(container.working_dir);
      if (container.readiness_probe) {
        FillProbe(*container.readiness_probe, c->mutable_readiness_probe());
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Proto -> model.

// Collects every structural problem of one message, each with its field path,
// so a client fixes them all in one round trip.
class Problems {
 public:
  void Add(std::string field, std::string message) {
    lines_.push_back(std::move(field) + ": " + std::move(message));
  }
  bool empty() const { return lines_.empty(); }
  Error ToError() const {
    std::string text;
    for (const std::string& line : lines_) {
      if (!text.empty()) text += '\n';
      text += line;
    }
    return MakeError(ErrorCode::kInvalidArgument, std::move(text));
  }

 private:
  std::vector<std::string> lines_;
};

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// A uint32 on the wire, a uint16 in the model. 0 passes: "port is required"
// is a semantic rule and validation words it.
uint16_t PortFromProto(uint32_t value, const std::string& field, Problems& problems) {
  if (value > 65535) {
    problems.Add(field, std::to_string(value) + " is not a port number (1-65535)");
    return 0;
  }
  return static_cast<uint16_t>(value);
}

wl::Protocol ProtocolFromProto(v1::Protocol protocol, const std::string& field,
                               Problems& problems) {
  switch (protocol) {
    case v1::PROTOCOL_UNSPECIFIED:
    case v1::TCP:
      return wl::Protocol::kTCP;
    case v1::HTTP:
      return wl::Protocol::kHTTP;
    default:
      break;
  }
  problems.Add(field, "unknown protocol " + std::to_string(protocol) + " (expected TCP or HTTP)");
  return wl::Protocol::kTCP;
}

wl::ObjectMeta MetaFromProto(const v1::ObjectMeta& meta) {
  wl::ObjectMeta out;
  out.name = meta.name();
  if (!meta.namespace_().empty()) out.ns = meta.namespace_();
  out.labels.insert(meta.labels().begin(), meta.labels().end());
  if (!meta.annotations().empty()) {
    out.annotations = wl::Labels(meta.annotations().begin(), meta.annotations().end());
  }
  if (meta.has_applied_as()) {
    out.applied_as = wl::AppliedAs{meta.applied_as().api_version(), meta.applied_as().kind(),
                                   meta.applied_as().document()};
  }
  return out;
}

v1::MtlsMode ToProtoMtlsMode(wl::MtlsMode mode) {
  switch (mode) {
    case wl::MtlsMode::kUnset:
      return v1::MTLS_MODE_UNSPECIFIED;
    case wl::MtlsMode::kPermissive:
      return v1::PERMISSIVE;
    case wl::MtlsMode::kStrict:
      return v1::STRICT;
    case wl::MtlsMode::kDisable:
      return v1::DISABLE;
  }
  return v1::MTLS_MODE_UNSPECIFIED;
}

wl::MtlsMode MtlsModeFromProto(int mode, const std::string& field, Problems& problems) {
  switch (mode) {
    case v1::MTLS_MODE_UNSPECIFIED:
      return wl::MtlsMode::kUnset;
    case v1::PERMISSIVE:
      return wl::MtlsMode::kPermissive;
    case v1::STRICT:
      return wl::MtlsMode::kStrict;
    case v1::DISABLE:
      return wl::MtlsMode::kDisable;
    default:
      break;
  }
  problems.Add(field, "unknown mode " + std::to_string(mode) +
                          " (expected UNSET, PERMISSIVE, STRICT or DISABLE)");
  return wl::MtlsMode::kUnset;
}

// Returns false when the oneof is not set, so the caller decides whether that
// is an error (probe port) or means a default (a service's targetPort).
bool PortRefFromProto(const v1::PortRef& ref, const std::string& field, Problems& problems,
                      wl::PortRef* out) {
  switch (ref.ref_case()) {
    case v1::PortRef::kNumber:
      out->number = PortFromProto(ref.number(), field, problems);
      return true;
    case v1::PortRef::kName:
      out->name = ref.name();
      return true;
    case v1::PortRef::REF_NOT_SET:
      break;
  }
  return false;
}

wl::Probe ProbeFromProto(const v1::Probe& probe, const std::string& path, Problems& problems) {
  wl::Probe out;
  const v1::PortRef* port = nullptr;
  std::string port_path;
  switch (probe.handler_case()) {
    case v1::Probe::kTcpSocket:
      out.kind = wl::Probe::Kind::kTcpSocket;
      port = &probe.tcp_socket().port();
      port_path = path + ".tcpSocket.port";
      break;
    case v1::Probe::kHttpGet:
      out.kind = wl::Probe::Kind::kHttpGet;
      port = &probe.http_get().port();
      port_path = path + ".httpGet.port";
      if (!probe.http_get().path().empty()) out.path = probe.http_get().path();
      break;
    case v1::Probe::HANDLER_NOT_SET:
      problems.Add(path, "one of tcpSocket or httpGet is required");
      break;
  }
  if (port != nullptr && !PortRefFromProto(*port, port_path, problems, &out.port)) {
    problems.Add(port_path, "a port number or port name is required");
  }
  out.initial_delay_seconds = probe.initial_delay_seconds();
  if (probe.has_period_seconds()) out.period_seconds = probe.period_seconds().value();
  if (probe.has_timeout_seconds()) out.timeout_seconds = probe.timeout_seconds().value();
  if (probe.has_failure_threshold()) out.failure_threshold = probe.failure_threshold().value();
  if (probe.has_success_threshold()) out.success_threshold = probe.success_threshold().value();
  return out;
}

wl::RestartPolicy RestartPolicyFromProto(v1::RestartPolicy policy, const std::string& field,
                                         Problems& problems) {
  switch (policy) {
    case v1::RESTART_POLICY_UNSPECIFIED:
    case v1::ALWAYS:
      return wl::RestartPolicy::kAlways;
    case v1::ON_FAILURE:
      return wl::RestartPolicy::kOnFailure;
    case v1::NEVER:
      return wl::RestartPolicy::kNever;
    default:
      break;
  }
  problems.Add(field, "unknown restart policy " + std::to_string(policy) +
                          " (expected ALWAYS, ON_FAILURE or NEVER)");
  return wl::RestartPolicy::kAlways;
}

// Limits of 0 are refused here: the model spells "no limit" as 0, so
// workloads::Validate cannot tell a written 0 from an absent field.
wl::ExecSandbox SandboxFromProto(const v1::ExecApp& exec, const std::string& path,
                                 Problems& problems) {
  wl::ExecSandbox out;
  const v1::SecurityContext& context = exec.security_context();
  if (context.has_run_as_user()) out.security_context.run_as_user = context.run_as_user().value();
  if (context.has_run_as_group()) {
    out.security_context.run_as_group = context.run_as_group().value();
  }
  if (context.has_run_as_non_root()) {
    out.security_context.run_as_non_root = context.run_as_non_root().value();
  }
  const v1::ResourceLimits& limits = exec.resources().limits();
  const std::string limits_path = path + ".resources.limits";
  if (limits.has_memory_bytes()) {
    out.limits.memory_bytes = limits.memory_bytes().value();
    if (out.limits.memory_bytes == 0) {
      problems.Add(limits_path + ".memory", "must be at least 1Mi (leave it out for no limit)");
    }
  }
  if (limits.has_cpu_millis()) {
    out.limits.cpu_millis = limits.cpu_millis().value();
    if (out.limits.cpu_millis == 0) {
      problems.Add(limits_path + ".cpu", "must be more than 0 (leave it out for no limit)");
    }
  }
  if (limits.has_pids()) {
    out.limits.pids = limits.pids().value();
    if (out.limits.pids == 0) {
      problems.Add(limits_path + ".pids", "must be more than 0 (leave it out for no limit)");
    }
  }
  out.keep_working_dir = exec.keep_working_dir();
  return out;
}

wl::ExecApp ExecFromProto(const v1::ExecApp& exec, const std::string& path, Problems& problems) {
  wl::ExecApp out;
  out.command.assign(exec.command().begin(), exec.command().end());
  for (const v1::EnvVar& var : exec.env()) out.env.push_back({var.name(), var.value()});
  out.working_dir = exec.working_dir();
  out.restart_policy =
      RestartPolicyFromProto(exec.restart_policy(), path + ".restartPolicy", problems);
  if (exec.has_readiness_probe()) {
    out.readiness_probe =
        ProbeFromProto(exec.readiness_probe(), path + ".readinessProbe", problems);
  }
  if (exec.has_termination_grace_period_seconds()) {
    out.termination_grace_period_seconds = exec.termination_grace_period_seconds().value();
  }
  out.sandbox = SandboxFromProto(exec, path, problems);
  if (!exec.name().empty() || exec.containers_size() > 0) {
    wl::ExecContainers& containers = out.containers.mutable_value();
    containers.name = exec.name();
    for (int i = 0; i < exec.containers_size(); ++i) {
      const v1::ExecContainer& c = exec.containers(i);
      wl::ExecContainer& container = containers.more.emplace_back();
      container.name = c.name();
      container.command.assign(c.command().begin(), c.command().end());
      for (const v1::EnvVar& var : c.env()) container.env.push_back({var.name(), var.value()});
      container.working_dir = c.working_dir();
      if (c.has_readiness_probe()) {
        container.readiness_probe = ProbeFromProto(
            c.readiness_probe(), path + ".containers[" + std::to_string(i) + "].readinessProbe",
            problems);
      }
    }
  }
  return out;
}

wl::AppSpec AppFromProto(const v1::App& app, const std::string& path, Problems& problems) {
  switch (app.kind_case()) {
    case v1::App::kEcho:
      return wl::EchoApp{};
    case v1::App::kStatic: {
      wl::StaticApp out;
      const v1::StaticApp& s = app.static_();
      if (s.status() > 65535) {
        problems.Add(path + ".static.status",
                     std::to_string(s.status()) + " is not an HTTP status code (100-599)");
      } else if (s.status() != 0) {
        out.status = static_cast<uint16_t>(s.status());
      }
      out.body = s.body();
      out.headers.insert(s.headers().begin(), s.headers().end());
      return out;
    }
    case v1::App::kForward:
      return wl::ForwardApp{app.forward().address()};
    case v1::App::kExec:
      return ExecFromProto(app.exec(), path + ".exec", problems);
    case v1::App::KIND_NOT_SET:
      break;
  }
  // An `app` message that is present but empty is most likely an app kind
  // this agent does not know (a newer client); running echo instead would
  // hide that, so it is an error. An absent `app` means echo.
  problems.Add(path, "one of echo, static, forward or exec is required");
  return wl::EchoApp{};
}

wl::Workload WorkloadFromProto(const v1::Workload& workload, const std::string& path,
                               Problems& problems) {
  wl::Workload out;
  out.metadata = MetaFromProto(workload.metadata());
  const v1::WorkloadSpec& spec = workload.spec();
  if (spec.has_replicas()) out.spec.replicas = spec.replicas().value();
  if (!spec.service_account().empty()) out.spec.service_account = spec.service_account();
  // Field paths are spelled out only where a problem needs one: this runs for
  // every workload of a RegisterBatch, and most ports are sound and most
  // apps are echo.
  out.spec.ports.reserve(spec.ports_size());
  for (int i = 0; i < spec.ports_size(); ++i) {
    const v1::Port& port = spec.ports(i);
    wl::PortSpec p;
    p.name = port.name();
    if (port.port() <= 65535 && v1::Protocol_IsValid(port.protocol())) {
      p.port = static_cast<uint16_t>(port.port());
      p.protocol = ProtocolFromProto(port.protocol(), std::string(), problems);
    } else {
      const std::string port_path = Index(path + ".spec.ports", i);
      p.port = PortFromProto(port.port(), port_path + ".port", problems);
      p.protocol = ProtocolFromProto(port.protocol(), port_path + ".protocol", problems);
    }
    out.spec.ports.push_back(std::move(p));
  }
  if (spec.has_app() && spec.app().kind_case() != v1::App::kEcho) {
    out.spec.app = AppFromProto(spec.app(), path + ".spec.app", problems);
  }
  return out;
}

wl::Service ServiceFromProto(const v1::Service& service, const std::string& path,
                             Problems& problems) {
  wl::Service out;
  out.metadata = MetaFromProto(service.metadata());
  out.selector.insert(service.spec().selector().begin(), service.spec().selector().end());
  for (int i = 0; i < service.spec().ports_size(); ++i) {
    const v1::ServicePort& port = service.spec().ports(i);
    const std::string port_path = Index(path + ".spec.ports", i);
    wl::ServicePort p;
    p.name = port.name();
    p.port = PortFromProto(port.port(), port_path + ".port", problems);
    if (!PortRefFromProto(port.target_port(), port_path + ".targetPort", problems,
                          &p.target_port)) {
      p.target_port.number = p.port;  // Kubernetes: targetPort defaults to port.
    }
    p.protocol = ProtocolFromProto(port.protocol(), port_path + ".protocol", problems);
    out.ports.push_back(std::move(p));
  }
  return out;
}

std::vector<uint16_t> PortsFromProto(const google::protobuf::RepeatedField<uint32_t>& ports,
                                     const std::string& path, Problems& problems) {
  std::vector<uint16_t> out;
  for (int i = 0; i < ports.size(); ++i) {
    out.push_back(PortFromProto(ports.Get(i), Index(path, i), problems));
  }
  return out;
}

void Assign(const google::protobuf::RepeatedPtrField<std::string>& from,
            std::vector<std::string>& to) {
  to.assign(from.begin(), from.end());
}

void Append(const std::vector<std::string>& from,
            google::protobuf::RepeatedPtrField<std::string>* to) {
  to->Add(from.begin(), from.end());
}

wl::AuthorizationPolicy PolicyFromProto(const v1::AuthorizationPolicy& policy,
                                        const std::string& path, Problems& problems) {
  wl::AuthorizationPolicy out;
  out.metadata = MetaFromProto(policy.metadata());
  const v1::AuthorizationPolicySpec& spec = policy.spec();
  out.selector.insert(spec.match_labels().begin(), spec.match_labels().end());
  switch (spec.action()) {
    case v1::POLICY_ACTION_UNSPECIFIED:
    case v1::ALLOW:
      out.action = wl::PolicyAction::kAllow;
      break;
    case v1::DENY:
      out.action = wl::PolicyAction::kDeny;
      break;
    default:
      problems.Add(path + ".spec.action",
                   "unknown action " + std::to_string(spec.action()) + " (expected ALLOW or DENY)");
  }
  for (int r = 0; r < spec.rules_size(); ++r) {
    const v1::PolicyRule& rule = spec.rules(r);
    const std::string rule_path = Index(path + ".spec.rules", r);
    wl::PolicyRule out_rule;
    for (const v1::PolicySource& from : rule.from()) {
      wl::PolicySource source;
      source.principals.assign(from.principals().begin(), from.principals().end());
      source.not_principals.assign(from.not_principals().begin(), from.not_principals().end());
      source.namespaces.assign(from.namespaces().begin(), from.namespaces().end());
      source.not_namespaces.assign(from.not_namespaces().begin(), from.not_namespaces().end());
      Assign(from.service_accounts(), source.service_accounts);
      Assign(from.not_service_accounts(), source.not_service_accounts);
      Assign(from.ip_blocks(), source.ip_blocks);
      Assign(from.not_ip_blocks(), source.not_ip_blocks);
      Assign(from.remote_ip_blocks(), source.remote_ip_blocks);
      Assign(from.not_remote_ip_blocks(), source.not_remote_ip_blocks);
      Assign(from.request_principals(), source.request_principals);
      Assign(from.not_request_principals(), source.not_request_principals);
      out_rule.from.push_back(std::move(source));
    }
    for (int t = 0; t < rule.to_size(); ++t) {
      // Manifest spelling, as validation's paths: `to: [{operation: {ports}}]`.
      const std::string to_path = Index(rule_path + ".to", t) + ".operation";
      wl::PolicyOperation operation;
      operation.ports = PortsFromProto(rule.to(t).ports(), to_path + ".ports", problems);
      operation.not_ports = PortsFromProto(rule.to(t).not_ports(), to_path + ".notPorts", problems);
      Assign(rule.to(t).hosts(), operation.hosts);
      Assign(rule.to(t).not_hosts(), operation.not_hosts);
      Assign(rule.to(t).methods(), operation.methods);
      Assign(rule.to(t).not_methods(), operation.not_methods);
      Assign(rule.to(t).paths(), operation.paths);
      Assign(rule.to(t).not_paths(), operation.not_paths);
      out_rule.to.push_back(std::move(operation));
    }
    for (const v1::PolicyCondition& when : rule.when()) {
      wl::PolicyCondition condition;
      condition.key = when.key();
      Assign(when.values(), condition.values);
      Assign(when.not_values(), condition.not_values);
      out_rule.when.push_back(std::move(condition));
    }
    out.rules.push_back(std::move(out_rule));
  }
  return out;
}

wl::PeerAuthentication PeerAuthenticationFromProto(const v1::PeerAuthentication& peer,
                                                   const std::string& path, Problems& problems) {
  wl::PeerAuthentication out;
  out.metadata = MetaFromProto(peer.metadata());
  const v1::PeerAuthenticationSpec& spec = peer.spec();
  out.selector.insert(spec.match_labels().begin(), spec.match_labels().end());
  out.mode = MtlsModeFromProto(spec.mode(), path + ".spec.mtls.mode", problems);
  for (const auto& [port, mode] : spec.port_level_mtls()) {
    const std::string field = path + ".spec.portLevelMtls[" + std::to_string(port) + "]";
    if (port == 0 || port > 65535) {
      problems.Add(field, std::to_string(port) + " is not a port number (1-65535)");
      continue;
    }
    out.port_level[static_cast<uint16_t>(port)] =
        MtlsModeFromProto(mode, field + ".mode", problems);
  }
  return out;
}

wl::WorkloadEntry WorkloadEntryFromProto(const v1::WorkloadEntry& entry, const std::string& path,
                                         Problems& problems) {
  wl::WorkloadEntry out;
  out.metadata = MetaFromProto(entry.metadata());
  const v1::WorkloadEntrySpec& spec = entry.spec();
  out.address = spec.address();
  out.labels.insert(spec.labels().begin(), spec.labels().end());
  if (!spec.service_account().empty()) out.service_account = spec.service_account();
  for (const auto& [name, port] : spec.ports()) {
    if (port == 0 || port > 65535) {
      problems.Add(path + ".spec.ports[" + name + "]",
                   std::to_string(port) + " is not a port number (1-65535)");
      continue;
    }
    out.ports[name] = static_cast<uint16_t>(port);
  }
  if (spec.hbone_port() > 65535) {
    problems.Add(path + ".spec.hbonePort",
                 std::to_string(spec.hbone_port()) + " is not a port number (1-65535)");
  } else if (spec.hbone_port() != 0) {
    out.hbone_port = static_cast<uint16_t>(spec.hbone_port());
  }
  return out;
}

// Structural problems first; only a structurally sound object is worth
// validating (a port clamped to 0 would draw a second, misleading message).
// Validation paths are relative to the object ("spec.replicas"), so they get
// the same root as the structural ones ("workload.spec.replicas").
template <typename T>
Result<T> Finish(T value, const std::string& root, Problems& problems, bool validate = true) {
  if (!problems.empty()) return problems.ToError();
  if (!validate) return value;
  for (const wl::Diagnostic& d : wl::Validate(value)) {
    problems.Add(d.field.empty() ? root : root + "." + d.field, d.message);
  }
  if (!problems.empty()) return problems.ToError();
  return value;
}

}  // namespace

v1::Workload ToProto(const wl::Workload& workload) {
  v1::Workload out;
  FillMeta(workload.metadata, out.mutable_metadata());
  v1::WorkloadSpec* spec = out.mutable_spec();
  spec->mutable_replicas()->set_value(workload.spec.replicas);
  spec->set_service_account(workload.spec.service_account);
  for (const wl::PortSpec& port : workload.spec.ports) {
    v1::Port* p = spec->add_ports();
    p->set_name(port.name);
    p->set_port(port.port);
    p->set_protocol(ToProtoProtocol(port.protocol));
  }
  std::visit(AppFiller{spec->mutable_app()}, workload.spec.app);
  return out;
}

v1::Service ToProto(const wl::Service& service) {
  v1::Service out;
  FillMeta(service.metadata, out.mutable_metadata());
  v1::ServiceSpec* spec = out.mutable_spec();
  spec->mutable_selector()->insert(service.selector.begin(), service.selector.end());
  for (const wl::ServicePort& port : service.ports) {
    v1::ServicePort* p = spec->add_ports();
    p->set_name(port.name);
    p->set_port(port.port);
    FillPortRef(port.target_port, p->mutable_target_port());
    p->set_protocol(ToProtoProtocol(port.protocol));
  }
  return out;
}

v1::AuthorizationPolicy ToProto(const wl::AuthorizationPolicy& policy) {
  v1::AuthorizationPolicy out;
  FillMeta(policy.metadata, out.mutable_metadata());
  v1::AuthorizationPolicySpec* spec = out.mutable_spec();
  spec->mutable_match_labels()->insert(policy.selector.begin(), policy.selector.end());
  spec->set_action(policy.action == wl::PolicyAction::kDeny ? v1::DENY : v1::ALLOW);
  for (const wl::PolicyRule& rule : policy.rules) {
    v1::PolicyRule* r = spec->add_rules();
    for (const wl::PolicySource& source : rule.from) {
      v1::PolicySource* s = r->add_from();
      for (const std::string& v : source.principals) s->add_principals(v);
      for (const std::string& v : source.not_principals) s->add_not_principals(v);
      for (const std::string& v : source.namespaces) s->add_namespaces(v);
      for (const std::string& v : source.not_namespaces) s->add_not_namespaces(v);
      Append(source.service_accounts, s->mutable_service_accounts());
      Append(source.not_service_accounts, s->mutable_not_service_accounts());
      Append(source.ip_blocks, s->mutable_ip_blocks());
      Append(source.not_ip_blocks, s->mutable_not_ip_blocks());
      Append(source.remote_ip_blocks, s->mutable_remote_ip_blocks());
      Append(source.not_remote_ip_blocks, s->mutable_not_remote_ip_blocks());
      Append(source.request_principals, s->mutable_request_principals());
      Append(source.not_request_principals, s->mutable_not_request_principals());
    }
    for (const wl::PolicyOperation& operation : rule.to) {
      v1::PolicyOperation* o = r->add_to();
      for (uint16_t port : operation.ports) o->add_ports(port);
      for (uint16_t port : operation.not_ports) o->add_not_ports(port);
      Append(operation.hosts, o->mutable_hosts());
      Append(operation.not_hosts, o->mutable_not_hosts());
      Append(operation.methods, o->mutable_methods());
      Append(operation.not_methods, o->mutable_not_methods());
      Append(operation.paths, o->mutable_paths());
      Append(operation.not_paths, o->mutable_not_paths());
    }
    for (const wl::PolicyCondition& condition : rule.when) {
      v1::PolicyCondition* c = r->add_when();
      c->set_key(condition.key);
      Append(condition.values, c->mutable_values());
      Append(condition.not_values, c->mutable_not_values());
    }
  }
  return out;
}

v1::Namespace ToProto(const wl::Namespace& ns) {
  v1::Namespace out;
  FillMeta(ns.metadata, out.mutable_metadata());
  out.mutable_metadata()->clear_namespace_();
  return out;
}

v1::ServiceAccount ToProto(const wl::ServiceAccount& account) {
  v1::ServiceAccount out;
  FillMeta(account.metadata, out.mutable_metadata());
  return out;
}

v1::PeerAuthentication ToProto(const wl::PeerAuthentication& peer) {
  v1::PeerAuthentication out;
  FillMeta(peer.metadata, out.mutable_metadata());
  v1::PeerAuthenticationSpec* spec = out.mutable_spec();
  spec->mutable_match_labels()->insert(peer.selector.begin(), peer.selector.end());
  spec->set_mode(ToProtoMtlsMode(peer.mode));
  for (const auto& [port, mode] : peer.port_level) {
    (*spec->mutable_port_level_mtls())[port] = ToProtoMtlsMode(mode);
  }
  return out;
}

v1::WorkloadEntry ToProto(const wl::WorkloadEntry& entry) {
  v1::WorkloadEntry out;
  FillMeta(entry.metadata, out.mutable_metadata());
  v1::WorkloadEntrySpec* spec = out.mutable_spec();
  spec->set_address(entry.address);
  spec->mutable_labels()->insert(entry.labels.begin(), entry.labels.end());
  spec->set_service_account(entry.service_account);
  for (const auto& [name, port] : entry.ports) (*spec->mutable_ports())[name] = port;
  spec->set_hbone_port(entry.hbone_port);
  return out;
}

v1::ObjectMeta* MutableMetadata(v1::Object* object) {
  switch (object->kind_case()) {
    case v1::Object::kWorkload:
      return object->mutable_workload()->mutable_metadata();
    case v1::Object::kService:
      return object->mutable_service()->mutable_metadata();
    case v1::Object::kAuthorizationPolicy:
      return object->mutable_authorization_policy()->mutable_metadata();
    case v1::Object::kNamespace:
      return object->mutable_namespace_()->mutable_metadata();
    case v1::Object::kServiceAccount:
      return object->mutable_service_account()->mutable_metadata();
    case v1::Object::kPeerAuthentication:
      return object->mutable_peer_authentication()->mutable_metadata();
    case v1::Object::kWorkloadEntry:
      return object->mutable_workload_entry()->mutable_metadata();
    case v1::Object::KIND_NOT_SET:
      break;
  }
  return nullptr;
}

v1::Object ToProto(const wl::Object& object) {
  v1::Object out;
  std::visit(
      [&out](const auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, wl::Workload>) {
          *out.mutable_workload() = ToProto(o);
        } else if constexpr (std::is_same_v<T, wl::Service>) {
          *out.mutable_service() = ToProto(o);
        } else if constexpr (std::is_same_v<T, wl::AuthorizationPolicy>) {
          *out.mutable_authorization_policy() = ToProto(o);
        } else if constexpr (std::is_same_v<T, wl::Namespace>) {
          *out.mutable_namespace_() = ToProto(o);
        } else if constexpr (std::is_same_v<T, wl::ServiceAccount>) {
          *out.mutable_service_account() = ToProto(o);
        } else if constexpr (std::is_same_v<T, wl::PeerAuthentication>) {
          *out.mutable_peer_authentication() = ToProto(o);
        } else {
          static_assert(std::is_same_v<T, wl::WorkloadEntry>);
          *out.mutable_workload_entry() = ToProto(o);
        }
      },
      object);
  return out;
}

Result<wl::Workload> FromProto(const v1::Workload& workload) {
  Problems problems;
  wl::Workload out = WorkloadFromProto(workload, "workload", problems);
  return Finish(std::move(out), "workload", problems);
}

Result<wl::Service> FromProto(const v1::Service& service) {
  Problems problems;
  wl::Service out = ServiceFromProto(service, "service", problems);
  return Finish(std::move(out), "service", problems);
}

Result<wl::AuthorizationPolicy> FromProto(const v1::AuthorizationPolicy& policy) {
  Problems problems;
  wl::AuthorizationPolicy out = PolicyFromProto(policy, "authorizationPolicy", problems);
  return Finish(std::move(out), "authorizationPolicy", problems);
}

namespace {

Result<wl::Object> ObjectFromProto(const v1::Object& object, bool validate) {
  Problems problems;
  switch (object.kind_case()) {
    case v1::Object::kWorkload:
      return Finish(wl::Object(WorkloadFromProto(object.workload(), "workload", problems)),
                    "workload", problems, validate);
    case v1::Object::kService:
      return Finish(wl::Object(ServiceFromProto(object.service(), "service", problems)), "service",
                    problems, validate);
    case v1::Object::kAuthorizationPolicy:
      return Finish(wl::Object(PolicyFromProto(object.authorization_policy(), "authorizationPolicy",
                                               problems)),
                    "authorizationPolicy", problems, validate);
    case v1::Object::kNamespace: {
      wl::Namespace ns{MetaFromProto(object.namespace_().metadata())};
      ns.metadata.ns.clear();
      return Finish(wl::Object(std::move(ns)), "namespace", problems, validate);
    }
    case v1::Object::kServiceAccount:
      return Finish(
          wl::Object(wl::ServiceAccount{MetaFromProto(object.service_account().metadata())}),
          "serviceAccount", problems, validate);
    case v1::Object::kPeerAuthentication:
      return Finish(wl::Object(PeerAuthenticationFromProto(object.peer_authentication(),
                                                           "peerAuthentication", problems)),
                    "peerAuthentication", problems, validate);
    case v1::Object::kWorkloadEntry:
      return Finish(
          wl::Object(WorkloadEntryFromProto(object.workload_entry(), "workloadEntry", problems)),
          "workloadEntry", problems, validate);
    case v1::Object::KIND_NOT_SET:
      break;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "object: one of workload, service, authorizationPolicy, namespace, "
                   "serviceAccount, peerAuthentication or workloadEntry is required");
}

}  // namespace

Result<wl::Object> FromProto(const v1::Object& object) { return ObjectFromProto(object, true); }

Result<wl::Object> FromProtoUnvalidated(const v1::Object& object) {
  return ObjectFromProto(object, false);
}

v1::Kind ToProtoKind(wl::Kind kind) {
  switch (kind) {
    case wl::Kind::kWorkload:
      return v1::WORKLOAD;
    case wl::Kind::kService:
      return v1::SERVICE;
    case wl::Kind::kAuthorizationPolicy:
      return v1::AUTHORIZATION_POLICY;
    case wl::Kind::kNamespace:
      return v1::NAMESPACE;
    case wl::Kind::kServiceAccount:
      return v1::SERVICE_ACCOUNT;
    case wl::Kind::kPeerAuthentication:
      return v1::PEER_AUTHENTICATION;
    case wl::Kind::kWorkloadEntry:
      return v1::WORKLOAD_ENTRY;
  }
  return v1::KIND_UNSPECIFIED;
}

Result<wl::Kind> FromProtoKind(v1::Kind kind) {
  switch (kind) {
    case v1::WORKLOAD:
      return wl::Kind::kWorkload;
    case v1::SERVICE:
      return wl::Kind::kService;
    case v1::AUTHORIZATION_POLICY:
      return wl::Kind::kAuthorizationPolicy;
    case v1::NAMESPACE:
      return wl::Kind::kNamespace;
    case v1::SERVICE_ACCOUNT:
      return wl::Kind::kServiceAccount;
    case v1::PEER_AUTHENTICATION:
      return wl::Kind::kPeerAuthentication;
    case v1::WORKLOAD_ENTRY:
      return wl::Kind::kWorkloadEntry;
    default:
      break;
  }
  return MakeError(
      ErrorCode::kInvalidArgument,
      "kind: " + std::to_string(kind) +
          " is not a kind (expected WORKLOAD, SERVICE, AUTHORIZATION_POLICY, NAMESPACE, "
          "SERVICE_ACCOUNT, PEER_AUTHENTICATION or WORKLOAD_ENTRY)");
}

}  // namespace podless::api
