#include "workloads/validation.h"

#include <charconv>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include "workloads/ipam.h"
#include "workloads/names.h"
#include "workloads/policy_values.h"
#include "workloads/quantity.h"

namespace podless::workloads {
namespace {

// Collects diagnostics for one object; every check appends through Add so
// that all problems are reported, not only the first.
class Checker {
 public:
  void Add(std::string field, std::string message) {
    Diagnostic d;
    d.field = std::move(field);
    d.message = std::move(message);
    out_.push_back(std::move(d));
  }
  std::vector<Diagnostic> Take() { return std::move(out_); }

 private:
  std::vector<Diagnostic> out_;
};

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// Kubernetes spells map entries in field paths as `path[key]`.
std::string Key(const std::string& path, const std::string& key) { return path + "[" + key + "]"; }

std::string Missing(std::string_view field) {
  return "missing required field \"" + std::string(field) + "\"";
}

std::string RangeMessage(long long low, long long high, long long got) {
  return "must be between " + std::to_string(low) + " and " + std::to_string(high) + ", got " +
         std::to_string(got);
}

std::string CountLimitMessage(size_t count, const char* what, size_t limit) {
  return "has " + std::to_string(count) + " " + what + ", more than the limit of " +
         std::to_string(limit);
}

void CheckLabels(Checker& c, const Labels& labels, const std::string& path) {
  for (const auto& [key, value] : labels) {
    if (std::string why = LabelKeyError(key); !why.empty()) {
      c.Add(Key(path, key), "invalid label key " + QuoteForMessage(key) + ": " + why);
    }
    if (std::string why = LabelValueError(value); !why.empty()) {
      c.Add(Key(path, key), "invalid label value " + QuoteForMessage(value) + ": " + why);
    }
  }
}

void CheckMeta(Checker& c, const ObjectMeta& meta, Kind kind) {
  if (meta.name.empty()) {
    c.Add("metadata.name", Missing("name"));
  } else if (kind != Kind::kWorkload && kind != Kind::kService && kind != Kind::kNamespace) {
    // Istio and Kubernetes allow dotted names for policies, service
    // accounts and workload entries.
    if (std::string why = Dns1123SubdomainError(meta.name); !why.empty()) {
      c.Add("metadata.name", "invalid name " + QuoteForMessage(meta.name) + ": " + why);
    }
  } else if (kind == Kind::kWorkload && meta.name.size() > MaxWorkloadNameLength()) {
    // Before the DNS-1123 check, whose limit (63) is not a Workload's.
    c.Add("metadata.name", "invalid name " + QuoteForMessage(meta.name) +
                               ": must be no more than " + std::to_string(MaxWorkloadNameLength()) +
                               " characters so that replica names (<name>-<ordinal>) stay within " +
                               std::to_string(kDns1123LabelMaxLength));
  } else if (std::string why = Dns1123LabelError(meta.name); !why.empty()) {
    // Workload and Service names become DNS names, so they are single labels.
    c.Add("metadata.name", "invalid name " + QuoteForMessage(meta.name) + ": " + why);
  }
  if (kind == Kind::kNamespace) {
    if (!meta.ns.empty()) c.Add("metadata.namespace", "a Namespace is not in a namespace");
  } else if (meta.ns.empty()) {
    c.Add("metadata.namespace", "must not be empty (leave it out for \"default\")");
  } else if (std::string why = Dns1123LabelError(meta.ns); !why.empty()) {
    c.Add("metadata.namespace", "invalid namespace " + QuoteForMessage(meta.ns) + ": " + why);
  }
  CheckLabels(c, meta.labels, "metadata.labels");
  // Kubernetes: annotation keys are qualified names like label keys; the
  // values are free, together at most 256 KiB.
  size_t annotation_bytes = 0;
  for (const auto& [key, value] : *meta.annotations) {
    annotation_bytes += key.size() + value.size();
    if (std::string why = LabelKeyError(key); !why.empty()) {
      c.Add(Key("metadata.annotations", key),
            "invalid annotation key " + QuoteForMessage(key) + ": " + why);
    }
  }
  if (annotation_bytes > kMaxAnnotationBytes) {
    c.Add("metadata.annotations",
          "annotations are " + SizeLimitMessage(annotation_bytes, kMaxAnnotationBytes));
  }
}

bool IsValidProtocol(Protocol p) { return p == Protocol::kTCP || p == Protocol::kHTTP; }

void CheckPortNumber(Checker& c, uint16_t port, const std::string& field) {
  if (port == 0) c.Add(field, RangeMessage(1, 65535, 0));
}

// What every port list checks: each number valid and unique, each name valid
// (by `name_error`, which differs between workloads and services) and unique.
struct PortList {
  std::map<uint16_t, size_t> numbers;
  std::map<std::string, size_t> names;

