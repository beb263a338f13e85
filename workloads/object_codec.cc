#include "workloads/object_codec.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>

namespace podless::workloads {

// ByteWriter

void ByteWriter::PutVarint(uint64_t value) {
  char buf[10];
  size_t n = 0;
  while (value >= 0x80) {
    buf[n++] = static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  buf[n++] = static_cast<char>(value);
  out_->append(buf, n);
}

void ByteWriter::PutString(std::string_view value) {
  PutVarint(value.size());
  out_->append(value);
}

void ByteWriter::PutFixed32(uint32_t value) {
  char buf[4] = {static_cast<char>(value), static_cast<char>(value >> 8),
                 static_cast<char>(value >> 16), static_cast<char>(value >> 24)};
  out_->append(buf, 4);
}

// ByteReader

bool ByteReader::FailAt(size_t position, const char* what, std::string_view why) {
  if (error_.empty()) {
    error_ =
        "byte " + std::to_string(base_offset_ + position) + ": " + what + ": " + std::string(why);
  }
  return false;
}

bool ByteReader::ReadByte(uint8_t* value, const char* what) {
  if (!ok()) return false;
  if (pos_ >= data_.size()) return Fail(what, "truncated (input ends)");
  *value = static_cast<uint8_t>(data_[pos_++]);
  return true;
}

bool ByteReader::ReadVarint(uint64_t* value, const char* what) {
  if (!ok()) return false;
  uint64_t result = 0;
  for (size_t i = 0; i < 10; ++i) {
    if (pos_ + i >= data_.size()) return Fail(what, "truncated varint (input ends)");
    const uint8_t byte = static_cast<uint8_t>(data_[pos_ + i]);
    // The tenth byte holds bit 63 only; anything more does not fit 64 bits.
    if (i == 9 && byte > 1) return Fail(what, "varint overflows 64 bits");
    result |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      pos_ += i + 1;
      *value = result;
      return true;
    }
  }
  return Fail(what, "varint longer than 10 bytes");
}

bool ByteReader::ReadBounded(uint64_t* value, uint64_t max, const char* what) {
  const size_t start = pos_;
  if (!ReadVarint(value, what)) return false;
  if (*value > max) {
    return FailAt(
        start, what,
        "value " + std::to_string(*value) + " out of range (max " + std::to_string(max) + ")");
  }
  return true;
}

bool ByteReader::ReadU32(uint32_t* value, const char* what) {
  uint64_t v = 0;
  if (!ReadBounded(&v, std::numeric_limits<uint32_t>::max(), what)) return false;
  *value = static_cast<uint32_t>(v);
  return true;
}

bool ByteReader::ReadU16(uint16_t* value, const char* what) {
  uint64_t v = 0;
  if (!ReadBounded(&v, std::numeric_limits<uint16_t>::max(), what)) return false;
  *value = static_cast<uint16_t>(v);
  return true;
}

bool ByteReader::ReadStringView(std::string_view* value, const char* what) {
  const size_t start = pos_;
  uint64_t length = 0;
  if (!ReadVarint(&length, what)) return false;
  if (length > remaining()) {
    return FailAt(start, what,
                  "string length " + std::to_string(length) + " exceeds the " +
                      std::to_string(remaining()) + " bytes left");
  }
  *value = data_.substr(pos_, length);
  pos_ += length;
  return true;
}

bool ByteReader::ReadString(std::string* value, const char* what) {
  std::string_view view;
  if (!ReadStringView(&view, what)) return false;
  value->assign(view);
  return true;
}

bool ByteReader::ReadCount(size_t* count, size_t min_element_bytes, const char* what) {
  const size_t start = pos_;
  uint64_t n = 0;
  if (!ReadVarint(&n, what)) return false;
  if (min_element_bytes == 0) min_element_bytes = 1;
  if (n > remaining() / min_element_bytes) {
    return FailAt(start, what,
                  "count " + std::to_string(n) + " exceeds what the " +
                      std::to_string(remaining()) + " bytes left can hold");
  }
  *count = static_cast<size_t>(n);
  return true;
}

bool ByteReader::ReadFixed32(uint32_t* value, const char* what) {
  if (!ok()) return false;
  if (remaining() < 4) return Fail(what, "truncated (needs 4 bytes)");
  const auto* p = reinterpret_cast<const uint8_t*>(data_.data() + pos_);
  *value = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
           static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
  pos_ += 4;
  return true;
}

namespace {

// A key from untrusted input, shortened and with non-printable bytes replaced,
// fit to be quoted in an error message.
std::string Printable(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out;
  for (char c : s.substr(0, kMax)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > kMax) out += "...";
  return out;
}

// Enum upper bounds. A new enumerator must be added here and in the decoder of
// the matching field, or encoding reports it as out of range.
constexpr uint64_t kMaxKind = static_cast<uint64_t>(kLastKind);
constexpr uint64_t kMaxMtlsMode = static_cast<uint64_t>(MtlsMode::kDisable);
constexpr uint64_t kMaxProtocol = static_cast<uint64_t>(Protocol::kHTTP);
constexpr uint64_t kMaxRestartPolicy = static_cast<uint64_t>(RestartPolicy::kNever);
constexpr uint64_t kMaxProbeKind = static_cast<uint64_t>(Probe::Kind::kHttpGet);
constexpr uint64_t kMaxPolicyAction = static_cast<uint64_t>(PolicyAction::kDeny);
constexpr uint64_t kMaxAppIndex = std::variant_size_v<AppSpec> - 1;

// The oldest format version that holds `object` (see object_codec.h).
uint8_t VersionFor(const Object& object) {
  const ObjectMeta& meta = MetaOf(object);
  if (const auto* w = std::get_if<Workload>(&object)) {
    const auto* exec = std::get_if<ExecApp>(&w->spec.app);
    if (exec != nullptr && !exec->containers.is_default()) return 4;
  }
  if (object.index() > static_cast<size_t>(Kind::kAuthorizationPolicy) ||
      !meta.annotations.is_default() || meta.applied_as.has_value()) {
    return 3;
  }
  if (const auto* policy = std::get_if<AuthorizationPolicy>(&object)) {
    const bool extended =
        std::any_of(policy->rules.begin(), policy->rules.end(), [](const PolicyRule& rule) {
          const auto extended_source = [](const PolicySource& s) {
            PolicySource base;
            base.principals = s.principals;
            base.not_principals = s.not_principals;
            base.namespaces = s.namespaces;
            base.not_namespaces = s.not_namespaces;
            return !(base == s);
          };
          const auto extended_operation = [](const PolicyOperation& o) {
            PolicyOperation base;
            base.ports = o.ports;
            base.not_ports = o.not_ports;
            return !(base == o);
          };
          return !rule.when.empty() ||
                 std::any_of(rule.from.begin(), rule.from.end(), extended_source) ||
                 std::any_of(rule.to.begin(), rule.to.end(), extended_operation);
        });
    return extended ? 3 : 1;
  }
  const auto* workload = std::get_if<Workload>(&object);
  const auto* exec = workload != nullptr ? std::get_if<ExecApp>(&workload->spec.app) : nullptr;
  return exec != nullptr && !exec->sandbox.is_default() ? 2 : 1;
}

// Writes an object. Enum values out of range are written as they are (so the
// output is always produced) and the first one is remembered in error().
class Encoder {
 public:
  explicit Encoder(std::string* out) : w_(out) {}

