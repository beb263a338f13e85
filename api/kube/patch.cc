#include "api/kube/patch.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "api/yaml_json.h"

namespace podless::api::kube {
namespace {

Error Invalid(std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

YAML::Node NewMap() { return YAML::Node(YAML::NodeType::Map); }
YAML::Node NewSeq() { return YAML::Node(YAML::NodeType::Sequence); }

// A copy of map `m` with `key` set to `value` (in its place, or last).
YAML::Node MapWith(const YAML::Node& m, const std::string& key, const YAML::Node& value) {
  YAML::Node out = NewMap();
  bool set = false;
  for (const auto& kv : m) {
    const std::string k = kv.first.Scalar();
    if (k == key) {
      out[k] = value;
      set = true;
    } else {
      out[k] = kv.second;
    }
  }
  if (!set) out[key] = value;
  return out;
}

YAML::Node MapWithout(const YAML::Node& m, const std::string& key) {
  YAML::Node out = NewMap();
  for (const auto& kv : m) {
    if (kv.first.Scalar() != key) out[kv.first.Scalar()] = kv.second;
  }
  return out;
}

bool HasKey(const YAML::Node& m, const std::string& key) {
  if (!m.IsMap()) return false;
  for (const auto& kv : m) {
    if (kv.first.Scalar() == key) return true;
  }
  return false;
}

YAML::Node Child(const YAML::Node& m, const std::string& key) {
  for (const auto& kv : m) {
    if (kv.first.Scalar() == key) return kv.second;
  }
  return YAML::Node();
}

// ---------------------------------------------------------------------------
// RFC 7386

YAML::Node Merge(const YAML::Node& target, const YAML::Node& patch) {
  if (!patch.IsMap()) return patch;
  YAML::Node out = NewMap();
  if (target.IsMap()) {
    for (const auto& kv : target) {
      const std::string k = kv.first.Scalar();
      if (!HasKey(patch, k)) {
        out[k] = kv.second;
        continue;
      }
      const YAML::Node v = Child(patch, k);
      if (!v.IsNull()) out[k] = Merge(kv.second, v);
    }
  }
  for (const auto& kv : patch) {
    const std::string k = kv.first.Scalar();
    if (HasKey(target, k) || kv.second.IsNull()) continue;
    out[k] = Merge(YAML::Node(), kv.second);
  }
  return out;
}

// ---------------------------------------------------------------------------
// RFC 6902

Result<std::vector<std::string>> PointerTokens(const YAML::Node& value, const char* what) {
  if (!value.IsDefined() || !value.IsScalar()) {
    return Invalid(std::string("\"") + what + "\" is required (a JSON pointer)");
  }
  const std::string& text = value.Scalar();
  std::vector<std::string> tokens;
  if (text.empty()) return tokens;
  if (text[0] != '/') return Invalid("\"" + text + "\" is not a JSON pointer");
  size_t at = 1;
  while (true) {
    const size_t slash = text.find('/', at);
    std::string raw = text.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    std::string token;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token += raw[i + 1] == '0' ? '~' : '/';
        ++i;
      } else if (raw[i] == '~') {
        return Invalid("\"" + text + "\": '~' must be followed by 0 or 1");
      } else {
        token += raw[i];
      }
    }
    tokens.push_back(std::move(token));
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  return tokens;
}

std::string Pointer(const std::vector<std::string>& tokens, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < tokens.size(); ++i) out += "/" + tokens[i];
  return out;
}

// An array index token: digits, no leading zero; `size` allowed when
// `append_ok` (add inserts at the end).
std::optional<size_t> Index(const std::string& token, size_t size, bool append_ok) {
  if (token == "-") return append_ok ? std::optional<size_t>(size) : std::nullopt;
  if (token.empty() || token.size() > 9 || (token.size() > 1 && token[0] == '0')) return {};
  for (char c : token) {
    if (c < '0' || c > '9') return {};
  }
  const size_t i = std::stoul(token);
  if (i > size || (i == size && !append_ok)) return {};
  return i;
}

// yaml-cpp's Node::operator= rebinds the node it was assigned from (the
// caller's document would change), so these functions never assign to a
// node they did not make: they recurse, or construct anew.
Result<YAML::Node> Get(const YAML::Node& at, const std::vector<std::string>& tokens, size_t i = 0) {
  if (i == tokens.size()) return at;
  if (at.IsMap() && HasKey(at, tokens[i])) return Get(Child(at, tokens[i]), tokens, i + 1);
  if (at.IsSequence()) {
    auto index = Index(tokens[i], at.size(), false);
    if (!index) return Invalid("no element " + Pointer(tokens, i + 1));
    return Get(at[*index], tokens, i + 1);
  }
  return Invalid("no value at " + Pointer(tokens, i + 1));
}

using EditFunction =
    std::function<Result<YAML::Node>(const YAML::Node& container, const std::string& last)>;

// A copy of `node` with the container at tokens[0..n-1) replaced by what
// `edit` makes of it.
Result<YAML::Node> Edit(const YAML::Node& node, const std::vector<std::string>& tokens, size_t i,
                        const EditFunction& edit) {
  if (i + 1 == tokens.size()) return edit(node, tokens[i]);
  const std::string& t = tokens[i];
  if (node.IsMap()) {
    if (!HasKey(node, t)) return Invalid("no value at " + Pointer(tokens, i + 1));
    auto child = Edit(Child(node, t), tokens, i + 1, edit);
    if (!child) return child.error();
    return MapWith(node, t, *child);
  }
  if (node.IsSequence()) {
    auto index = Index(t, node.size(), false);
    if (!index) return Invalid("no element " + Pointer(tokens, i + 1));
    auto child = Edit(node[*index], tokens, i + 1, edit);
    if (!child) return child.error();
    YAML::Node out = NewSeq();
    for (size_t j = 0; j < node.size(); ++j) out.push_back(j == *index ? *child : node[j]);
    return out;
  }
  return Invalid("no value at " + Pointer(tokens, i + 1));
}

Result<YAML::Node> Add(const YAML::Node& doc, const std::vector<std::string>& tokens,
                       const YAML::Node& value) {
  if (tokens.empty()) return value;
  return Edit(doc, tokens, 0,
              [&](const YAML::Node& container, const std::string& last) -> Result<YAML::Node> {
                if (container.IsMap()) return MapWith(container, last, value);
                if (container.IsSequence()) {
                  auto index = Index(last, container.size(), true);
                  if (!index) return Invalid("cannot add at " + Pointer(tokens, 99));
                  YAML::Node out = NewSeq();
                  for (size_t j = 0; j <= container.size(); ++j) {
                    if (j == *index) out.push_back(value);
                    if (j < container.size()) out.push_back(container[j]);
                  }
                  return out;
                }
                return Invalid("cannot add at " + Pointer(tokens, 99) +
                               ": the parent is not an object or array");
              });
}

Result<YAML::Node> Remove(const YAML::Node& doc, const std::vector<std::string>& tokens) {
  if (tokens.empty()) return Invalid("cannot remove the whole document");
  return Edit(doc, tokens, 0,
              [&](const YAML::Node& container, const std::string& last) -> Result<YAML::Node> {
                if (container.IsMap() && HasKey(container, last)) {
                  return MapWithout(container, last);
                }
                if (container.IsSequence()) {
                  if (auto index = Index(last, container.size(), false)) {
                    YAML::Node out = NewSeq();
                    for (size_t j = 0; j < container.size(); ++j) {
                      if (j != *index) out.push_back(container[j]);
                    }
                    return out;
                  }
                }
                return Invalid("no value to remove at " + Pointer(tokens, 99));
              });
}

Result<YAML::Node> Replace(const YAML::Node& doc, const std::vector<std::string>& tokens,
                           const YAML::Node& value) {
  if (tokens.empty()) return value;
  return Edit(doc, tokens, 0,
              [&](const YAML::Node& container, const std::string& last) -> Result<YAML::Node> {
                if (container.IsMap() && HasKey(container, last)) {
                  return MapWith(container, last, value);
                }
                if (container.IsSequence()) {
                  if (auto index = Index(last, container.size(), false)) {
                    YAML::Node out = NewSeq();
                    for (size_t j = 0; j < container.size(); ++j) {
                      out.push_back(j == *index ? value : container[j]);
                    }
                    return out;
                  }
                }
                return Invalid("no value to replace at " + Pointer(tokens, 99));
              });
}

// ---------------------------------------------------------------------------
// Strategic merge patch

bool IsDirective(const std::string& key) { return !key.empty() && key[0] == '$'; }

std::string DirectiveOf(const YAML::Node& m) {
  if (!m.IsMap() || !HasKey(m, "$patch")) return "";
  const YAML::Node d = Child(m, "$patch");
  return d.IsScalar() ? d.Scalar() : "?";
}

// `m` without its directive keys.
YAML::Node WithoutDirectives(const YAML::Node& m) {
  if (!m.IsMap()) return m;
  YAML::Node out = NewMap();
  for (const auto& kv : m) {
    if (!IsDirective(kv.first.Scalar())) out[kv.first.Scalar()] = WithoutDirectives(kv.second);
  }
  return out;
}

Result<YAML::Node> Strategic(const YAML::Node& target, const YAML::Node& patch,
                             std::string_view kind, const std::string& path);

bool ElementMatches(const YAML::Node& element, const std::string& key, const YAML::Node& value) {
  return element.IsMap() && HasKey(element, key) && JsonEqual(Child(element, key), value);
}

Result<YAML::Node> MergeList(const YAML::Node& target, const YAML::Node& patch,
                             std::string_view kind, const std::string& path,
                             const std::string& key) {
  std::vector<YAML::Node> out;
  for (const YAML::Node& e : patch) {
    if (DirectiveOf(e) == "replace") {
      YAML::Node replaced = NewSeq();
      for (const YAML::Node& x : patch) {
        if (DirectiveOf(x) != "replace") replaced.push_back(WithoutDirectives(x));
      }
      return replaced;
    }
  }
  if (target.IsSequence()) {
    for (const YAML::Node& e : target) out.push_back(e);
  }
  for (const YAML::Node& e : patch) {
    if (!e.IsMap()) {  // a primitive list that merges: add what is missing
      bool present = false;
      for (const YAML::Node& x : out) present = present || JsonEqual(x, e);
      if (!present) out.push_back(e);
      continue;
    }
    if (!HasKey(e, key)) {
      return Invalid(path + ": an element has no merge key \"" + key + "\"");
    }
    const YAML::Node k = Child(e, key);
    const std::string directive = DirectiveOf(e);
    if (directive == "delete") {
      std::vector<YAML::Node> kept;
      for (const YAML::Node& x : out) {
        if (!ElementMatches(x, key, k)) kept.push_back(x);
      }
      out = std::move(kept);
      continue;
    }
    bool merged = false;
    for (size_t i = 0; i < out.size() && !merged; ++i) {
      if (!ElementMatches(out[i], key, k)) continue;
      auto m = Strategic(out[i], e, kind, path);
      if (!m) return m.error();
      std::vector<YAML::Node> next;  // constructed, not assigned (see Get)
      for (size_t j = 0; j < out.size(); ++j) next.push_back(j == i ? *m : out[j]);
      out = std::move(next);
      merged = true;
    }
    if (!merged) {
      auto m = Strategic(YAML::Node(), e, kind, path);
      if (!m) return m.error();
      out.push_back(*m);
    }
  }
  YAML::Node seq = NewSeq();
  for (const YAML::Node& x : out) seq.push_back(x);
  return seq;
}

// Reorders `list` as `order` names its elements (by merge key, or the
// values of a primitive list); elements `order` does not name follow.
YAML::Node SetElementOrder(const YAML::Node& list, const YAML::Node& order,
                           const std::string& key) {
  if (!list.IsSequence() || !order.IsSequence()) return list;
  std::vector<bool> taken(list.size(), false);
  YAML::Node out = NewSeq();
  for (const YAML::Node& o : order) {
    for (size_t i = 0; i < list.size(); ++i) {
      if (taken[i]) continue;
      const bool match = o.IsMap() && !key.empty() ? ElementMatches(list[i], key, Child(o, key))
                                                   : JsonEqual(list[i], o);
      if (match) {
        out.push_back(list[i]);
        taken[i] = true;
        break;
      }
    }
  }
  for (size_t i = 0; i < list.size(); ++i) {
    if (!taken[i]) out.push_back(list[i]);
  }
  return out;
}

Result<YAML::Node> MergeValue(const YAML::Node& target, const YAML::Node& value,
                              std::string_view kind, const std::string& path,
                              const std::string& field) {
  const std::string child_path = path.empty() ? field : path + "." + field;
  if (value.IsMap()) return Strategic(target, value, kind, child_path);
  if (value.IsSequence()) {
    const std::string key = MergeKey(kind, path, field);
    if (!key.empty()) return MergeList(target, value, kind, child_path, key);
    YAML::Node out = NewSeq();  // replaced whole
    for (const YAML::Node& e : value) {
      if (DirectiveOf(e).empty()) out.push_back(WithoutDirectives(e));
    }
    return out;
  }
  return value;
}

Result<YAML::Node> Strategic(const YAML::Node& target, const YAML::Node& patch,
                             std::string_view kind, const std::string& path) {
  if (!patch.IsMap()) return patch;
  const std::string directive = DirectiveOf(patch);
  if (directive == "replace") return WithoutDirectives(patch);
  if (!directive.empty() && directive != "merge" && directive != "delete") {
    return Invalid((path.empty() ? std::string("$patch") : path + ".$patch") +
                   ": unknown directive \"" + directive + "\"");
  }
  YAML::Node out = NewMap();
  const YAML::Node base = target.IsMap() ? target : NewMap();
  auto removes = [](const YAML::Node& v) { return v.IsNull() || DirectiveOf(v) == "delete"; };
  for (const auto& kv : base) {
    const std::string k = kv.first.Scalar();
    if (!HasKey(patch, k)) {
      out[k] = kv.second;
      continue;
    }
    const YAML::Node v = Child(patch, k);
    if (removes(v)) continue;
    auto merged = MergeValue(kv.second, v, kind, path, k);
    if (!merged) return merged.error();
    out[k] = *merged;
  }
  for (const auto& kv : patch) {
    const std::string k = kv.first.Scalar();
    if (IsDirective(k) || HasKey(base, k) || removes(kv.second)) continue;
    auto merged = MergeValue(YAML::Node(), kv.second, kind, path, k);
    if (!merged) return merged.error();
    out[k] = *merged;
  }
  // The directives that act on the merged map.
  for (const auto& kv : patch) {
    const std::string k = kv.first.Scalar();
    constexpr std::string_view kDelete = "$deleteFromPrimitiveList/";
    constexpr std::string_view kOrder = "$setElementOrder/";
    if (k.starts_with(kDelete)) {
      const std::string field = k.substr(kDelete.size());
      if (!HasKey(out, field) || !Child(out, field).IsSequence()) continue;
      YAML::Node kept = NewSeq();
      for (const YAML::Node& e : Child(out, field)) {
        bool drop = false;
        for (const YAML::Node& d : kv.second) drop = drop || JsonEqual(e, d);
        if (!drop) kept.push_back(e);
      }
      out = MapWith(out, field, kept);
    } else if (k.starts_with(kOrder)) {
      const std::string field = k.substr(kOrder.size());
      if (!HasKey(out, field)) continue;
      out = MapWith(out, field,
                    SetElementOrder(Child(out, field), kv.second, MergeKey(kind, path, field)));
    } else if (k == "$retainKeys") {
      if (!kv.second.IsSequence()) return Invalid(path + ".$retainKeys: expected a list");
      YAML::Node kept = NewMap();
      for (const auto& field : out) {
        bool retain = false;
        for (const YAML::Node& r : kv.second) retain = retain || r.Scalar() == field.first.Scalar();
        if (retain) kept[field.first.Scalar()] = field.second;
      }
      out = kept;
    } else if (IsDirective(k) && k != "$patch") {
      return Invalid((path.empty() ? k : path + "." + k) + ": unknown directive");
    }
  }
  return out;
}

}  // namespace