  void Check(Checker& c, const std::string& field, size_t index, uint16_t number,
             const std::string& name, std::string (*name_error)(std::string_view)) {
    CheckPortNumber(c, number, field + ".port");
    if (number != 0) {
      auto [it, inserted] = numbers.emplace(number, index);
      if (!inserted) {
        c.Add(field + ".port", "duplicate port " + std::to_string(number) + " (also ports[" +
                                   std::to_string(it->second) + "])");
      }
    }
    if (name.empty()) return;
    if (std::string why = name_error(name); !why.empty()) {
      c.Add(field + ".name", "invalid port name " + QuoteForMessage(name) + ": " + why);
    }
    auto [it, inserted] = names.emplace(name, index);
    if (!inserted) {
      c.Add(field + ".name", "duplicate port name " + QuoteForMessage(name) + " (also ports[" +
                                 std::to_string(it->second) + "])");
    }
  }
};

// host:port, host an IPv4 address, a DNS name or a bracketed IPv6 address.
std::string HostPortError(std::string_view address) {
  constexpr char kShape[] = "must be host:port (e.g. 127.0.0.1:9000 or [::1]:9000)";
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find("]:");
    if (close == std::string_view::npos) return kShape;
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
    if (host.empty()) return kShape;
    for (char ch : host) {
      bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
                ch == ':' || ch == '.';
      if (!ok) return "invalid IPv6 address in " + std::string(kShape);
    }
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return kShape;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.empty()) return kShape;
    if (host.size() > kDns1123SubdomainMaxLength) {
      return "the host must be no more than " + std::to_string(kDns1123SubdomainMaxLength) +
             " characters";
    }
    for (char ch : host) {
      bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                ch == '.' || ch == '-';
      if (!ok) return kShape;
    }
  }
  if (port.empty() || port.size() > 5) return kShape;
  unsigned value = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9') return kShape;
    value = value * 10 + static_cast<unsigned>(ch - '0');
  }
  if (value < 1 || value > 65535) return "port " + RangeMessage(1, 65535, value);
  return {};
}

bool IsHeaderNameChar(char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return out;
}

void CheckStatic(Checker& c, const StaticApp& app, const std::string& path) {
  if (app.status < 100 || app.status > 599) {
    c.Add(path + ".status", RangeMessage(100, 599, app.status));
  }
  if (app.body.size() > kMaxStaticBodyBytes) {
    c.Add(path + ".body", "is " + SizeLimitMessage(app.body.size(), kMaxStaticBodyBytes));
  }
  if (app.headers.size() > kMaxStaticHeaders) {
    c.Add(path + ".headers", CountLimitMessage(app.headers.size(), "headers", kMaxStaticHeaders));
  }
  for (const auto& [name, value] : app.headers) {
    // Names longer than the message shows are cut in the field path too.
    std::string field =
        Key(path + ".headers", name.size() <= 80 ? name : name.substr(0, 80) + "...");
    if (name.size() + value.size() > kMaxStaticHeaderBytes) {
      c.Add(field, "header name and value are " +
                       SizeLimitMessage(name.size() + value.size(), kMaxStaticHeaderBytes));
    }
    bool token = !name.empty();
    for (char ch : name) token = token && IsHeaderNameChar(ch);
    if (!token) {
      c.Add(field, "invalid header name " + QuoteForMessage(name) + ": must be an HTTP token");
    }
    std::string lower = Lower(name);
    // The app frames the body itself; a user value would contradict it.
    if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection") {
      c.Add(field, "header " + QuoteForMessage(name) + " is set by the static app itself");
    }
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      c.Add(field, "invalid header value: must not contain CR, LF or NUL");
    }
  }
}