  const std::string& error() const { return error_; }

  void Object(const workloads::Object& object) {
    version_ = VersionFor(object);
    w_.PutByte(version_);
    w_.PutVarint(object.index());
    std::visit([this](const auto& o) { Body(o); }, object);
    if (version_ >= 3) MetaExtras(MetaOf(object));
  }

 private:
  template <typename E>
  void Enum(E value, uint64_t max, const char* what) {
    const auto raw = static_cast<uint64_t>(static_cast<std::underlying_type_t<E>>(value));
    if (raw > max && error_.empty()) {
      error_ = std::string(what) + ": enum value " + std::to_string(raw) + " out of range (max " +
               std::to_string(max) + ")";
    }
    w_.PutVarint(raw);
  }

  void LabelMap(const std::map<std::string, std::string>& map) {
    w_.PutVarint(map.size());
    for (const auto& [key, value] : map) {
      w_.PutString(key);
      w_.PutString(value);
    }
  }

  void Strings(const std::vector<std::string>& list) {
    w_.PutVarint(list.size());
    for (const auto& s : list) w_.PutString(s);
  }

  void Ports(const std::vector<uint16_t>& list) {
    w_.PutVarint(list.size());
    for (uint16_t p : list) w_.PutVarint(p);
  }

  void Meta(const ObjectMeta& meta) {
    w_.PutString(meta.name);
    w_.PutString(meta.ns);
    LabelMap(meta.labels);
  }

