// The podless object model: Workload, Service and AuthorizationPolicy as a
// user declares them (apiVersion podless.dev/v1alpha1). Plain values, no I/O.
// Field names mirror the manifest fields (Kubernetes / Istio spelling).
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace podless::workloads {

inline constexpr char kApiVersion[] = "podless.dev/v1alpha1";
inline constexpr char kDefaultNamespace[] = "default";
inline constexpr char kDefaultServiceAccount[] = "default";
inline constexpr char kDefaultRootNamespace[] = "istio-system";  // Istio's default
inline constexpr uint32_t kMaxReplicas = 1'000'000;

using Labels = std::map<std::string, std::string>;

// TCP: bytes are relayed as they are. HTTP: the in-proxy apps answer HTTP/1.1.
enum class Protocol { kTCP, kHTTP };

struct PortSpec {
  std::string name;  // optional, DNS-1123 label, unique within the workload
  uint16_t port = 0;
  Protocol protocol = Protocol::kTCP;
  bool operator==(const PortSpec&) const = default;
};

// `app.echo: {}` — TCP echo, or for HTTP ports a JSON description of the
// caller (its SPIFFE ID), the workload and the request.
struct EchoApp {
  bool operator==(const EchoApp&) const = default;
};

// `app.static: {status, body, headers}` — a fixed HTTP response.
struct StaticApp {
  uint16_t status = 200;
  std::string body;
  std::map<std::string, std::string> headers;
  bool operator==(const StaticApp&) const = default;
};

// `app.forward: {address: host:port}` — splice to a local address.
struct ForwardApp {
  std::string address;
  bool operator==(const ForwardApp&) const = default;
};

enum class RestartPolicy { kAlways, kOnFailure, kNever };

struct EnvVar {
  std::string name;
  std::string value;
  bool operator==(const EnvVar&) const = default;
};

// A port given by number or by the name of one of the workload's ports
// (Kubernetes' IntOrString). Exactly one of the two is set.
struct PortRef {
  uint16_t number = 0;
  std::string name;
  bool operator==(const PortRef&) const = default;
};

struct Probe {
  enum class Kind { kTcpSocket, kHttpGet };
  Kind kind = Kind::kTcpSocket;
  PortRef port;
  std::string path = "/";  // httpGet only
  uint32_t initial_delay_seconds = 0;
  uint32_t period_seconds = 10;
  uint32_t timeout_seconds = 1;
  uint32_t failure_threshold = 3;
  uint32_t success_threshold = 1;
  bool operator==(const Probe&) const = default;
};

// A std::optional whose value lives on the heap, so that an absent value
// costs one pointer. For large, rarely set members (an exec app's readiness
// probe): every Workload carries its AppSpec inline, and a dense node holds a
// million of them. Copies are deep; the interface is the part of
// std::optional the code uses.
template <typename T>
class HeapOptional {
 public:
  HeapOptional() = default;
  HeapOptional(std::nullopt_t) {}
  HeapOptional(T value) : value_(std::make_unique<T>(std::move(value))) {}
  HeapOptional(const HeapOptional& other)
      : value_(other.value_ ? std::make_unique<T>(*other.value_) : nullptr) {}
  HeapOptional(HeapOptional&&) noexcept = default;
  HeapOptional& operator=(const HeapOptional& other) {
    if (this != &other) value_ = other.value_ ? std::make_unique<T>(*other.value_) : nullptr;
    return *this;
  }
  HeapOptional& operator=(HeapOptional&&) noexcept = default;
  HeapOptional& operator=(T value) {
    value_ = std::make_unique<T>(std::move(value));
    return *this;
  }
  HeapOptional& operator=(std::nullopt_t) {
    value_.reset();
    return *this;
  }

  bool has_value() const { return value_ != nullptr; }
  explicit operator bool() const { return has_value(); }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return value_.get(); }
  const T* operator->() const { return value_.get(); }
  T& emplace() {
    value_ = std::make_unique<T>();
    return *value_;
  }
  void reset() { value_.reset(); }

  friend bool operator==(const HeapOptional& a, const HeapOptional& b) {
    return a.has_value() == b.has_value() && (!a.has_value() || *a == *b);
  }

 private:
  std::unique_ptr<T> value_;
};