void CheckProbe(Checker& c, const Probe& probe, const WorkloadSpec& spec, const std::string& path) {
  std::string handler;
  switch (probe.kind) {
    case Probe::Kind::kTcpSocket:
      handler = path + ".tcpSocket";
      break;
    case Probe::Kind::kHttpGet:
      handler = path + ".httpGet";
      break;
    default:
      c.Add(path, "must set exactly one of tcpSocket, httpGet");
      return;
  }
  const PortRef& port = probe.port;
  if (!port.name.empty() && port.number != 0) {
    c.Add(handler + ".port", "set either a port number or a port name, not both");
  } else if (!port.name.empty()) {
    bool declared = false;
    for (const PortSpec& p : spec.ports) declared = declared || p.name == port.name;
    if (!declared) {
      c.Add(handler + ".port",
            "port name " + QuoteForMessage(port.name) + " is not declared in spec.ports");
    }
  } else if (port.number == 0) {
    c.Add(handler + ".port", Missing("port"));
  }
  if (probe.kind == Probe::Kind::kHttpGet && (probe.path.empty() || probe.path.front() != '/')) {
    c.Add(handler + ".path", "must start with '/', got " + QuoteForMessage(probe.path));
  } else if (probe.kind == Probe::Kind::kHttpGet && probe.path.size() > kMaxProbePathBytes) {
    c.Add(handler + ".path", "is " + SizeLimitMessage(probe.path.size(), kMaxProbePathBytes));
  }
  const std::pair<const char*, uint32_t> at_least_one[] = {
      {"periodSeconds", probe.period_seconds},
      {"timeoutSeconds", probe.timeout_seconds},
      {"failureThreshold", probe.failure_threshold},
      {"successThreshold", probe.success_threshold},
  };
  for (const auto& [name, value] : at_least_one) {
    if (value < 1) c.Add(path + "." + name, "must be at least 1, got 0");
  }
}

void CheckSandbox(Checker& c, const ExecSandbox& sandbox, const std::string& path) {
  const SecurityContext& context = sandbox.security_context;
  const std::string context_path = path + ".securityContext";
  const std::pair<const char*, const std::optional<uint32_t>&> ids[] = {
      {"runAsUser", context.run_as_user}, {"runAsGroup", context.run_as_group}};
  for (const auto& [name, id] : ids) {
    if (id && *id > kMaxRunAsId) {
      c.Add(context_path + "." + name,
            RangeMessage(0, kMaxRunAsId, *id) + " (4294967295 means \"unchanged\" to setuid)");
    }
  }
  // Kubernetes refuses this pair too (the kubelet, at container start).
  if (context.run_as_non_root.value_or(false) && context.run_as_user == 0u) {
    c.Add(context_path + ".runAsUser",
          "runAsUser 0 (root) contradicts runAsNonRoot: true; set a non-zero runAsUser or "
          "drop runAsNonRoot");
  }
  // A limit of 0 is "no limit" and passes; the parser and the API refuse a
  // written 0 where the model cannot see it.
  const ResourceLimits& limits = sandbox.limits;
  if (limits.memory_bytes != 0 && limits.memory_bytes < kMinMemoryLimitBytes) {
    c.Add(path + ".resources.limits.memory",
          "must be at least 1Mi, got " + FormatMemoryQuantity(limits.memory_bytes));
  }
}

// What execve(2) can take: argv and environment strings within Linux's
// limits, so that a workload that passes apply can also start.
void CheckExecSizes(Checker& c, const ExecContainer& app, const std::string& path) {
  if (app.command.size() > kMaxExecArgs) {
    c.Add(path + ".command", CountLimitMessage(app.command.size(), "arguments", kMaxExecArgs));
  }
  if (app.env.size() > kMaxExecEnvVars) {
    c.Add(path + ".env", CountLimitMessage(app.env.size(), "variables", kMaxExecEnvVars));
  }
  bool each_fits = true;
  size_t total = 0;  // as execve counts: every string with its NUL
  for (size_t i = 0; i < app.command.size(); ++i) {
    const size_t size = app.command[i].size();
    total += size + 1;
    if (size > kMaxExecStringBytes) {
      each_fits = false;
      c.Add(Index(path + ".command", i),
            "is " + SizeLimitMessage(size, kMaxExecStringBytes) + " (Linux's MAX_ARG_STRLEN)");
    }
  }
  for (size_t i = 0; i < app.env.size(); ++i) {
    const size_t size = app.env[i].name.size() + 1 + app.env[i].value.size();  // NAME=value
    total += size + 1;
    if (size > kMaxExecStringBytes) {
      each_fits = false;
      c.Add(Index(path + ".env", i) + ".value", "NAME=value is " +
                                                    SizeLimitMessage(size, kMaxExecStringBytes) +
                                                    " (Linux's MAX_ARG_STRLEN)");
    }
  }
  if (each_fits && total > kMaxExecTotalBytes) {
    c.Add(path, "command and env together are " + SizeLimitMessage(total, kMaxExecTotalBytes));
  }
  if (app.working_dir.size() > kMaxPathBytes) {
    c.Add(path + ".workingDir",
          "is " + SizeLimitMessage(app.working_dir.size(), kMaxPathBytes) + " (PATH_MAX)");
  }
}