  // Version 3, after the body: annotations, then where the object was
  // applied as a Kubernetes or Istio kind.
  void MetaExtras(const ObjectMeta& meta) {
    LabelMap(*meta.annotations);
    w_.PutByte(meta.applied_as.has_value() ? 1 : 0);
    if (meta.applied_as) {
      w_.PutString(meta.applied_as->api_version);
      w_.PutString(meta.applied_as->kind);
      w_.PutString(meta.applied_as->document);
    }
  }

  void PortRefBody(const PortRef& ref) {
    w_.PutVarint(ref.number);
    w_.PutString(ref.name);
  }

  void Body(const Workload& workload) {
    Meta(workload.metadata);
    const WorkloadSpec& spec = workload.spec;
    w_.PutVarint(spec.replicas);
    w_.PutString(spec.service_account);
    w_.PutVarint(spec.ports.size());
    for (const PortSpec& port : spec.ports) {
      w_.PutString(port.name);
      w_.PutVarint(port.port);
      Enum(port.protocol, kMaxProtocol, "spec.ports.protocol");
    }
    w_.PutVarint(spec.app.index());
    std::visit([this](const auto& app) { App(app); }, spec.app);
  }

  void App(const EchoApp&) {}

  void App(const StaticApp& app) {
    w_.PutVarint(app.status);
    w_.PutString(app.body);
    LabelMap(app.headers);
  }

  void App(const ForwardApp& app) { w_.PutString(app.address); }

  void Env(const std::vector<EnvVar>& env) {
    w_.PutVarint(env.size());
    for (const EnvVar& var : env) {
      w_.PutString(var.name);
      w_.PutString(var.value);
    }
  }

  void OptionalProbe(const HeapOptional<Probe>& optional) {
    w_.PutByte(optional.has_value() ? 1 : 0);
    if (optional) {
      const Probe& probe = *optional;
      Enum(probe.kind, kMaxProbeKind, "spec.app.exec.readinessProbe.kind");
      PortRefBody(probe.port);
      w_.PutString(probe.path);
      w_.PutVarint(probe.initial_delay_seconds);
      w_.PutVarint(probe.period_seconds);
      w_.PutVarint(probe.timeout_seconds);
      w_.PutVarint(probe.failure_threshold);
      w_.PutVarint(probe.success_threshold);
    }
  }

  void App(const ExecApp& app) {
    Strings(app.command);
    Env(app.env);
    w_.PutString(app.working_dir);
    Enum(app.restart_policy, kMaxRestartPolicy, "spec.app.exec.restartPolicy");
    OptionalProbe(app.readiness_probe);
    w_.PutVarint(app.termination_grace_period_seconds);
    if (version_ >= 2) Sandbox(*app.sandbox);  // version 2 reads it whenever it is >= 2
    if (version_ >= 4) {
      // Version 4: the first container's name, then each further container.
      w_.PutString(app.containers->name);
      w_.PutVarint(app.containers->more.size());
      for (const ExecContainer& c : app.containers->more) {
        w_.PutString(c.name);
        Strings(c.command);
        Env(c.env);
        w_.PutString(c.working_dir);
        OptionalProbe(c.readiness_probe);
      }
    }
  }

  void Sandbox(const ExecSandbox& sandbox) {
    const SecurityContext& context = sandbox.security_context;
    OptionalVarint(context.run_as_user);
    OptionalVarint(context.run_as_group);
    w_.PutByte(context.run_as_non_root.has_value() ? 1 : 0);
    if (context.run_as_non_root) w_.PutByte(*context.run_as_non_root ? 1 : 0);
    w_.PutVarint(sandbox.limits.memory_bytes);
    w_.PutVarint(sandbox.limits.cpu_millis);
    w_.PutVarint(sandbox.limits.pids);
    w_.PutByte(sandbox.keep_working_dir ? 1 : 0);
  }

  void OptionalVarint(const std::optional<uint32_t>& value) {
    w_.PutByte(value.has_value() ? 1 : 0);
    if (value) w_.PutVarint(*value);
  }

  void Body(const Service& service) {
    Meta(service.metadata);
    LabelMap(service.selector);
    w_.PutVarint(service.ports.size());
    for (const ServicePort& port : service.ports) {
      w_.PutString(port.name);
      w_.PutVarint(port.port);
      PortRefBody(port.target_port);
      Enum(port.protocol, kMaxProtocol, "ports.protocol");
    }
  }

