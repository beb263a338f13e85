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

#include "workloads/quantity.h"

namespace podless::workloads {
namespace {

using Path = std::string;

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

std::string Join(const Path& path, std::string_view name) {
  return path.empty() ? std::string(name) : path + "." + std::string(name);
}
std::string Index(const Path& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }
std::string Key(const Path& path, const std::string& key) { return path + "[" + key + "]"; }

bool IsPlain(const YAML::Node& node) { return node.Tag() == "?"; }

bool IsDecimal(std::string_view text, bool allow_sign) {
  if (allow_sign && !text.empty() && (text.front() == '-' || text.front() == '+')) {
    text.remove_prefix(1);
  }
  if (text.empty()) return false;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
  }
  return true;
}

bool LooksLikeFloat(std::string_view text) {
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) text.remove_prefix(1);
  bool digits = false;
  bool dot = false;
  bool exponent = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char ch = text[i];
    if (ch >= '0' && ch <= '9') {
      digits = true;
    } else if (ch == '.' && !dot && !exponent) {
      dot = true;
    } else if ((ch == 'e' || ch == 'E') && digits && !exponent) {
      exponent = true;
      if (i + 1 < text.size() && (text[i + 1] == '-' || text[i + 1] == '+')) ++i;
    } else {
      return false;
    }
  }
  return digits;
}

// What a node is, for "expected X, got Y" messages.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Scalar:
      break;
    default:
      return "nothing";
  }
  const std::string& text = node.Scalar();
  if (!IsPlain(node)) return "string " + QuoteForMessage(text);
  if (IsDecimal(text, true)) return "integer " + text;
  if (LooksLikeFloat(text)) return "number " + text;
  static const char* const kBooleans[] = {"true", "false", "True", "False", "TRUE", "FALSE",
                                          "yes",  "no",    "Yes",  "No",    "on",   "off"};
  for (const char* b : kBooleans) {
    if (text == b) return "boolean " + text;
  }
  return "string " + QuoteForMessage(text);
}