// One process of a replica: the app's own command or a further container.
void CheckProcess(Checker& c, const ExecContainer& app, const WorkloadSpec& spec,
                  const std::string& path) {
  if (app.command.empty()) {
    c.Add(path + ".command", "must not be empty: give the program and its arguments");
  } else if (app.command.front().empty()) {
    c.Add(Index(path + ".command", 0), "the program name must not be empty");
  }
  CheckExecSizes(c, app, path);
  for (size_t i = 0; i < app.command.size(); ++i) {
    if (app.command[i].find('\0') != std::string::npos) {
      c.Add(Index(path + ".command", i), "must not contain a NUL byte");
    }
    // A command line is world-readable (/proc/<pid>/cmdline): the proxy
    // credentials must stay in the environment.
    for (const char* secret :
         {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}) {
      if (app.command[i].find(std::string("$(") + secret + ")") != std::string::npos) {
        c.Add(Index(path + ".command", i),
              std::string("$(") + secret +
                  ") would put the replica's proxy password in its command line, which every "
                  "local user can read (/proc/<pid>/cmdline); let the program read " +
                  secret + " from its environment");
      }
    }
  }
  for (size_t i = 0; i < app.env.size(); ++i) {
    const EnvVar& var = app.env[i];
    std::string field = Index(path + ".env", i);
    if (var.name.empty()) {
      c.Add(field + ".name", Missing("name"));
      continue;
    }
    bool printable = true;
    for (char ch : var.name) printable = printable && ch > ' ' && ch < 0x7f && ch != '=';
    if (!printable) {
      c.Add(field + ".name", "invalid environment variable name " + QuoteForMessage(var.name) +
                                 ": must consist of printable characters other than '='");
    }
    if (var.value.find('\0') != std::string::npos) {
      c.Add(field + ".value", "must not contain a NUL byte");
    }
  }
  if (app.working_dir.find('\0') != std::string::npos) {
    c.Add(path + ".workingDir", "must not contain a NUL byte");
  }
  if (app.readiness_probe) CheckProbe(c, *app.readiness_probe, spec, path + ".readinessProbe");
}

void CheckExec(Checker& c, const ExecApp& app, const WorkloadSpec& spec, const std::string& path) {
  const std::vector<ExecContainer> all = app.AllContainers();
  // Container names: DNS labels, unique within the replica (logs -c and the
  // statuses name them).
  std::map<std::string, std::string> seen;  // name -> field
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string field =
        i == 0 ? path + ".name" : Index(path + ".containers", i - 1) + ".name";
    const std::string& name = all[i].name;
    if (i == 0 && app.containers->name.empty()) {
      seen[name] = field;
      continue;
    }
    if (name.empty()) {
      c.Add(field, Missing("name"));
      continue;
    }
    if (std::string why = Dns1123LabelError(name); !why.empty()) {
      c.Add(field, "invalid container name " + QuoteForMessage(name) + ": " + why);
      continue;
    }
    auto [it, inserted] = seen.emplace(name, field);
    if (!inserted) {
      c.Add(field, "duplicate container name " + QuoteForMessage(name) +
                       ": the containers of a replica need distinct names");
    }
  }
  CheckProcess(c, all[0], spec, path);
  for (size_t i = 1; i < all.size(); ++i)
    CheckProcess(c, all[i], spec, Index(path + ".containers", i - 1));
  switch (app.restart_policy) {
    case RestartPolicy::kAlways:
    case RestartPolicy::kOnFailure:
    case RestartPolicy::kNever:
      break;
    default:
      c.Add(path + ".restartPolicy", "must be one of Always, OnFailure, Never");
  }
  CheckSandbox(c, *app.sandbox, path);
}

void CheckWorkload(Checker& c, const Workload& w) {
  CheckMeta(c, w.metadata, Kind::kWorkload);
  const WorkloadSpec& spec = w.spec;
  if (spec.replicas > kMaxReplicas) {
    c.Add("spec.replicas", RangeMessage(0, kMaxReplicas, spec.replicas));
  }
  if (spec.service_account.empty()) {
    c.Add("spec.serviceAccount", "must not be empty (leave it out for \"default\")");
  } else if (std::string why = Dns1123SubdomainError(spec.service_account); !why.empty()) {
    c.Add("spec.serviceAccount",
          "invalid service account " + QuoteForMessage(spec.service_account) + ": " + why);
  }
  PortList ports;
  for (size_t i = 0; i < spec.ports.size(); ++i) {
    const PortSpec& port = spec.ports[i];
    std::string field = Index("spec.ports", i);
    ports.Check(c, field, i, port.port, port.name, PortNameError);
    if (!IsValidProtocol(port.protocol)) c.Add(field + ".protocol", "must be TCP or HTTP");
  }
  if (const auto* static_app = std::get_if<StaticApp>(&spec.app)) {
    CheckStatic(c, *static_app, "spec.app.static");
  } else if (const auto* forward = std::get_if<ForwardApp>(&spec.app)) {
    if (forward->address.empty()) {
      c.Add("spec.app.forward.address", Missing("address"));
    } else if (std::string why = HostPortError(forward->address); !why.empty()) {
      c.Add("spec.app.forward.address",
            "invalid address " + QuoteForMessage(forward->address) + ": " + why);
    }
  } else if (const auto* exec = std::get_if<ExecApp>(&spec.app)) {
    CheckExec(c, *exec, spec, "spec.app.exec");
  }
}