  void Body(const AuthorizationPolicy& policy) {
    Meta(policy.metadata);
    LabelMap(policy.selector);
    Enum(policy.action, kMaxPolicyAction, "action");
    w_.PutVarint(policy.rules.size());
    for (const PolicyRule& rule : policy.rules) {
      w_.PutVarint(rule.from.size());
      for (const PolicySource& source : rule.from) {
        Strings(source.principals);
        Strings(source.not_principals);
        Strings(source.namespaces);
        Strings(source.not_namespaces);
        if (version_ >= 3) {
          Strings(source.service_accounts);
          Strings(source.not_service_accounts);
          Strings(source.ip_blocks);
          Strings(source.not_ip_blocks);
          Strings(source.remote_ip_blocks);
          Strings(source.not_remote_ip_blocks);
          Strings(source.request_principals);
          Strings(source.not_request_principals);
        }
      }
      w_.PutVarint(rule.to.size());
      for (const PolicyOperation& operation : rule.to) {
        Ports(operation.ports);
        Ports(operation.not_ports);
        if (version_ >= 3) {
          Strings(operation.hosts);
          Strings(operation.not_hosts);
          Strings(operation.methods);
          Strings(operation.not_methods);
          Strings(operation.paths);
          Strings(operation.not_paths);
        }
      }
      if (version_ >= 3) {
        w_.PutVarint(rule.when.size());
        for (const PolicyCondition& condition : rule.when) {
          w_.PutString(condition.key);
          Strings(condition.values);
          Strings(condition.not_values);
        }
      }
    }
  }

  void Body(const Namespace& ns) { Meta(ns.metadata); }
  void Body(const ServiceAccount& account) { Meta(account.metadata); }

  void Body(const PeerAuthentication& peer) {
    Meta(peer.metadata);
    LabelMap(peer.selector);
    Enum(peer.mode, kMaxMtlsMode, "mtls.mode");
    w_.PutVarint(peer.port_level.size());
    for (const auto& [port, mode] : peer.port_level) {
      w_.PutVarint(port);
      Enum(mode, kMaxMtlsMode, "portLevelMtls.mode");
    }
  }

  void Body(const WorkloadEntry& entry) {
    Meta(entry.metadata);
    w_.PutString(entry.address);
    LabelMap(entry.labels);
    w_.PutString(entry.service_account);
    w_.PutVarint(entry.ports.size());
    for (const auto& [name, port] : entry.ports) {
      w_.PutString(name);
      w_.PutVarint(port);
    }
    w_.PutVarint(entry.hbone_port);
  }

  ByteWriter w_;
  uint8_t version_ = 0;  // of the object being written
  std::string error_;
};

// Reads an object; every method returns false once the reader has failed.
class Decoder {
 public:
  // `v3_without_default_sandbox`: read a version 3 exec app as builds before
  // version 4 wrote it when its sandbox was at its defaults: without one.
  explicit Decoder(ByteReader* r, bool v3_without_default_sandbox = false)
      : r_(*r), v3_without_default_sandbox_(v3_without_default_sandbox) {}

  bool Object(workloads::Object* object) {
    if (!r_.ReadByte(&version_, "format version")) return false;
    if (version_ < kOldestObjectFormatVersion || version_ > kObjectFormatVersion) {
      return r_.Fail("format version", "unsupported object format version " +
                                           std::to_string(version_) + " (this build reads " +
                                           std::to_string(kOldestObjectFormatVersion) + " to " +
                                           std::to_string(kObjectFormatVersion) + ")");
    }
    uint64_t kind = 0;
    if (!r_.ReadBounded(&kind, kMaxKind, "kind")) return false;
    if (kind > static_cast<uint64_t>(Kind::kAuthorizationPolicy) && version_ < 3) {
      return r_.Fail("kind", "kind " + std::to_string(kind) + " needs format version 3");
    }
    bool ok = false;
    switch (static_cast<Kind>(kind)) {
      case Kind::kWorkload:
        ok = Body(&object->emplace<Workload>());
        break;
      case Kind::kService:
        ok = Body(&object->emplace<Service>());
        break;
      case Kind::kAuthorizationPolicy:
        ok = Body(&object->emplace<AuthorizationPolicy>());
        break;
      case Kind::kNamespace:
        ok = Meta(&object->emplace<Namespace>().metadata);
        break;
      case Kind::kServiceAccount:
        ok = Meta(&object->emplace<ServiceAccount>().metadata);
        break;
      case Kind::kPeerAuthentication:
        ok = Body(&object->emplace<PeerAuthentication>());
        break;
      case Kind::kWorkloadEntry:
        ok = Body(&object->emplace<WorkloadEntry>());
        break;
    }
    if (!ok) return false;
    if (version_ < 3) return true;
    return std::visit([this](auto& o) { return MetaExtras(&o.metadata); }, *object);
  }