std::string JoinNames(std::initializer_list<const char*> names) {
  std::string out;
  for (const char* name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

std::string RangeMessage(int64_t low, int64_t high, std::string_view got) {
  return "must be between " + std::to_string(low) + " and " + std::to_string(high) + ", got " +
         std::string(got);
}

// The entries of one YAML mapping, after key checks.
struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};
struct Fields {
  YAML::Node node;
  Path path;
  std::vector<Entry> entries;
  const Entry* Find(std::string_view key) const {
    for (const Entry& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
};

// Reads one document into a model object. Problems go to `errors_`, each
// with the mark of the node concerned; the marks of all fields seen are kept
// so that Validate()'s field paths can be located afterwards.
class DocumentReader {
 public:
  DocumentReader(std::string_view file, size_t& budget) : file_(file), budget_(budget) {}

  std::optional<Object> Read(const YAML::Node& root);

  // The Diagnostic for a Validate() finding: at the node of its field, or of
  // the nearest enclosing field that exists (the parent of a missing field).
  SourceLocation Locate(const std::string& field) const;

  std::vector<Diagnostic>& errors() { return errors_; }

 private:
  SourceLocation Where(const YAML::Mark& mark) const {
    SourceLocation where;
    where.file = file_;
    if (!mark.is_null() && mark.line >= 0 && mark.column >= 0) {
      where.line = mark.line + 1;
      where.column = mark.column + 1;
    }
    return where;
  }
  void Error(const Path& path, const YAML::Mark& mark, std::string message) {
    errors_.push_back(Diagnostic{Where(mark), path, std::move(message)});
  }
  void Record(const Path& path, const YAML::Mark& mark) { marks_.emplace(path, mark); }
  // A null node ("app:" with nothing after it) has no useful mark of its own;
  // its field's key stands in for it.
  YAML::Mark MarkFor(const Path& path, const YAML::Node& node) const {
    if (!node.IsNull()) return node.Mark();
    auto it = marks_.find(path);
    return it != marks_.end() ? it->second : root_mark_;
  }

  // Guards against alias bombs: anchors let a small text expand to a huge
  // tree, so the number of nodes visited is capped by a budget per input.
  bool Spend() {
    if (budget_ == 0) {
      if (!exhausted_reported_) {
        exhausted_reported_ = true;
        errors_.push_back(Diagnostic{Where(root_mark_), "",
                                     "document too large: its aliases expand to too many nodes"});
      }
      return false;
    }
    --budget_;
    return true;
  }

  std::optional<Fields> ReadMapping(const YAML::Node& node, const Path& path,
                                    std::initializer_list<const char*> allowed);
  void ReadString(const YAML::Node& node, const Path& path, std::string& out);
  template <typename T>
  void ReadInt(const YAML::Node& node, const Path& path, int64_t low, int64_t high, T& out);
  template <typename T>
  void ReadEnum(const YAML::Node& node, const Path& path,
                std::initializer_list<std::pair<const char*, T>> values, T& out);
  void ReadStringList(const YAML::Node& node, const Path& path, std::vector<std::string>& out);
  void ReadStringMap(const YAML::Node& node, const Path& path,
                     std::map<std::string, std::string>& out);
  void ReadPortRef(const YAML::Node& node, const Path& path, PortRef& out);
  void ReadPortList(const YAML::Node& node, const Path& path, std::vector<uint16_t>& out);
  void ReadProtocol(const YAML::Node& node, const Path& path, Protocol& out);
  // true or false, unquoted, in YAML 1.2's spellings (true, True, TRUE).
  template <typename T>
  void ReadBool(const YAML::Node& node, const Path& path, T& out);
  // Calls `item` for every element of a sequence (null counts as empty).
  template <typename F>
  void ForEach(const YAML::Node& node, const Path& path, const char* what, F&& item);

  void ReadMeta(const YAML::Node& node, ObjectMeta& meta);
  void ReadWorkloadSpec(const YAML::Node& node, WorkloadSpec& spec);
  void ReadApp(const YAML::Node& node, const Path& path, AppSpec& app);
  void ReadExec(const YAML::Node& node, const Path& path, ExecApp& exec);
  void ReadProbe(const YAML::Node& node, const Path& path, Probe& probe);
  void ReadSecurityContext(const YAML::Node& node, const Path& path, SecurityContext& out);
  void ReadLimits(const YAML::Node& node, const Path& path, ResourceLimits& out);
  void ReadServiceSpec(const YAML::Node& node, Service& service);
  void ReadPolicySpec(const YAML::Node& node, AuthorizationPolicy& policy);
  void ReadRule(const YAML::Node& node, const Path& path, PolicyRule& rule);
  void ReadSource(const YAML::Node& node, const Path& path, PolicySource& source);
  void ReadOperation(const YAML::Node& node, const Path& path, PolicyOperation& op);

  std::string file_;
  size_t& budget_;
  bool exhausted_reported_ = false;
  YAML::Mark root_mark_;
  std::vector<Diagnostic> errors_;
  std::map<std::string, YAML::Mark> marks_;
};

std::optional<Fields> DocumentReader::ReadMapping(const YAML::Node& node, const Path& path,
                                                  std::initializer_list<const char*> allowed) {
  if (!Spend()) return std::nullopt;
  Fields fields{node, path, {}};
  if (node.IsNull()) return fields;
  if (!node.IsMap()) {
    Error(path, node.Mark(), "expected a mapping, got " + Describe(node));
    return std::nullopt;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!Spend()) return std::nullopt;
    YAML::Node key = it->first;  // copies: `it->` is a temporary proxy
    YAML::Node value = it->second;
    if (!key.IsScalar()) {
      Error(path, key.Mark(), "expected a field name, got " + Describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    Path child = Join(path, name);
    if (const Entry* first = fields.Find(name)) {
      Error(child, key.Mark(),
            "duplicate field " + QuoteForMessage(name) + " (first at line " +
                std::to_string(first->key_node.Mark().line + 1) + ")");
      continue;
    }
    bool known = false;
    for (const char* a : allowed) known = known || name == a;
    if (!known) {
      Error(child, key.Mark(),
            "unknown field " + QuoteForMessage(name) +
                (allowed.size() == 0 ? std::string("; this mapping takes no fields")
                                     : "; allowed fields: " + JoinNames(allowed)));
      continue;
    }
    // A field with no value ("name:") has no place of its own; use the key's.
    Record(child, value.IsNull() ? key.Mark() : value.Mark());
    fields.entries.push_back(Entry{name, key, value});
  }
  return fields;
}

void DocumentReader::ReadString(const YAML::Node& node, const Path& path, std::string& out) {
  if (node.IsNull()) return;
  if (!node.IsScalar()) {
    Error(path, node.Mark(), "expected a string, got " + Describe(node));
    return;
  }
  out = node.Scalar();
}

template <typename T>
void DocumentReader::ReadInt(const YAML::Node& node, const Path& path, int64_t low, int64_t high,
                             T& out) {
  if (node.IsNull()) return;
  const std::string& text = node.Scalar();
  if (!node.IsScalar() || !IsPlain(node) || !IsDecimal(text, true)) {
    Error(path, node.Mark(), "expected an integer, got " + Describe(node));
    return;
  }
  int64_t value = 0;
  const char* begin = text.data() + (text.front() == '+' ? 1 : 0);
  auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
  if (ec != std::errc() || value < low || value > high) {
    Error(path, node.Mark(), RangeMessage(low, high, text));
    return;
  }
  out = static_cast<T>(value);
}

template <typename T>
void DocumentReader::ReadEnum(const YAML::Node& node, const Path& path,
                              std::initializer_list<std::pair<const char*, T>> values, T& out) {
  if (node.IsNull()) return;
  std::string allowed;
  for (const auto& [name, value] : values) {
    if (node.IsScalar() && node.Scalar() == name) {
      out = value;
      return;
    }
    if (!allowed.empty()) allowed += ", ";
    allowed += name;
  }
  Error(path, node.Mark(),
        "unsupported value: must be one of " + allowed + ", got " + Describe(node));
}

void DocumentReader::ReadProtocol(const YAML::Node& node, const Path& path, Protocol& out) {
  ReadEnum<Protocol>(node, path, {{"TCP", Protocol::kTCP}, {"HTTP", Protocol::kHTTP}}, out);
}

template <typename T>
void DocumentReader::ReadBool(const YAML::Node& node, const Path& path, T& out) {
  if (node.IsNull()) return;
  if (node.IsScalar() && IsPlain(node)) {
    const std::string& text = node.Scalar();
    for (const char* word : {"true", "True", "TRUE"}) {
      if (text == word) {
        out = true;
        return;
      }
    }
    for (const char* word : {"false", "False", "FALSE"}) {
      if (text == word) {
        out = false;
        return;
      }
    }
  }
  Error(path, node.Mark(), "expected a boolean (true or false), got " + Describe(node));
}

template <typename F>
void DocumentReader::ForEach(const YAML::Node& node, const Path& path, const char* what, F&& item) {
  if (node.IsNull()) return;
  if (!node.IsSequence()) {
    Error(path, node.Mark(),
          std::string("expected a sequence of ") + what + ", got " + Describe(node));
    return;
  }
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    if (!Spend()) return;
    YAML::Node element = *it;
    Path child = Index(path, i);
    Record(child, element.Mark());
    item(element, child);
  }
}

void DocumentReader::ReadStringList(const YAML::Node& node, const Path& path,
                                    std::vector<std::string>& out) {
  ForEach(node, path, "strings", [&](const YAML::Node& item, const Path& child) {
    // A placeholder keeps indexes aligned with the manifest for Validate().
    std::string value;
    if (item.IsNull()) {
      Error(child, MarkFor(child, item), "expected a string, got null");
    } else {
      ReadString(item, child, value);
    }
    out.push_back(std::move(value));
  });
}

void DocumentReader::ReadStringMap(const YAML::Node& node, const Path& path,
                                   std::map<std::string, std::string>& out) {
  if (node.IsNull()) return;
  if (!node.IsMap()) {
    Error(path, node.Mark(), "expected a mapping of strings, got " + Describe(node));
    return;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!Spend()) return;
    YAML::Node key = it->first;  // copies: `it->` is a temporary proxy
    YAML::Node value = it->second;
    if (!key.IsScalar()) {
      Error(path, key.Mark(), "expected a string key, got " + Describe(key));
      continue;
    }
    Path child = Key(path, key.Scalar());
    if (out.count(key.Scalar()) != 0) {
      Error(child, key.Mark(), "duplicate key " + QuoteForMessage(key.Scalar()));
      continue;
    }
    // Entries of free-form maps are located at their key: a bad label is
    // usually a bad key, and key and value share a line anyway.
    Record(child, key.Mark());
    std::string text;
    ReadString(value, child, text);
    out.emplace(key.Scalar(), std::move(text));
  }
}

// Kubernetes' IntOrString: a number, or the name of a port.
void DocumentReader::ReadPortRef(const YAML::Node& node, const Path& path, PortRef& out) {
  if (node.IsNull()) return;
  if (!node.IsScalar()) {
    Error(path, node.Mark(), "expected a port number or name, got " + Describe(node));
    return;
  }
  const std::string& text = node.Scalar();
  // Digits are a number even when quoted: port names must contain a letter.
  if (IsDecimal(text, IsPlain(node))) {
    int64_t value = 0;
    const char* begin = text.data() + (text.front() == '+' ? 1 : 0);
    auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
    if (ec != std::errc() || value < 1 || value > 65535) {
      Error(path, node.Mark(), RangeMessage(1, 65535, text));
    } else {
      out.number = static_cast<uint16_t>(value);
    }
    return;
  }
  out.name = text;
}

// Istio writes ports as strings ("8080"); integers are accepted as well.
void DocumentReader::ReadPortList(const YAML::Node& node, const Path& path,
                                  std::vector<uint16_t>& out) {
  ForEach(node, path, "ports", [&](const YAML::Node& item, const Path& child) {
    PortRef ref;
    ReadPortRef(item, child, ref);
    if (item.IsNull()) Error(child, MarkFor(child, item), "expected a port number, got null");
    if (!ref.name.empty()) {
      Error(child, item.Mark(), "expected a port number, got " + Describe(item));
    }
    out.push_back(ref.number);
  });
}

void DocumentReader::ReadMeta(const YAML::Node& node, ObjectMeta& meta) {
  auto fields = ReadMapping(node, "metadata", {"name", "namespace", "labels"});
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path path = Join("metadata", e.key);
    if (e.key == "name") {
      ReadString(e.value, path, meta.name);
    } else if (e.key == "namespace") {
      ReadString(e.value, path, meta.ns);
    } else if (e.key == "labels") {
      ReadStringMap(e.value, path, meta.labels);
    }
  }
}

void DocumentReader::ReadWorkloadSpec(const YAML::Node& node, WorkloadSpec& spec) {
  auto fields = ReadMapping(node, "spec", {"replicas", "serviceAccount", "ports", "app"});
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
        if (auto p = ReadMapping(item, child, {"name", "port", "protocol"})) {
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
  auto fields = ReadMapping(node, path, {"echo", "static", "forward", "exec"});
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
    if (auto f = ReadMapping(e.value, child, {"status", "body", "headers"})) {
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
    if (auto m = ReadMapping(e.value, child, {"address"})) {
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

void DocumentReader::ReadExec(const YAML::Node& node, const Path& path, ExecApp& exec) {
  auto fields = ReadMapping(
      node, path,
      {"command", "env", "workingDir", "restartPolicy", "readinessProbe",
       "terminationGracePeriodSeconds", "securityContext", "resources", "keepWorkingDir"});
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path child = Join(path, e.key);
    if (e.key == "command") {
      ReadStringList(e.value, child, exec.command);
    } else if (e.key == "env") {
      ForEach(e.value, child, "environment variables",
              [&](const YAML::Node& item, const Path& item_path) {
                EnvVar var;
                if (auto f = ReadMapping(item, item_path, {"name", "value"})) {
                  if (const Entry* x = f->Find("name")) {
                    ReadString(x->value, Join(item_path, "name"), var.name);
                  }
                  if (const Entry* x = f->Find("value")) {
                    ReadString(x->value, Join(item_path, "value"), var.value);
                  }
                }
                exec.env.push_back(std::move(var));
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
      auto r = ReadMapping(e.value, child, {"limits"});
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
  auto fields = ReadMapping(node, path, {"runAsUser", "runAsGroup", "runAsNonRoot"});
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
  auto fields = ReadMapping(node, path, {"memory", "cpu", "pids"});
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

void DocumentReader::ReadProbe(const YAML::Node& node, const Path& path, Probe& probe) {
  auto fields = ReadMapping(node, path,
                            {"tcpSocket", "httpGet", "initialDelaySeconds", "periodSeconds",
                             "timeoutSeconds", "failureThreshold", "successThreshold"});
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
      auto h = http ? ReadMapping(e.value, child, {"port", "path"})
                    : ReadMapping(e.value, child, {"port"});
      if (!h) continue;
      if (const Entry* x = h->Find("port")) ReadPortRef(x->value, Join(child, "port"), probe.port);
      if (const Entry* x = h->Find("path")) ReadString(x->value, Join(child, "path"), probe.path);
    } else if (e.key == "initialDelaySeconds") {
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
  if (handler == nullptr) {
    Error(path, MarkFor(path, node), "must set exactly one of tcpSocket, httpGet");
  }
}

void DocumentReader::ReadServiceSpec(const YAML::Node& node, Service& service) {
  auto fields = ReadMapping(node, "spec", {"selector", "ports"});
  if (!fields) return;
  if (const Entry* e = fields->Find("selector")) {
    ReadStringMap(e->value, "spec.selector", service.selector);
  }
  if (const Entry* e = fields->Find("ports")) {
    ForEach(e->value, "spec.ports", "ports", [&](const YAML::Node& item, const Path& child) {
      ServicePort port;
      if (auto p = ReadMapping(item, child, {"name", "port", "targetPort", "protocol"})) {
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
  auto fields = ReadMapping(node, "spec", {"selector", "action", "rules"});
  if (!fields) return;
  if (const Entry* e = fields->Find("selector")) {
    if (auto s = ReadMapping(e->value, "spec.selector", {"matchLabels"})) {
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
  auto fields = ReadMapping(node, path, {"from", "to", "when"});
  if (!fields) return;
  if (const Entry* e = fields->Find("from")) {
    ForEach(e->value, Join(path, "from"), "sources",
            [&](const YAML::Node& item, const Path& child) {
              PolicySource source;
              if (auto f = ReadMapping(item, child, {"source"})) {
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
              if (auto f = ReadMapping(item, child, {"operation"})) {
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
              if (auto f = ReadMapping(item, child, {"key", "values", "notValues"})) {
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
  auto m =
      ReadMapping(node, path,
                  {"principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts",
                   "notServiceAccounts", "ipBlocks", "notIpBlocks", "remoteIpBlocks",
                   "notRemoteIpBlocks", "requestPrincipals", "notRequestPrincipals"});
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
  auto m = ReadMapping(
      node, path,
      {"ports", "notPorts", "hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"});
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

std::optional<Object> DocumentReader::Read(const YAML::Node& root) {
  root_mark_ = root.Mark();
  Record("", root.Mark());
  if (!root.IsMap()) {
    Error("", root.Mark(),
          "expected a mapping with apiVersion, kind, metadata and spec, got " + Describe(root));
    return std::nullopt;
  }
  // `status` is output only (what `podless get -o yaml` prints); it is
  // accepted and ignored so that output can be applied again, as kubectl does.
  auto fields = ReadMapping(root, "", {"apiVersion", "kind", "metadata", "spec", "status"});
  if (!fields) return std::nullopt;

  const Entry* api_version = fields->Find("apiVersion");
  if (api_version == nullptr) {
    Error("apiVersion", root.Mark(),
          std::string("missing required field \"apiVersion\" (") + kApiVersion + ")");
  } else if (!api_version->value.IsScalar() || api_version->value.Scalar() != kApiVersion) {
    Error("apiVersion", api_version->value.Mark(),
          std::string("unsupported apiVersion: expected ") + kApiVersion + ", got " +
              Describe(api_version->value));
  }

  std::optional<Kind> kind;
  const Entry* kind_entry = fields->Find("kind");
  if (kind_entry == nullptr) {
    Error("kind", root.Mark(),
          "missing required field \"kind\" (Workload, Service or AuthorizationPolicy)");
  } else {
    const YAML::Node& k = kind_entry->value;
    for (Kind candidate : {Kind::kWorkload, Kind::kService, Kind::kAuthorizationPolicy}) {
      if (k.IsScalar() && k.Scalar() == KindName(candidate)) kind = candidate;
    }
    if (!kind) {
      Error("kind", k.Mark(),
            "unsupported kind: expected Workload, Service or AuthorizationPolicy, got " +
                Describe(k));
    }
  }

  ObjectMeta meta;
  if (const Entry* m = fields->Find("metadata")) ReadMeta(m->value, meta);
  // The spec cannot be read without knowing what it describes.
  if (!kind) return std::nullopt;

  const Entry* spec = fields->Find("spec");
  YAML::Node spec_node = spec != nullptr ? spec->value : YAML::Node(YAML::NodeType::Null);
  switch (*kind) {
    case Kind::kWorkload: {
      Workload w;
      w.metadata = std::move(meta);
      ReadWorkloadSpec(spec_node, w.spec);
      return Object(std::move(w));
    }
    case Kind::kService: {
      Service s;
      s.metadata = std::move(meta);
      ReadServiceSpec(spec_node, s);
      return Object(std::move(s));
    }
    case Kind::kAuthorizationPolicy: {
      AuthorizationPolicy p;
      p.metadata = std::move(meta);
      ReadPolicySpec(spec_node, p);
      return Object(std::move(p));
    }
  }
  return std::nullopt;
}

SourceLocation DocumentReader::Locate(const std::string& field) const {
  std::string path = field;
  while (true) {
    auto it = marks_.find(path);
    if (it != marks_.end()) return Where(it->second);
    if (path.empty()) return Where(root_mark_);
    // Drop the last component: "a.b[c]" -> "a.b" -> "a".
    size_t cut = path.back() == ']' ? path.rfind('[') : path.rfind('.');
    if (cut == std::string::npos) cut = 0;
    path.resize(cut);
  }
}

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
                           size_t budget) {
  ParseResult result;
  std::vector<ParsedObject> all;           // every readable object, for ValidateBatch
  std::vector<bool> clean;                 // whether all[i] had no problem
  std::vector<SourceLocation> name_where;  // where all[i]'s metadata.name is
  for (const YAML::Node& document : documents) {
    if (document.IsNull()) continue;  // an empty document, e.g. after a trailing ---
    DocumentReader reader(file_name, budget);
    std::optional<Object> object = reader.Read(document);
    std::vector<Diagnostic> errors = std::move(reader.errors());
    if (object) {
      // Validate()'s findings, unless the parser already reported the same
      // field (a wrong type leaves a default value that Validate would
      // report a second time, less clearly).
      size_t parser_errors = errors.size();
      for (Diagnostic& d : Validate(*object)) {
        bool covered = false;
        for (size_t i = 0; i < parser_errors && !covered; ++i) {
          covered = Overlaps(errors[i].field, d.field);
        }
        if (covered) continue;
        d.where = reader.Locate(d.field);
        errors.push_back(std::move(d));
      }
      SourceLocation where = reader.Locate("");
      all.push_back(ParsedObject{std::move(*object), where});
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

ParseResult ParseManifests(std::string_view text, std::string_view file_name) {
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
    return ParseDocuments(UnpackLists(documents), file_name, budget);
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