void CheckService(Checker& c, const Service& s) {
  CheckMeta(c, s.metadata, Kind::kService);
  if (s.selector.empty()) {
    c.Add("spec.selector", "must not be empty: a Service selects its workloads by label");
  }
  CheckLabels(c, s.selector, "spec.selector");
  if (s.ports.empty()) c.Add("spec.ports", "must not be empty: a Service needs a port");
  PortList ports;
  for (size_t i = 0; i < s.ports.size(); ++i) {
    const ServicePort& port = s.ports[i];
    std::string field = Index("spec.ports", i);
    ports.Check(c, field, i, port.port, port.name, Dns1123LabelError);
    // An unset targetPort (number 0, no name) means "same as port".
    const PortRef& target = port.target_port;
    if (!target.name.empty() && target.number != 0) {
      c.Add(field + ".targetPort", "set either a port number or a port name, not both");
    } else if (!target.name.empty()) {
      if (std::string why = PortNameError(target.name); !why.empty()) {
        c.Add(field + ".targetPort",
              "invalid port name " + QuoteForMessage(target.name) + ": " + why);
      }
    }
    if (!IsValidProtocol(port.protocol)) c.Add(field + ".protocol", "must be TCP or HTTP");
  }
}

// Istio wildcards: "*" alone, or one '*' as a prefix or a suffix.
bool HasWildcard(std::string_view value) { return value.find('*') != std::string_view::npos; }

std::string WildcardError(std::string_view value) {
  size_t star = value.find('*');
  if (value.find('*', star + 1) != std::string_view::npos ||
      (star != 0 && star != value.size() - 1)) {
    return "'*' may appear only once, as a prefix, a suffix or alone";
  }
  return {};
}

std::string PrincipalError(std::string_view principal) {
  if (principal.empty()) return "must not be empty";
  if (principal.size() > kMaxPrincipalBytes) {
    return "is " + SizeLimitMessage(principal.size(), kMaxPrincipalBytes) +
           " (the longest SPIFFE ID)";
  }
  for (char ch : principal) {
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
      return "must not contain spaces or control characters";
    }
  }
  if (HasWildcard(principal)) return WildcardError(principal);
  std::string_view rest = principal;
  if (rest.substr(0, 9) == "spiffe://") rest.remove_prefix(9);
  // <trust-domain>/ns/<namespace>/sa/<service-account>
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t slash = rest.find('/', start);
    parts.push_back(rest.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  bool ok = parts.size() == 5 && !parts[0].empty() && parts[1] == "ns" && !parts[2].empty() &&
            parts[3] == "sa" && !parts[4].empty();
  if (!ok) {
    return "must be a SPIFFE ID such as spiffe://cluster.local/ns/<namespace>/sa/<account> "
           "(the spiffe:// prefix is optional), or use '*' wildcards";
  }
  return {};
}

std::string PolicyNamespaceError(std::string_view ns) {
  if (ns.empty()) return "must not be empty";
  if (HasWildcard(ns)) return WildcardError(ns);
  return Dns1123LabelError(ns);
}

void CheckStrings(Checker& c, const std::vector<std::string>& values, const std::string& path,
                  std::string (*error)(std::string_view), const char* what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::string why = error(values[i]); !why.empty()) {
      c.Add(Index(path, i),
            std::string("invalid ") + what + " " + QuoteForMessage(values[i]) + ": " + why);
    }
  }
}

// "ns/sa", or "sa" meaning the policy's namespace; exact names (ztunnel
// compares them as they are: no wildcards).
std::string ServiceAccountError(std::string_view value) {
  if (value.empty()) return "must not be empty";
  if (HasWildcard(value)) return "wildcards are not supported; write \"ns/sa\" or \"sa\"";
  size_t slash = value.find('/');
  if (slash != std::string_view::npos) {
    if (std::string why = Dns1123LabelError(value.substr(0, slash)); !why.empty()) {
      return "namespace: " + why;
    }
    value.remove_prefix(slash + 1);
  }
  if (std::string why = Dns1123SubdomainError(value); !why.empty()) {
    return "service account: " + why + " (write \"ns/sa\" or \"sa\")";
  }
  return {};
}