 private:
  template <typename E>
  bool Enum(E* value, uint64_t max, const char* what) {
    uint64_t raw = 0;
    if (!r_.ReadBounded(&raw, max, what)) return false;
    *value = static_cast<E>(raw);
    return true;
  }

  // Keys must be strictly ascending, as EncodeObject writes them from a
  // std::map: this refuses duplicates and lets each insert be O(1) at the end.
  bool LabelMap(std::map<std::string, std::string>* map, const char* what) {
    size_t count = 0;
    if (!r_.ReadCount(&count, 2, what)) return false;
    map->clear();
    for (size_t i = 0; i < count; ++i) {
      std::string key;
      std::string value;
      const size_t key_offset = r_.position();
      if (!r_.ReadString(&key, what) || !r_.ReadString(&value, what)) return false;
      if (!map->empty() && !(map->rbegin()->first < key)) {
        return r_.FailAt(key_offset, what,
                         "key \"" + Printable(key) +
                             "\" is a duplicate or out of order (keys must be strictly ascending)");
      }
      map->emplace_hint(map->end(), std::move(key), std::move(value));
    }
    return true;
  }

  bool Strings(std::vector<std::string>* list, const char* what) {
    size_t count = 0;
    if (!r_.ReadCount(&count, 1, what)) return false;
    list->resize(count);
    for (std::string& s : *list) {
      if (!r_.ReadString(&s, what)) return false;
    }
    return true;
  }

  bool Ports(std::vector<uint16_t>* list, const char* what) {
    size_t count = 0;
    if (!r_.ReadCount(&count, 1, what)) return false;
    list->resize(count);
    for (uint16_t& port : *list) {
      if (!r_.ReadU16(&port, what)) return false;
    }
    return true;
  }

  bool Meta(ObjectMeta* meta) {
    return r_.ReadString(&meta->name, "metadata.name") &&
           r_.ReadString(&meta->ns, "metadata.namespace") &&
           LabelMap(&meta->labels, "metadata.labels");
  }

  bool PortRefBody(PortRef* ref, const char* number_what, const char* name_what) {
    return r_.ReadU16(&ref->number, number_what) && r_.ReadString(&ref->name, name_what);
  }

  bool Body(Workload* workload) {
    if (!Meta(&workload->metadata)) return false;
    WorkloadSpec& spec = workload->spec;
    size_t port_count = 0;
    if (!r_.ReadU32(&spec.replicas, "spec.replicas") ||
        !r_.ReadString(&spec.service_account, "spec.serviceAccount") ||
        !r_.ReadCount(&port_count, 3, "spec.ports")) {
      return false;
    }
    spec.ports.resize(port_count);
    for (PortSpec& port : spec.ports) {
      if (!r_.ReadString(&port.name, "spec.ports.name") ||
          !r_.ReadU16(&port.port, "spec.ports.port") ||
          !Enum(&port.protocol, kMaxProtocol, "spec.ports.protocol")) {
        return false;
      }
    }
    uint64_t app_index = 0;
    if (!r_.ReadBounded(&app_index, kMaxAppIndex, "spec.app")) return false;
    switch (app_index) {
      case 0:
        spec.app.emplace<EchoApp>();
        return true;
      case 1:
        return App(&spec.app.emplace<StaticApp>());
      case 2:
        return App(&spec.app.emplace<ForwardApp>());
      case 3:
        return App(&spec.app.emplace<ExecApp>());
    }
    return r_.Fail("spec.app", "unknown app kind");
  }

  bool App(StaticApp* app) {
    return r_.ReadU16(&app->status, "spec.app.static.status") &&
           r_.ReadString(&app->body, "spec.app.static.body") &&
           LabelMap(&app->headers, "spec.app.static.headers");
  }

  bool App(ForwardApp* app) { return r_.ReadString(&app->address, "spec.app.forward.address"); }

  bool Env(std::vector<EnvVar>* env) {
    size_t env_count = 0;
    if (!r_.ReadCount(&env_count, 2, "spec.app.exec.env")) return false;
    env->resize(env_count);
    for (EnvVar& var : *env) {
      if (!r_.ReadString(&var.name, "spec.app.exec.env.name") ||
          !r_.ReadString(&var.value, "spec.app.exec.env.value")) {
        return false;
      }
    }
    return true;
  }