// A T that lives on the heap once it is set, so that an unset value costs
// one pointer; unset reads as T{}. For a group of rarely set fields whose
// defaults mean "nothing to do" (an exec app's sandbox). Unlike HeapOptional
// there is no absence to test for: readers use the value as it is, and two
// values compare equal whether or not they were ever set. Copies are deep and
// drop a heap value equal to T{}.
template <typename T>
class HeapValue {
 public:
  HeapValue() = default;
  HeapValue(T value) {
    if (!(value == Default())) value_ = std::make_unique<T>(std::move(value));
  }
  HeapValue(const HeapValue& other)
      : value_(other.is_default() ? nullptr : std::make_unique<T>(*other.value_)) {}
  HeapValue(HeapValue&&) noexcept = default;
  HeapValue& operator=(const HeapValue& other) {
    if (this != &other) value_ = other.is_default() ? nullptr : std::make_unique<T>(*other.value_);
    return *this;
  }
  HeapValue& operator=(HeapValue&&) noexcept = default;

  const T& operator*() const { return value_ ? *value_ : Default(); }
  const T* operator->() const { return &**this; }
  // The value to change; allocated as T{} on first use.
  T& mutable_value() {
    if (!value_) value_ = std::make_unique<T>();
    return *value_;
  }
  // Whether the value is T{}: then encoders write nothing for it.
  bool is_default() const { return !value_ || *value_ == Default(); }
  void reset() { value_.reset(); }

  friend bool operator==(const HeapValue& a, const HeapValue& b) { return *a == *b; }

 private:
  static const T& Default() {
    static const T kDefault{};
    return kDefault;
  }
  std::unique_ptr<T> value_;
};

// An object applied as a Kubernetes or Istio kind (a Deployment, held as a
// Workload): the kind the user wrote and the document as they wrote it, so
// that `get -o yaml` shows it in that kind and a re-apply of the same text is
// "unchanged". Absent for podless.dev/v1alpha1 objects.
struct AppliedAs {
  std::string api_version;  // "apps/v1"
  std::string kind;         // "Deployment"
  // The document as applied, without `status`, as YAML in yaml-cpp's
  // emitter layout (so that formatting and comments do not count).
  std::string document;
  bool operator==(const AppliedAs&) const = default;
};

struct ObjectMeta {
  std::string name;
  std::string ns = kDefaultNamespace;  // `metadata.namespace`; empty for a Namespace
  Labels labels;
  // `metadata.annotations` (Kubernetes kinds); kept as written. A HeapValue:
  // a dense node's million workloads have none and pay one pointer.
  HeapValue<Labels> annotations;
  HeapOptional<AppliedAs> applied_as;
  bool operator==(const ObjectMeta&) const = default;
};

// The largest runAsUser and runAsGroup: 4294967295 is (uid_t)-1, which
// setuid(2) and setgid(2) read as "leave unchanged".
inline constexpr uint32_t kMaxRunAsId = 4'294'967'294;

// The smallest memory limit. Smaller ones are mistakes ("128" meant as
// megabytes): no program runs in them.
inline constexpr uint64_t kMinMemoryLimitBytes = 1024 * 1024;

// `exec.securityContext` (Kubernetes' names; only what a process uses). An
// unset field keeps the agent's own: its user, its group.
struct SecurityContext {
  std::optional<uint32_t> run_as_user;   // `runAsUser`, at most kMaxRunAsId
  std::optional<uint32_t> run_as_group;  // `runAsGroup`, at most kMaxRunAsId
  // `runAsNonRoot`: true refuses to run the process as uid 0. Validation
  // refuses it with runAsUser 0; without runAsUser the agent's own uid is
  // what counts, which only the supervisor knows.
  std::optional<bool> run_as_non_root;
  bool operator==(const SecurityContext&) const = default;
};

// `exec.resources.limits` (Kubernetes quantities in manifests). 0 means no
// limit; a manifest or API value of 0 is refused, so 0 always means unset.
struct ResourceLimits {
  uint64_t memory_bytes = 0;  // `memory`, at least kMinMemoryLimitBytes when set
  uint32_t cpu_millis = 0;    // `cpu`, in millicores ("500m", "0.5", "2")
  uint32_t pids = 0;          // `pids`: processes and threads at once
  bool operator==(const ResourceLimits&) const = default;
};