std::string IpBlockError(std::string_view value) {
  std::string why;
  return ParseIpBlock(value, &why) ? std::string() : why;
}

// A value that may take Istio's wildcards and holds no spaces or controls.
std::string PatternError(std::string_view value) {
  if (value.empty()) return "must not be empty";
  for (char ch : value) {
    if (static_cast<unsigned char>(ch) < ' ' || ch == 0x7f) {
      return "must not contain control characters";
    }
  }
  if (HasWildcard(value)) return WildcardError(value);
  return {};
}

std::string HostError(std::string_view value) {
  if (value.find(' ') != std::string_view::npos) return "must not contain spaces";
  return PatternError(value);
}

// An HTTP method is a token (RFC 9110) and case-sensitive: "get" never
// matches what a client sends for GET, so it is refused with a hint.
std::string MethodError(std::string_view value) {
  if (std::string why = PatternError(value); !why.empty()) return why;
  for (char ch : value) {
    bool tchar = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
    if (!tchar) return "must be an HTTP method token such as GET or POST";
  }
  std::string upper(value);
  for (char& ch : upper) {
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  }
  for (const char* standard :
       {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    if (upper == standard && value != standard) {
      return std::string("methods are case-sensitive: write ") + standard;
    }
  }
  return {};
}

std::string PathError(std::string_view value) {
  if (value.find('{') != std::string_view::npos) {
    return "path templates ({*}, {**}) are not supported; use a '*' prefix or suffix";
  }
  if (std::string why = PatternError(value); !why.empty()) return why;
  if (value.front() != '/' && value.front() != '*') {
    return "must start with '/' (or be a '*' suffix pattern such as *.html)";
  }
  if (value.find_first_of(" ?#") != std::string_view::npos) {
    return "must be a path without spaces, query or fragment";
  }
  return {};
}

std::string PortValueError(std::string_view value) {
  int port = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size() || port < 1 ||
      port > 65535) {
    return "must be a port number between 1 and 65535";
  }
  return {};
}

void CheckSource(Checker& c, const PolicySource& s, const std::string& path) {
  if (s == PolicySource{}) {
    c.Add(path,
          "must set at least one of principals, namespaces, serviceAccounts, ipBlocks, "
          "remoteIpBlocks, requestPrincipals (or their not- forms)");
  }
  if ((!s.service_accounts.empty() || !s.not_service_accounts.empty()) &&
      (!s.principals.empty() || !s.not_principals.empty() || !s.namespaces.empty() ||
       !s.not_namespaces.empty())) {
    c.Add(path, "cannot set serviceAccounts with namespaces or principals (as Istio)");
  }
  CheckStrings(c, s.principals, path + ".principals", PrincipalError, "principal");
  CheckStrings(c, s.not_principals, path + ".notPrincipals", PrincipalError, "principal");
  CheckStrings(c, s.namespaces, path + ".namespaces", PolicyNamespaceError, "namespace");
  CheckStrings(c, s.not_namespaces, path + ".notNamespaces", PolicyNamespaceError, "namespace");
  CheckStrings(c, s.service_accounts, path + ".serviceAccounts", ServiceAccountError,
               "service account");
  CheckStrings(c, s.not_service_accounts, path + ".notServiceAccounts", ServiceAccountError,
               "service account");
  CheckStrings(c, s.ip_blocks, path + ".ipBlocks", IpBlockError, "IP block");
  CheckStrings(c, s.not_ip_blocks, path + ".notIpBlocks", IpBlockError, "IP block");
  CheckStrings(c, s.remote_ip_blocks, path + ".remoteIpBlocks", IpBlockError, "IP block");
  CheckStrings(c, s.not_remote_ip_blocks, path + ".notRemoteIpBlocks", IpBlockError, "IP block");
  CheckStrings(c, s.request_principals, path + ".requestPrincipals", PatternError,
               "request principal");
  CheckStrings(c, s.not_request_principals, path + ".notRequestPrincipals", PatternError,
               "request principal");
}