  bool OptionalProbe(HeapOptional<Probe>* optional) {
    uint8_t has_probe = 0;
    if (!r_.ReadByte(&has_probe, "spec.app.exec.readinessProbe")) return false;
    if (has_probe > 1) {
      return r_.Fail("spec.app.exec.readinessProbe",
                     "presence flag " + std::to_string(has_probe) + " is neither 0 nor 1");
    }
    if (has_probe == 0) {
      optional->reset();
      return true;
    }
    Probe& probe = optional->emplace();
    return Enum(&probe.kind, kMaxProbeKind, "spec.app.exec.readinessProbe.kind") &&
           PortRefBody(&probe.port, "spec.app.exec.readinessProbe.port",
                       "spec.app.exec.readinessProbe.port") &&
           r_.ReadString(&probe.path, "spec.app.exec.readinessProbe.path") &&
           r_.ReadU32(&probe.initial_delay_seconds,
                      "spec.app.exec.readinessProbe.initialDelaySeconds") &&
           r_.ReadU32(&probe.period_seconds, "spec.app.exec.readinessProbe.periodSeconds") &&
           r_.ReadU32(&probe.timeout_seconds, "spec.app.exec.readinessProbe.timeoutSeconds") &&
           r_.ReadU32(&probe.failure_threshold, "spec.app.exec.readinessProbe.failureThreshold") &&
           r_.ReadU32(&probe.success_threshold, "spec.app.exec.readinessProbe.successThreshold");
  }

  bool App(ExecApp* app) {
    if (!Strings(&app->command, "spec.app.exec.command") || !Env(&app->env) ||
        !r_.ReadString(&app->working_dir, "spec.app.exec.workingDir") ||
        !Enum(&app->restart_policy, kMaxRestartPolicy, "spec.app.exec.restartPolicy") ||
        !OptionalProbe(&app->readiness_probe)) {
      return false;
    }
    if (!r_.ReadU32(&app->termination_grace_period_seconds,
                    "spec.app.exec.terminationGracePeriodSeconds")) {
      return false;
    }
    if (version_ < 2) return true;  // no sandbox: every setting at its default
    if (version_ == 3 && v3_without_default_sandbox_) return true;
    if (!Sandbox(app)) return false;
    if (version_ < 4) return true;  // one container
    ExecContainers containers;
    size_t count = 0;
    // A container takes at least 5 bytes (name, command, env, workingDir, probe flag).
    if (!r_.ReadString(&containers.name, "spec.app.exec.name") ||
        !r_.ReadCount(&count, 5, "spec.app.exec.containers")) {
      return false;
    }
    containers.more.resize(count);
    for (ExecContainer& c : containers.more) {
      if (!r_.ReadString(&c.name, "spec.app.exec.containers.name") ||
          !Strings(&c.command, "spec.app.exec.containers.command") || !Env(&c.env) ||
          !r_.ReadString(&c.working_dir, "spec.app.exec.containers.workingDir") ||
          !OptionalProbe(&c.readiness_probe)) {
        return false;
      }
    }
    app->containers = std::move(containers);
    return true;
  }

  bool Sandbox(ExecApp* app) {
    ExecSandbox sandbox;
    SecurityContext& context = sandbox.security_context;
    ResourceLimits& limits = sandbox.limits;
    if (!OptionalU32(&context.run_as_user, "spec.app.exec.securityContext.runAsUser") ||
        !OptionalU32(&context.run_as_group, "spec.app.exec.securityContext.runAsGroup") ||
        !OptionalBool(&context.run_as_non_root, "spec.app.exec.securityContext.runAsNonRoot") ||
        !r_.ReadVarint(&limits.memory_bytes, "spec.app.exec.resources.limits.memory") ||
        !r_.ReadU32(&limits.cpu_millis, "spec.app.exec.resources.limits.cpu") ||
        !r_.ReadU32(&limits.pids, "spec.app.exec.resources.limits.pids") ||
        !Bool(&sandbox.keep_working_dir, "spec.app.exec.keepWorkingDir")) {
      return false;
    }
    app->sandbox = std::move(sandbox);
    return true;
  }

  // A byte that must be 0 or 1 (a bool, or an optional's presence flag).
  bool Bool(bool* value, const char* what) {
    uint8_t byte = 0;
    if (!r_.ReadByte(&byte, what)) return false;
    if (byte > 1) {
      return r_.FailAt(r_.position() - 1, what,
                       "value " + std::to_string(byte) + " is neither 0 nor 1");
    }
    *value = byte == 1;
    return true;
  }