// How an exec app's replicas are confined. Every default means "as the
// agent itself runs", so that a workload that sets none of these stores
// nothing (ExecApp::sandbox is a HeapValue).
struct ExecSandbox {
  SecurityContext security_context;  // `exec.securityContext`
  ResourceLimits limits;             // `exec.resources.limits`
  // `exec.keepWorkingDir`: false removes the replica's private working
  // directory with the replica; true leaves it for inspection.
  bool keep_working_dir = false;
  bool operator==(const ExecSandbox&) const = default;
};

// `exec.containers[]`: a further process of every replica, run side by side
// with the first (the exec app's own command) in the replica's one sandbox:
// same uid, network namespace (they reach each other on 127.0.0.1), cgroup
// and working directory, as a pod's containers share theirs. Each has its
// own restarts, backoff, log and readiness. A Kubernetes pod with several
// containers that have a command maps onto these.
struct ExecContainer {
  std::string name;                  // DNS-1123 label, unique in the app
  std::vector<std::string> command;  // argv, non-empty
  std::vector<EnvVar> env;
  std::string working_dir;
  HeapOptional<Probe> readiness_probe;
  bool operator==(const ExecContainer&) const = default;
};

// The containers of an exec app beyond its own command. Defaults (no name,
// no further container) are the single-command app podless always had.
struct ExecContainers {
  // `exec.name`: the name of the container the app's own command runs as
  // (a Kubernetes container's name); empty: "main" where one is needed.
  std::string name;
  std::vector<ExecContainer> more;  // `exec.containers`
  bool operator==(const ExecContainers&) const = default;
};

// The name a single-command exec app's process goes by (logs, statuses).
inline constexpr char kDefaultContainerName[] = "main";

// `app.exec` — a supervised program (see issue "Process workloads").
// Member order packs the struct (the AppSpec variant is as large as its
// largest alternative, and this is it); it is not the manifest's order.
struct ExecApp {
  std::vector<std::string> command;  // argv, non-empty
  std::vector<EnvVar> env;
  std::string working_dir;
  RestartPolicy restart_policy = RestartPolicy::kAlways;
  uint32_t termination_grace_period_seconds = 30;
  HeapOptional<Probe> readiness_probe;
  HeapValue<ExecSandbox> sandbox;        // securityContext, resources, keepWorkingDir
  HeapValue<ExecContainers> containers;  // exec.name, exec.containers
  bool operator==(const ExecApp&) const = default;

  // Every container of a replica, the app's own command first.
  std::vector<ExecContainer> AllContainers() const {
    std::vector<ExecContainer> all;
    all.reserve(1 + containers->more.size());
    ExecContainer first;
    first.name = containers->name.empty() ? kDefaultContainerName : containers->name;
    first.command = command;
    first.env = env;
    first.working_dir = working_dir;
    first.readiness_probe = readiness_probe;
    all.push_back(std::move(first));
    all.insert(all.end(), containers->more.begin(), containers->more.end());
    return all;
  }
};

using AppSpec = std::variant<EchoApp, StaticApp, ForwardApp, ExecApp>;

struct WorkloadSpec {
  uint32_t replicas = 1;  // 0 .. kMaxReplicas
  std::string service_account = kDefaultServiceAccount;
  std::vector<PortSpec> ports;
  AppSpec app = EchoApp{};
  bool operator==(const WorkloadSpec&) const = default;
};

struct Workload {
  ObjectMeta metadata;
  WorkloadSpec spec;
  bool operator==(const Workload&) const = default;
};

struct ServicePort {
  std::string name;
  uint16_t port = 0;
  PortRef target_port;  // defaults to `port` when not given
  Protocol protocol = Protocol::kTCP;
  bool operator==(const ServicePort&) const = default;
};

struct Service {
  ObjectMeta metadata;
  Labels selector;  // empty selects nothing (as in Kubernetes)
  std::vector<ServicePort> ports;
  bool operator==(const Service&) const = default;
};

enum class PolicyAction { kAllow, kDeny };

