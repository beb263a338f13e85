// The reader behind manifest_parser.h: a YAML document read field by field
// into model objects, with every problem located at the node concerned.
// Internal to workloads/: the readers of each family of kinds (podless's own,
// Kubernetes', Istio's) are member functions defined in their own files.
#pragma once

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "workloads/model.h"
#include "workloads/validation.h"

namespace podless::workloads::manifest {

using Path = std::string;

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
// How deep a Kubernetes or Istio document may nest to be kept as applied
// (real ones nest about 12 levels; the copy and the writer recurse).
constexpr int kMaxStoredDepth = 64;

std::string Join(const Path& path, std::string_view name);
std::string Index(const Path& path, size_t i);
std::string Key(const Path& path, const std::string& key);

bool IsPlain(const YAML::Node& node);

bool IsDecimal(std::string_view text, bool allow_sign);

bool LooksLikeFloat(std::string_view text);

// What a node is, for "expected X, got Y" messages.
std::string Describe(const YAML::Node& node);

std::string JoinNames(std::span<const char* const> names);

std::string RangeMessage(int64_t low, int64_t high, std::string_view got);

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
  // `skip_unsupported`: a document of a kind podless does not run is
  // skipped (skipped() says what it was) instead of an error.
  DocumentReader(std::string_view file, size_t& budget, bool skip_unsupported = false)
      : file_(file), budget_(budget), skip_unsupported_(skip_unsupported) {}

  std::optional<Object> Read(const YAML::Node& root);

  // Fields accepted and kept but not acted on ("image": there is no
  // container runtime), each reported once, located like errors.
  std::vector<Diagnostic>& warnings() { return warnings_; }
  const std::optional<SkippedDocument>& skipped() const { return skipped_; }

  // The readers of each kind, by family (see Kinds() in manifest_parser.cc):
  // given the document's top-level fields and its metadata, they set `out`.
  // podless.dev/v1alpha1 and the Istio AuthorizationPolicy (manifest_parser.cc)
  void ReadWorkload(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadService(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadPolicy(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  // v1 Namespace and ServiceAccount (manifest_parser.cc)
  void ReadNamespace(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadServiceAccount(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  // security.istio.io PeerAuthentication, networking.istio.io WorkloadEntry
  // (istio_kinds.cc)
  void ReadPeerAuthentication(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadWorkloadEntry(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  // apps/v1 Deployment, StatefulSet, ReplicaSet, DaemonSet; v1 Pod and
  // Service (kube_kinds.cc): Workloads and Services of the podless model.
  void ReadDeployment(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadStatefulSet(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadReplicaSet(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadDaemonSet(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadPod(const Fields& root, ObjectMeta meta, std::optional<Object>& out);
  void ReadKubeService(const Fields& root, ObjectMeta meta, std::optional<Object>& out);

  // The Diagnostic for a Validate() finding: at the node of its field, or of
  // the nearest enclosing field that exists (the parent of a missing field).
  SourceLocation Locate(const std::string& field) const;

  std::vector<Diagnostic>& errors() { return errors_; }

  // The document's name for a model field (Validate()'s paths): the field
  // itself, unless a reader mapped it elsewhere with Alias().
  std::string Translate(const std::string& field) const;

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
  void Warn(const Path& path, const YAML::Mark& mark, std::string message) {
    warnings_.push_back(Diagnostic{Where(mark), path, std::move(message)});
  }
  static YAML::Node SpecOf(const Fields& root);
  bool Storable(const YAML::Node& node, int depth);
  void Record(const Path& path, const YAML::Mark& mark) { marks_.emplace(path, mark); }
  // A model field read from another place in the document (a Deployment's
  // spec.ports[0] is spec.template.spec.containers[0].ports[0]).
  void Alias(const Path& model_path, const Path& document_path, const YAML::Mark& mark) {
    Record(model_path, mark);
    aliases_.insert_or_assign(model_path, document_path);
  }
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
                                    std::span<const char* const> allowed);
  std::optional<Fields> ReadMapping(const YAML::Node& node, const Path& path,
                                    std::initializer_list<const char*> allowed) {
    return ReadMapping(node, path, std::span<const char* const>(allowed.begin(), allowed.size()));
  }
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
  // Kubernetes' ObjectMeta: also annotations, and the fields the API server
  // sets (accepted, not kept). `namespaced` false: a cluster-scoped kind.
  void ReadKubeMeta(const YAML::Node& node, ObjectMeta& meta, bool namespaced);
  void ReadWorkloadSpec(const YAML::Node& node, WorkloadSpec& spec);
  void ReadApp(const YAML::Node& node, const Path& path, AppSpec& app);
  void ReadExec(const YAML::Node& node, const Path& path, ExecApp& exec);
  void ReadExecEnv(const YAML::Node& node, const Path& path, std::vector<EnvVar>& env);
  void ReadProbe(const YAML::Node& node, const Path& path, Probe& probe);
  void ReadProbeTiming(const Entry& e, const Path& child, Probe& probe);
  void ReadSecurityContext(const YAML::Node& node, const Path& path, SecurityContext& out);
  void ReadLimits(const YAML::Node& node, const Path& path, ResourceLimits& out);
  void ReadServiceSpec(const YAML::Node& node, Service& service);
  // kube_kinds.cc: the pod-owning kinds share one reader of their spec.
  struct PodOwner;
  void ReadPodOwner(const Fields& root, ObjectMeta meta, const PodOwner& kind,
                    std::optional<Object>& out);
  bool ReadLabelSelector(const YAML::Node& node, const Path& path, Labels& match_labels,
                         const Labels* template_labels, bool& matches);
  void ReadPodTemplate(const YAML::Node& node, const Path& path, const ObjectMeta& owner,
                       Workload& workload, bool pod_kind);
  void ReadPodSpec(const YAML::Node& node, const Path& path, const Labels& annotations,
                   const Path& annotation_path, Workload& workload, bool pod_kind);
  void ReadKubeProbe(const YAML::Node& node, const Path& path, std::optional<Probe>& out);
  void ReadKubeSecurityContext(const YAML::Node& node, const Path& path, SecurityContext& out);
  void ReadKubeServiceSpec(const YAML::Node& node, Service& service);
  // Warns of each field of `fields` that the table (manifest_fields.h) marks
  // ignored for `object`, unless its value asks for nothing.
  void WarnIgnoredFields(const Fields& fields, std::string_view object);
  void ReadPolicySpec(const YAML::Node& node, AuthorizationPolicy& policy);
  void ReadRule(const YAML::Node& node, const Path& path, PolicyRule& rule);
  void ReadSource(const YAML::Node& node, const Path& path, PolicySource& source);
  void ReadOperation(const YAML::Node& node, const Path& path, PolicyOperation& op);
  void ReadMtlsMode(const YAML::Node& node, const Path& path, MtlsMode& out);

  std::string file_;
  size_t& budget_;
  bool exhausted_reported_ = false;
  YAML::Mark root_mark_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
  bool skip_unsupported_ = false;
  std::optional<SkippedDocument> skipped_;
  std::map<std::string, YAML::Mark> marks_;
  std::map<std::string, std::string> aliases_;  // model path -> document path
};

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

}  // namespace podless::workloads::manifest