YAML::Node Field(const YAML::Node& m, std::string_view key) {
  if (!m.IsDefined() || !m.IsMap()) return YAML::Node();
  return Child(m, std::string(key));
}

Result<YAML::Node> ParseJsonNode(std::string_view text) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return Invalid(std::string("the body is not JSON or YAML: ") + e.what());
  }
}

bool JsonEqual(const YAML::Node& a, const YAML::Node& b) {
  if (a.IsMap() != b.IsMap() || a.IsSequence() != b.IsSequence()) return false;
  if (a.IsMap()) {
    if (a.size() != b.size()) return false;
    for (const auto& kv : a) {
      const std::string k = kv.first.Scalar();
      if (!HasKey(b, k) || !JsonEqual(kv.second, Child(b, k))) return false;
    }
    return true;
  }
  if (a.IsSequence()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!JsonEqual(a[i], b[i])) return false;
    }
    return true;
  }
  // Scalars and null: equal when they print as the same JSON ("80" is not 80).
  return YamlNodeToJson(a) == YamlNodeToJson(b);
}

YAML::Node MergePatch(const YAML::Node& target, const YAML::Node& patch) {
  return YAML::Clone(Merge(target, patch));
}

Result<YAML::Node> JsonPatch(const YAML::Node& target, const YAML::Node& operations) {
  if (!operations.IsSequence()) return Invalid("json patch: expected an array of operations");
  std::optional<YAML::Node> doc(target);  // re-made, never assigned (see Get)
  for (size_t i = 0; i < operations.size(); ++i) {
    const YAML::Node op = operations[i];
    const std::string where = "json patch operation " + std::to_string(i) + ": ";
    if (!op.IsMap() || !HasKey(op, "op") || !Child(op, "op").IsScalar()) {
      return Invalid(where + "\"op\" is required");
    }
    const std::string name = Child(op, "op").Scalar();
    auto path = PointerTokens(Child(op, "path"), "path");
    if (!path) return Invalid(where + path.error().message);
    const bool needs_value = name == "add" || name == "replace" || name == "test";
    if (needs_value && !HasKey(op, "value")) return Invalid(where + "\"value\" is required");
    const YAML::Node value = needs_value ? Child(op, "value") : YAML::Node();
    auto next = [&]() -> Result<YAML::Node> {
      if (name == "add") return Add(*doc, *path, value);
      if (name == "remove") return Remove(*doc, *path);
      if (name == "replace") return Replace(*doc, *path, value);
      if (name == "move" || name == "copy") {
        auto from = PointerTokens(Child(op, "from"), "from");
        if (!from) return from.error();
        auto moved = Get(*doc, *from);
        if (!moved) return moved.error();
        if (name == "copy") return Add(*doc, *path, YAML::Clone(*moved));
        const bool into_itself =
            path->size() > from->size() && std::equal(from->begin(), from->end(), path->begin());
        if (into_itself) return Invalid("cannot move a value into itself");
        auto removed = Remove(*doc, *from);
        if (!removed) return removed.error();
        return Add(*removed, *path, *moved);
      }
      if (name == "test") {
        auto actual = Get(*doc, *path);
        if (!actual) return actual.error();
        if (!JsonEqual(*actual, value)) {
          return Invalid("test failed: the value at " + Pointer(*path, path->size()) + " differs");
        }
        return *doc;
      }
      return Invalid("unknown op \"" + name + "\"");
    }();
    if (!next) return Invalid(where + next.error().message);
    doc.reset();
    doc.emplace(*next);
  }
  return YAML::Clone(*doc);
}

std::string MergeKey(std::string_view kind, std::string_view path, std::string_view field) {
  if (field == "containers" || field == "initContainers" || field == "ephemeralContainers" ||
      field == "volumes" || field == "env" || field == "imagePullSecrets") {
    return "name";
  }
  if (field == "volumeMounts") return "mountPath";
  if (field == "volumeDevices") return "devicePath";
  if (field == "hostAliases") return "ip";
  if (field == "topologySpreadConstraints") return "topologyKey";
  if (field == "conditions") return "type";
  if (field == "ports") return kind == "Service" && path == "spec" ? "port" : "containerPort";
  return "";
}

Result<YAML::Node> StrategicMergePatch(const YAML::Node& target, const YAML::Node& patch,
                                       std::string_view kind) {
  if (!patch.IsMap()) return Invalid("strategic merge patch: expected an object");
  auto out = Strategic(target, patch, kind, "");
  if (!out) return out.error();
  return YAML::Clone(*out);
}

}  // namespace podless::api::kube