// One `from` entry: every non-empty list must match (AND); within a list any
// entry matches (OR). Entries support Istio's "*" prefix/suffix wildcards
// (principals, namespaces, requestPrincipals); ipBlocks are CIDRs or single
// addresses; serviceAccounts are "ns/sa", or "sa" in the policy's namespace.
// remoteIpBlocks and requestPrincipals are HTTP attributes (see
// proxy/authorization.h for where they are enforced).
struct PolicySource {
  std::vector<std::string> principals;
  std::vector<std::string> not_principals;
  std::vector<std::string> namespaces;
  std::vector<std::string> not_namespaces;
  std::vector<std::string> service_accounts;
  std::vector<std::string> not_service_accounts;
  std::vector<std::string> ip_blocks;
  std::vector<std::string> not_ip_blocks;
  std::vector<std::string> remote_ip_blocks;
  std::vector<std::string> not_remote_ip_blocks;
  std::vector<std::string> request_principals;
  std::vector<std::string> not_request_principals;
  bool operator==(const PolicySource&) const = default;
};

// ports are L4; hosts, methods and paths are HTTP attributes.
struct PolicyOperation {
  std::vector<uint16_t> ports;
  std::vector<uint16_t> not_ports;
  std::vector<std::string> hosts;
  std::vector<std::string> not_hosts;
  std::vector<std::string> methods;
  std::vector<std::string> not_methods;
  std::vector<std::string> paths;
  std::vector<std::string> not_paths;
  bool operator==(const PolicyOperation&) const = default;
};

// One `when` entry: the attribute `key` must match one of `values` (when
// set) and none of `not_values`. Keys: see IsL4ConditionKey and
// IsHttpConditionKey in proxy/authorization.h.
struct PolicyCondition {
  std::string key;
  std::vector<std::string> values;
  std::vector<std::string> not_values;
  bool operator==(const PolicyCondition&) const = default;
};

// A rule matches when any `from` matches (or `from` is empty), any `to`
// matches (or `to` is empty) and every `when` condition matches.
struct PolicyRule {
  std::vector<PolicySource> from;
  std::vector<PolicyOperation> to;
  std::vector<PolicyCondition> when;
  bool operator==(const PolicyRule&) const = default;
};

struct AuthorizationPolicy {
  ObjectMeta metadata;
  // `selector.matchLabels`; absent/empty selects every workload of the
  // policy's namespace, or of every namespace for a policy in the root
  // namespace (Istio semantics).
  Labels selector;
  PolicyAction action = PolicyAction::kAllow;
  // Istio semantics: an ALLOW policy with no rules allows nothing; a DENY
  // policy with no rules denies nothing.
  std::vector<PolicyRule> rules;
  bool operator==(const AuthorizationPolicy&) const = default;
};

// v1 Namespace. Cluster-scoped: `metadata.ns` is empty. Namespaces also
// exist without one (while they hold objects); declaring one gives it labels
// and annotations and makes it listed while empty.
struct Namespace {
  ObjectMeta metadata;
  bool operator==(const Namespace&) const = default;
};

// v1 ServiceAccount: the identity spiffe://<td>/ns/<ns>/sa/<name>. Workloads
// name theirs (`serviceAccountName`); podless does not require it declared.
struct ServiceAccount {
  ObjectMeta metadata;
  bool operator==(const ServiceAccount&) const = default;
};

// Istio's mutual TLS modes. kUnset inherits (port level from the workload
// level, the workload level from the namespace's, that from the root
// namespace's); unset everywhere is PERMISSIVE.
enum class MtlsMode { kUnset, kPermissive, kStrict, kDisable };

// security.istio.io PeerAuthentication: STRICT closes the plaintext ports of
// the workloads it selects, PERMISSIVE keeps them.
struct PeerAuthentication {
  ObjectMeta metadata;
  Labels selector;  // `selector.matchLabels`; empty selects the whole namespace
  MtlsMode mode = MtlsMode::kUnset;
  std::map<uint16_t, MtlsMode> port_level;  // `portLevelMtls`, by workload port
  bool operator==(const PeerAuthentication&) const = default;
};

// networking.istio.io WorkloadEntry: a workload that lives elsewhere (a VM,
// another node or mesh), reached over HBONE at `address`, presenting the
// identity its service account gives. Services select it by `labels`.
struct WorkloadEntry {
  ObjectMeta metadata;
  std::string address;  // IPv4
  Labels labels;        // `spec.labels`: what Services and policies select
  std::string service_account = kDefaultServiceAccount;
  std::map<std::string, uint16_t> ports;  // port name -> port on the entry
  uint16_t hbone_port = 15008;            // from an annotation; see the reader
  bool operator==(const WorkloadEntry&) const = default;
};