void CheckOperation(Checker& c, const PolicyOperation& op, const std::string& path) {
  if (op == PolicyOperation{}) {
    c.Add(path, "must set at least one of ports, hosts, methods, paths (or their not- forms)");
  }
  for (size_t i = 0; i < op.ports.size(); ++i) {
    CheckPortNumber(c, op.ports[i], Index(path + ".ports", i));
  }
  for (size_t i = 0; i < op.not_ports.size(); ++i) {
    CheckPortNumber(c, op.not_ports[i], Index(path + ".notPorts", i));
  }
  CheckStrings(c, op.hosts, path + ".hosts", HostError, "host");
  CheckStrings(c, op.not_hosts, path + ".notHosts", HostError, "host");
  CheckStrings(c, op.methods, path + ".methods", MethodError, "method");
  CheckStrings(c, op.not_methods, path + ".notMethods", MethodError, "method");
  CheckStrings(c, op.paths, path + ".paths", PathError, "path");
  CheckStrings(c, op.not_paths, path + ".notPaths", PathError, "path");
}

void CheckCondition(Checker& c, const PolicyCondition& when, const std::string& path) {
  ConditionKey key = ClassifyConditionKey(when.key);
  if (when.key.empty()) {
    c.Add(path + ".key", Missing("key"));
  } else if (key == ConditionKey::kUnknown) {
    c.Add(path + ".key",
          "unsupported key " + QuoteForMessage(when.key) +
              ": expected source.ip, source.namespace, source.principal, destination.ip, "
              "destination.port, remote.ip, request.headers[NAME], request.auth.principal, "
              "request.auth.audiences, request.auth.presenter, request.auth.claims[NAME] or "
              "connection.sni");
    return;
  }
  if (when.values.empty() && when.not_values.empty()) {
    c.Add(path, "must set values or notValues");
  }
  std::string (*error)(std::string_view) = PatternError;
  const char* what = "value";
  switch (key) {
    case ConditionKey::kSourceIp:
    case ConditionKey::kDestinationIp:
    case ConditionKey::kRemoteIp:
      error = IpBlockError;
      what = "IP block";
      break;
    case ConditionKey::kDestinationPort:
      error = PortValueError;
      what = "port";
      break;
    case ConditionKey::kSourceNamespace:
      error = PolicyNamespaceError;
      what = "namespace";
      break;
    case ConditionKey::kSourcePrincipal:
      error = PrincipalError;
      what = "principal";
      break;
    default:
      break;
  }
  CheckStrings(c, when.values, path + ".values", error, what);
  CheckStrings(c, when.not_values, path + ".notValues", error, what);
}

void CheckPolicy(Checker& c, const AuthorizationPolicy& p) {
  CheckMeta(c, p.metadata, Kind::kAuthorizationPolicy);
  CheckLabels(c, p.selector, "spec.selector.matchLabels");
  if (p.action != PolicyAction::kAllow && p.action != PolicyAction::kDeny) {
    c.Add("spec.action", "must be ALLOW or DENY");
  }
  for (size_t r = 0; r < p.rules.size(); ++r) {
    const PolicyRule& rule = p.rules[r];
    std::string rule_path = Index("spec.rules", r);
    for (size_t f = 0; f < rule.from.size(); ++f) {
      CheckSource(c, rule.from[f], Index(rule_path + ".from", f) + ".source");
    }
    for (size_t t = 0; t < rule.to.size(); ++t) {
      CheckOperation(c, rule.to[t], Index(rule_path + ".to", t) + ".operation");
    }
    for (size_t w = 0; w < rule.when.size(); ++w) {
      CheckCondition(c, rule.when[w], Index(rule_path + ".when", w));
    }
  }
}

}  // namespace

size_t MaxWorkloadNameLength() {
  // "-" plus the decimal digits of the highest ordinal.
  return kDns1123LabelMaxLength - 1 - std::to_string(kMaxReplicas - 1).size();
}