  bool OptionalU32(std::optional<uint32_t>* value, const char* what) {
    bool present = false;
    if (!Bool(&present, what)) return false;
    value->reset();
    if (!present) return true;
    uint32_t v = 0;
    if (!r_.ReadU32(&v, what)) return false;
    *value = v;
    return true;
  }

  bool OptionalBool(std::optional<bool>* value, const char* what) {
    bool present = false;
    if (!Bool(&present, what)) return false;
    value->reset();
    if (!present) return true;
    bool v = false;
    if (!Bool(&v, what)) return false;
    *value = v;
    return true;
  }

  bool Body(Service* service) {
    size_t port_count = 0;
    if (!Meta(&service->metadata) || !LabelMap(&service->selector, "selector") ||
        !r_.ReadCount(&port_count, 5, "ports")) {
      return false;
    }
    service->ports.resize(port_count);
    for (ServicePort& port : service->ports) {
      if (!r_.ReadString(&port.name, "ports.name") || !r_.ReadU16(&port.port, "ports.port") ||
          !PortRefBody(&port.target_port, "ports.targetPort", "ports.targetPort") ||
          !Enum(&port.protocol, kMaxProtocol, "ports.protocol")) {
        return false;
      }
    }
    return true;
  }

  bool Body(AuthorizationPolicy* policy) {
    size_t rule_count = 0;
    if (!Meta(&policy->metadata) || !LabelMap(&policy->selector, "selector.matchLabels") ||
        !Enum(&policy->action, kMaxPolicyAction, "action") ||
        !r_.ReadCount(&rule_count, 2, "rules")) {
      return false;
    }
    policy->rules.resize(rule_count);
    for (PolicyRule& rule : policy->rules) {
      size_t from_count = 0;
      if (!r_.ReadCount(&from_count, 4, "rules.from")) return false;
      rule.from.resize(from_count);
      for (PolicySource& source : rule.from) {
        if (!Strings(&source.principals, "rules.from.source.principals") ||
            !Strings(&source.not_principals, "rules.from.source.notPrincipals") ||
            !Strings(&source.namespaces, "rules.from.source.namespaces") ||
            !Strings(&source.not_namespaces, "rules.from.source.notNamespaces")) {
          return false;
        }
        if (version_ >= 3 &&
            !(Strings(&source.service_accounts, "rules.from.source.serviceAccounts") &&
              Strings(&source.not_service_accounts, "rules.from.source.notServiceAccounts") &&
              Strings(&source.ip_blocks, "rules.from.source.ipBlocks") &&
              Strings(&source.not_ip_blocks, "rules.from.source.notIpBlocks") &&
              Strings(&source.remote_ip_blocks, "rules.from.source.remoteIpBlocks") &&
              Strings(&source.not_remote_ip_blocks, "rules.from.source.notRemoteIpBlocks") &&
              Strings(&source.request_principals, "rules.from.source.requestPrincipals") &&
              Strings(&source.not_request_principals, "rules.from.source.notRequestPrincipals"))) {
          return false;
        }
      }
      size_t to_count = 0;
      if (!r_.ReadCount(&to_count, 2, "rules.to")) return false;
      rule.to.resize(to_count);
      for (PolicyOperation& operation : rule.to) {
        if (!Ports(&operation.ports, "rules.to.operation.ports") ||
            !Ports(&operation.not_ports, "rules.to.operation.notPorts")) {
          return false;
        }
        if (version_ >= 3 && !(Strings(&operation.hosts, "rules.to.operation.hosts") &&
                               Strings(&operation.not_hosts, "rules.to.operation.notHosts") &&
                               Strings(&operation.methods, "rules.to.operation.methods") &&
                               Strings(&operation.not_methods, "rules.to.operation.notMethods") &&
                               Strings(&operation.paths, "rules.to.operation.paths") &&
                               Strings(&operation.not_paths, "rules.to.operation.notPaths"))) {
          return false;
        }
      }
      if (version_ < 3) continue;
      size_t when_count = 0;
      if (!r_.ReadCount(&when_count, 3, "rules.when")) return false;
      rule.when.resize(when_count);
      for (PolicyCondition& condition : rule.when) {
        if (!r_.ReadString(&condition.key, "rules.when.key") ||
            !Strings(&condition.values, "rules.when.values") ||
            !Strings(&condition.not_values, "rules.when.notValues")) {
          return false;
        }
      }
    }
    return true;
  }

