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
inline constexpr uint32_t kMaxReplicas = 1'000'000;

using Labels = std::map<std::string, std::string>;

struct ObjectMeta {
  std::string name;
  std::string ns = kDefaultNamespace;  // `metadata.namespace`
  Labels labels;
  bool operator==(const ObjectMeta&) const = default;
};

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

// `app.exec` — a supervised program (see issue "Process workloads").
struct ExecApp {
  std::vector<std::string> command;  // argv, non-empty
  std::vector<EnvVar> env;
  std::string working_dir;
  RestartPolicy restart_policy = RestartPolicy::kAlways;
  HeapOptional<Probe> readiness_probe;
  uint32_t termination_grace_period_seconds = 30;
  bool operator==(const ExecApp&) const = default;
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
// entry matches (OR). Entries support Istio's "*" prefix/suffix wildcards.
struct PolicySource {
  std::vector<std::string> principals;
  std::vector<std::string> not_principals;
  std::vector<std::string> namespaces;
  std::vector<std::string> not_namespaces;
  bool operator==(const PolicySource&) const = default;
};

struct PolicyOperation {
  std::vector<uint16_t> ports;
  std::vector<uint16_t> not_ports;
  bool operator==(const PolicyOperation&) const = default;
};

// A rule matches when any `from` matches (or `from` is empty) and any `to`
// matches (or `to` is empty).
struct PolicyRule {
  std::vector<PolicySource> from;
  std::vector<PolicyOperation> to;
  bool operator==(const PolicyRule&) const = default;
};

struct AuthorizationPolicy {
  ObjectMeta metadata;
  // `selector.matchLabels`; absent/empty selects every workload of the
  // policy's namespace (Istio semantics).
  Labels selector;
  PolicyAction action = PolicyAction::kAllow;
  // Istio semantics: an ALLOW policy with no rules allows nothing; a DENY
  // policy with no rules denies nothing.
  std::vector<PolicyRule> rules;
  bool operator==(const AuthorizationPolicy&) const = default;
};

enum class Kind { kWorkload, kService, kAuthorizationPolicy };

const char* KindName(Kind kind);  // "Workload", "Service", "AuthorizationPolicy"

using Object = std::variant<Workload, Service, AuthorizationPolicy>;

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
  }
  return "?";
}

inline const ObjectMeta& MetaOf(const Object& object) {
  return std::visit([](const auto& o) -> const ObjectMeta& { return o.metadata; }, object);
}

inline ObjectKey KeyOf(const Object& object) {
  const ObjectMeta& meta = MetaOf(object);
  return ObjectKey{static_cast<Kind>(object.index()), meta.ns, meta.name};
}

}  // namespace podless::workloads