std::string QuoteForMessage(std::string_view value) {
  constexpr size_t kMaxShown = 80;
  std::string out = "\"";
  size_t shown = 0;
  for (char ch : value) {
    if (shown == kMaxShown) {
      out += "...";
      break;
    }
    ++shown;
    unsigned char u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

std::string SizeLimitMessage(size_t size, size_t limit) {
  std::string readable;
  if (limit % (1u << 20) == 0) {
    readable = std::to_string(limit >> 20) + " MiB";
  } else if (limit % (1u << 10) == 0) {
    readable = std::to_string(limit >> 10) + " KiB";
  } else {
    readable = std::to_string(limit) + " bytes";
  }
  return std::to_string(size) + " bytes, more than the limit of " + readable;
}

std::string JoinDiagnostics(const std::vector<Diagnostic>& diagnostics, size_t max_shown,
                            size_t max_bytes) {
  std::string text;
  size_t shown = 0;
  for (const Diagnostic& d : diagnostics) {
    if (shown == max_shown) break;
    std::string line = d.ToString();
    if (shown > 0 && text.size() + 1 + line.size() > max_bytes) break;
    if (shown > 0) text += '\n';
    text += line;
    ++shown;
  }
  if (const size_t rest = diagnostics.size() - shown; rest > 0) {
    text += "\n... and " + std::to_string(rest) + (rest == 1 ? " more error" : " more errors");
  }
  return text;
}

std::string LocationToString(const SourceLocation& where) {
  std::string out = where.file;
  if (where.line > 0) {
    if (!out.empty()) out += ':';
    out += std::to_string(where.line);
    if (where.column > 0) out += ":" + std::to_string(where.column);
  }
  return out;
}

std::string Diagnostic::ToString() const {
  std::string out = LocationToString(where);
  if (!field.empty()) {
    if (!out.empty()) out += ": ";
    out += field;
  }
  if (!out.empty()) out += ": ";
  out += message;
  return out;
}

std::vector<Diagnostic> Validate(const Object& object) {
  return std::visit([](const auto& o) { return Validate(o); }, object);
}

std::vector<Diagnostic> Validate(const Workload& workload) {
  Checker c;
  CheckWorkload(c, workload);
  return c.Take();
}

std::vector<Diagnostic> Validate(const Service& service) {
  Checker c;
  CheckService(c, service);
  return c.Take();
}

std::vector<Diagnostic> Validate(const AuthorizationPolicy& policy) {
  Checker c;
  CheckPolicy(c, policy);
  return c.Take();
}

std::vector<Diagnostic> Validate(const Namespace& ns) {
  Checker c;
  CheckMeta(c, ns.metadata, Kind::kNamespace);
  return c.Take();
}

std::vector<Diagnostic> Validate(const ServiceAccount& account) {
  Checker c;
  CheckMeta(c, account.metadata, Kind::kServiceAccount);
  return c.Take();
}

std::vector<Diagnostic> Validate(const PeerAuthentication& peer) {
  Checker c;
  CheckMeta(c, peer.metadata, Kind::kPeerAuthentication);
  CheckLabels(c, peer.selector, "spec.selector.matchLabels");
  // Istio: port-level settings need a workload selector (ports are the
  // selected workloads' own).
  if (!peer.port_level.empty() && peer.selector.empty()) {
    c.Add("spec.portLevelMtls",
          "needs spec.selector: port-level modes apply to the ports of "
          "the workloads a selector picks (as Istio requires)");
  }
  for (const auto& [port, mode] : peer.port_level) {
    CheckPortNumber(c, port, "spec.portLevelMtls[" + std::to_string(port) + "]");
  }
  return c.Take();
}

std::vector<Diagnostic> Validate(const WorkloadEntry& entry) {
  Checker c;
  CheckMeta(c, entry.metadata, Kind::kWorkloadEntry);
  if (entry.address.empty()) {
    c.Add("spec.address", Missing("address"));
  } else if (!ParseIpv4(entry.address).ok()) {
    c.Add("spec.address", "invalid address " + QuoteForMessage(entry.address) +
                              ": must be an IPv4 address (podless reaches the entry over HBONE "
                              "at address:" +
                              std::to_string(entry.hbone_port) + ")");
  }
  CheckLabels(c, entry.labels, "spec.labels");
  if (std::string why = Dns1123SubdomainError(entry.service_account); !why.empty()) {
    c.Add("spec.serviceAccount",
          "invalid service account " + QuoteForMessage(entry.service_account) + ": " + why);
  }
  for (const auto& [name, port] : entry.ports) {
    const std::string field = Key("spec.ports", name);
    if (std::string why = Dns1123LabelError(name); !why.empty()) {
      c.Add(field, "invalid port name " + QuoteForMessage(name) + ": " + why);
    }
    CheckPortNumber(c, port, field);
  }
  CheckPortNumber(c, entry.hbone_port, "metadata.annotations[podless.dev/hbone-port]");
  return c.Take();
}

std::vector<Diagnostic> ValidateBatch(const std::vector<ParsedObject>& objects) {
  std::vector<Diagnostic> out;
  std::map<ObjectKey, const ParsedObject*> seen;
  for (const ParsedObject& parsed : objects) {
    ObjectKey key = KeyOf(parsed.object);
    auto [it, inserted] = seen.emplace(key, &parsed);
    if (inserted) continue;
    Diagnostic d;
    d.where = parsed.where;
    d.field = "metadata.name";
    std::string first = LocationToString(it->second->where);
    d.message = std::string("duplicate ") + KindName(key.kind) + " " +
                QuoteForMessage(key.ns + "/" + key.name) + " in one apply";
    if (!first.empty()) d.message += " (also at " + first + ")";
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace podless::workloads