// Variant order is Kind order (KeyOf uses the index).
enum class Kind {
  kWorkload,
  kService,
  kAuthorizationPolicy,
  kNamespace,
  kServiceAccount,
  kPeerAuthentication,
  kWorkloadEntry,
};
inline constexpr Kind kLastKind = Kind::kWorkloadEntry;
inline constexpr Kind kAllKinds[] = {
    Kind::kWorkload,     Kind::kService,        Kind::kAuthorizationPolicy,
    Kind::kNamespace,    Kind::kServiceAccount, Kind::kPeerAuthentication,
    Kind::kWorkloadEntry};
// The kinds every node of a cluster shares through etcd: all but workloads,
// which each node hosts and publishes as its own.
inline constexpr Kind kClusterKinds[] = {
    Kind::kService,        Kind::kAuthorizationPolicy, Kind::kNamespace,
    Kind::kServiceAccount, Kind::kPeerAuthentication,  Kind::kWorkloadEntry};

const char* KindName(Kind kind);  // "Workload", "Service", "AuthorizationPolicy", ...

using Object = std::variant<Workload, Service, AuthorizationPolicy, Namespace, ServiceAccount,
                            PeerAuthentication, WorkloadEntry>;

struct ObjectKey {
  Kind kind = Kind::kWorkload;
  std::string ns;
  std::string name;
  auto operator<=>(const ObjectKey&) const = default;
};

ObjectKey KeyOf(const Object& object);

// True when every key of `selector` is in `labels` with the same value. An
// empty selector matches everything; what "empty" means is the caller's
// rule (a Service selects nothing, a policy selects its whole namespace).
// The workload port a Service port's targetPort names, or 0 when it names
// one the workload does not declare. A number is taken as it is (as in
// Kubernetes, a container need not declare it).
inline uint16_t TargetPortOf(const ServicePort& port, const Workload& workload) {
  if (port.target_port.name.empty()) {
    return port.target_port.number != 0 ? port.target_port.number : port.port;
  }
  for (const auto& declared : workload.spec.ports) {
    if (declared.name == port.target_port.name) return declared.port;
  }
  return 0;
}

// A Service port's target on a WorkloadEntry: a number as it is, a name
// looked up in the entry's ports (0: the entry has no such port).
inline uint16_t TargetPortOf(const ServicePort& port, const WorkloadEntry& entry) {
  if (port.target_port.name.empty()) {
    return port.target_port.number != 0 ? port.target_port.number : port.port;
  }
  auto it = entry.ports.find(port.target_port.name);
  return it != entry.ports.end() ? it->second : 0;
}

inline bool LabelsMatch(const Labels& selector, const Labels& labels) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}
const ObjectMeta& MetaOf(const Object& object);

inline const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kWorkload:
      return "Workload";
    case Kind::kService:
      return "Service";
    case Kind::kAuthorizationPolicy:
      return "AuthorizationPolicy";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kServiceAccount:
      return "ServiceAccount";
    case Kind::kPeerAuthentication:
      return "PeerAuthentication";
    case Kind::kWorkloadEntry:
      return "WorkloadEntry";
  }
  return "?";
}

// Istio's spelling: "UNSET", "PERMISSIVE", "STRICT", "DISABLE".
inline const char* MtlsModeName(MtlsMode mode) {
  switch (mode) {
    case MtlsMode::kUnset:
      return "UNSET";
    case MtlsMode::kPermissive:
      return "PERMISSIVE";
    case MtlsMode::kStrict:
      return "STRICT";
    case MtlsMode::kDisable:
      return "DISABLE";
  }
  return "UNSET";
}

inline const ObjectMeta& MetaOf(const Object& object) {
  return std::visit([](const auto& o) -> const ObjectMeta& { return o.metadata; }, object);
}

inline ObjectKey KeyOf(const Object& object) {
  const ObjectMeta& meta = MetaOf(object);
  return ObjectKey{static_cast<Kind>(object.index()), meta.ns, meta.name};
}

}  // namespace podless::workloads