  bool MetaExtras(ObjectMeta* meta) {
    Labels annotations;
    if (!LabelMap(&annotations, "metadata.annotations")) return false;
    if (!annotations.empty()) meta->annotations = std::move(annotations);
    bool applied = false;
    if (!Bool(&applied, "appliedAs")) return false;
    if (!applied) return true;
    AppliedAs& as = meta->applied_as.emplace();
    return r_.ReadString(&as.api_version, "appliedAs.apiVersion") &&
           r_.ReadString(&as.kind, "appliedAs.kind") &&
           r_.ReadString(&as.document, "appliedAs.document");
  }

  bool Body(PeerAuthentication* peer) {
    size_t count = 0;
    if (!Meta(&peer->metadata) || !LabelMap(&peer->selector, "selector.matchLabels") ||
        !Enum(&peer->mode, kMaxMtlsMode, "mtls.mode") ||
        !r_.ReadCount(&count, 2, "portLevelMtls")) {
      return false;
    }
    for (size_t i = 0; i < count; ++i) {
      uint16_t port = 0;
      MtlsMode mode = MtlsMode::kUnset;
      if (!r_.ReadU16(&port, "portLevelMtls.port") ||
          !Enum(&mode, kMaxMtlsMode, "portLevelMtls.mode")) {
        return false;
      }
      if (!peer->port_level.emplace(port, mode).second) {
        return r_.Fail("portLevelMtls", "duplicate port " + std::to_string(port));
      }
    }
    return true;
  }

  bool Body(WorkloadEntry* entry) {
    size_t count = 0;
    if (!Meta(&entry->metadata) || !r_.ReadString(&entry->address, "address") ||
        !LabelMap(&entry->labels, "labels") ||
        !r_.ReadString(&entry->service_account, "serviceAccount") ||
        !r_.ReadCount(&count, 2, "ports")) {
      return false;
    }
    for (size_t i = 0; i < count; ++i) {
      std::string name;
      uint16_t port = 0;
      if (!r_.ReadString(&name, "ports.name") || !r_.ReadU16(&port, "ports.port")) return false;
      if (!entry->ports.emplace(std::move(name), port).second) {
        return r_.Fail("ports", "duplicate port name");
      }
    }
    return r_.ReadU16(&entry->hbone_port, "hbonePort");
  }

  ByteReader& r_;
  uint8_t version_ = 0;  // of the object being read
  bool v3_without_default_sandbox_ = false;
};

}  // namespace

std::string EncodeObject(const Object& object) {
  std::string out;
  Encoder(&out).Object(object);
  return out;
}

Status AppendObject(const Object& object, std::string* out) {
  const size_t original_size = out->size();
  Encoder encoder(out);
  encoder.Object(object);
  if (!encoder.error().empty()) {
    out->resize(original_size);
    const ObjectMeta& meta = MetaOf(object);
    return MakeError(ErrorCode::kInvalidArgument, std::string("cannot encode ") +
                                                      KindName(KeyOf(object).kind) + " " + meta.ns +
                                                      "/" + meta.name + ": " + encoder.error());
  }
  return {};
}

namespace {

Result<Object> Decode(std::string_view bytes, bool v3_without_default_sandbox) {
  ByteReader reader(bytes);
  Object object;
  if (Decoder(&reader, v3_without_default_sandbox).Object(&object) && !reader.at_end()) {
    reader.Fail("object", std::to_string(reader.remaining()) + " trailing bytes after the object");
  }
  if (!reader.ok()) {
    return MakeError(ErrorCode::kInvalidArgument, "object encoding: " + reader.error());
  }
  return object;
}

}  // namespace

Result<Object> DecodeObject(std::string_view bytes) {
  Result<Object> object = Decode(bytes, false);
  if (object.ok() || bytes.empty() || bytes[0] != 3) return object;
  // Builds before version 4 wrote a version 3 exec app (one applied as a
  // Kubernetes kind) without its sandbox when that was at its defaults, and
  // read it back expecting one: such stored state loads this way. Only an
  // exec app whose sandbox is all defaults can decode so.
  Result<Object> legacy = Decode(bytes, true);
  if (legacy.ok()) {
    const auto* w = std::get_if<Workload>(&*legacy);
    const auto* exec = w != nullptr ? std::get_if<ExecApp>(&w->spec.app) : nullptr;
    if (exec != nullptr && exec->sandbox.is_default()) return legacy;
  }
  return object;
}

}  // namespace podless::workloads
