#include "api/kube/managed_fields.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "api/kube/patch.h"
#include "api/yaml_json.h"
#include "proxy/base/json.h"

namespace podless::api::kube {
namespace {

// One line of JSON for a scalar key value ("web", 80).
std::string OneLine(const YAML::Node& node) {
  std::string text = YamlNodeToJson(node);
  text.erase(std::remove(text.begin(), text.end(), '\n'), text.end());
  return text;
}

std::string KeyToken(const std::string& key, const YAML::Node& value) {
  return "k:{\"" + key + "\":" + OneLine(value) + "}";
}

void Walk(const YAML::Node& node, FieldPath& path, const std::string& dotted, std::string_view kind,
          FieldSet& out) {
  if (!node.IsMap() || node.size() == 0) {
    if (!path.empty()) out.insert(path);
    return;
  }
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    if (path.empty() && (key == "apiVersion" || key == "kind")) continue;
    if (path == FieldPath{"f:metadata"} && (key == "name" || key == "namespace")) continue;
    const YAML::Node value = kv.second;
    path.push_back("f:" + key);
    const std::string child = dotted.empty() ? key : dotted + "." + key;
    const std::string merge_key = value.IsSequence() ? MergeKey(kind, dotted, key) : "";
    if (value.IsMap()) {
      Walk(value, path, child, kind, out);
    } else if (!merge_key.empty()) {
      for (const YAML::Node& e : value) {
        const YAML::Node k = Field(e, merge_key);
        if (!k.IsDefined() || k.IsNull()) {
          out.insert(path);  // not keyed: the list is one field
          continue;
        }
        path.push_back(KeyToken(merge_key, k));
        Walk(e, path, child, kind, out);
        path.pop_back();
      }
      if (value.size() == 0) out.insert(path);
    } else {
      out.insert(path);
    }
    path.pop_back();
  }
}

// The value at `path`, if there is one.
std::optional<YAML::Node> At(const YAML::Node& doc, const FieldPath& path) {
  std::optional<YAML::Node> at(doc);
  for (const std::string& token : path) {
    std::optional<YAML::Node> next;
    if (token.starts_with("f:")) {
      if (at->IsMap()) {
        for (const auto& kv : *at) {
          if (kv.first.Scalar() == token.substr(2)) next.emplace(kv.second);
        }
      }
    } else if (token.starts_with("k:") && at->IsSequence()) {
      auto key = ParseJsonNode(token.substr(2));
      if (key && key->IsMap() && key->size() == 1) {
        const std::string name = key->begin()->first.Scalar();
        const YAML::Node value = key->begin()->second;
        for (const YAML::Node& e : *at) {
          if (!next && JsonEqual(Field(e, name), value)) next.emplace(e);
        }
      }
    }
    if (!next) return std::nullopt;
    at.reset();
    at.emplace(*next);
  }
  return at;
}

bool SameAt(const YAML::Node& a, const YAML::Node& b, const FieldPath& path) {
  auto x = At(a, path);
  auto y = At(b, path);
  if (!x || !y) return !x && !y;
  return JsonEqual(*x, *y);
}

ManagerEntry& EntryOf(ManagedFields& managed, const std::string& manager,
                      const std::string& operation) {
  for (ManagerEntry& e : managed) {
    if (e.manager == manager && e.operation == operation) return e;
  }
  managed.push_back(ManagerEntry{manager, operation, "", "", {}});
  return managed.back();
}

void DropEmpty(ManagedFields& managed) {
  managed.erase(std::remove_if(managed.begin(), managed.end(),
                               [](const ManagerEntry& e) { return e.fields.empty(); }),
                managed.end());
}

// A copy of `node` without the field at path[i..].
YAML::Node Without(const YAML::Node& node, const FieldPath& path, size_t i) {
  const std::string& token = path[i];
  const bool last = i + 1 == path.size();
  if (token.starts_with("f:") && node.IsMap()) {
    const std::string key = token.substr(2);
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : node) {
      const std::string k = kv.first.Scalar();
      if (k != key) {
        out[k] = kv.second;
      } else if (!last) {
        // A map emptied by the removal goes with it, as the API server's.
        YAML::Node inner = Without(kv.second, path, i + 1);
        if (!(inner.IsMap() && inner.size() == 0 && kv.second.size() > 0)) out[k] = inner;
      }
    }
    return out;
  }
  if (token.starts_with("k:") && node.IsSequence()) {
    auto key = ParseJsonNode(token.substr(2));
    if (!key || !key->IsMap() || key->size() != 1) return node;
    const std::string name = key->begin()->first.Scalar();
    const YAML::Node value = key->begin()->second;
    YAML::Node out(YAML::NodeType::Sequence);
    // The element goes when its key goes, or when nothing is left of it.
    const bool key_field = i + 2 == path.size() && path[i + 1] == "f:" + name;
    for (const YAML::Node& e : node) {
      if (!JsonEqual(Field(e, name), value)) {
        out.push_back(e);
      } else if (!last && !key_field) {
        YAML::Node inner = Without(e, path, i + 1);
        if (!(inner.IsMap() && inner.size() == 0)) out.push_back(inner);
      }
    }
    return out;
  }
  return node;
}

struct Tree {
  std::map<std::string, Tree> children;
};

void WriteTree(proxy::JsonWriter& w, const Tree& tree) {
  w.BeginObject();
  for (const auto& [token, child] : tree.children) {
    w.Key(token);
    WriteTree(w, child);
  }
  w.EndObject();
}

}  // namespace

FieldSet FieldsOf(const YAML::Node& doc, std::string_view kind) {
  FieldSet out;
  FieldPath path;
  if (doc.IsMap()) Walk(doc, path, "", kind, out);
  return out;
}

FieldSet ChangedFields(const YAML::Node& before, const YAML::Node& after, std::string_view kind) {
  FieldSet changed;
  for (const FieldPath& p : FieldsOf(after, kind)) {
    if (!SameAt(before, after, p)) changed.insert(p);
  }
  return changed;
}

std::vector<FieldConflict> ApplyConflicts(const ManagedFields& managed, const std::string& manager,
                                          const YAML::Node& config, const YAML::Node& current,
                                          std::string_view kind) {
  std::vector<FieldConflict> conflicts;
  const FieldSet fields = FieldsOf(config, kind);
  for (const ManagerEntry& e : managed) {
    if (e.manager == manager) continue;
    for (const FieldPath& p : fields) {
      if (e.fields.contains(p) && !SameAt(config, current, p)) {
        conflicts.push_back({e.manager, e.api_version, p});
      }
    }
  }
  return conflicts;
}

FieldSet Released(const ManagedFields& managed, const std::string& manager,
                  const FieldSet& applied) {
  FieldSet released;
  for (const ManagerEntry& e : managed) {
    if (e.manager != manager || e.operation != "Apply") continue;
    for (const FieldPath& p : e.fields) {
      if (applied.contains(p)) continue;
      bool held = false;
      for (const ManagerEntry& other : managed) {
        held = held || (&other != &e && other.fields.contains(p));
      }
      if (!held) released.insert(p);
    }
  }
  return released;
}

void RecordApply(ManagedFields& managed, const std::string& manager, const FieldSet& fields,
                 const std::string& api_version, const std::string& time, bool forced,
                 const std::vector<FieldConflict>& conflicts) {
  if (forced) {
    for (const FieldConflict& c : conflicts) {
      for (ManagerEntry& e : managed) {
        if (e.manager == c.manager) e.fields.erase(c.field);
      }
    }
  }
  ManagerEntry& mine = EntryOf(managed, manager, "Apply");
  mine.fields = fields;
  mine.api_version = api_version;
  mine.time = time;
  DropEmpty(managed);
}

void RecordUpdate(ManagedFields& managed, const std::string& manager, const FieldSet& changed,
                  const std::string& api_version, const std::string& time) {
  if (changed.empty()) return;
  for (ManagerEntry& e : managed) {
    if (e.manager == manager && e.operation == "Update") continue;
    for (const FieldPath& p : changed) e.fields.erase(p);
  }
  ManagerEntry& mine = EntryOf(managed, manager, "Update");
  mine.fields.insert(changed.begin(), changed.end());
  mine.api_version = api_version;
  mine.time = time;
  DropEmpty(managed);
}

YAML::Node RemoveFields(const YAML::Node& doc, const FieldSet& fields) {
  std::optional<YAML::Node> out(doc);
  for (const FieldPath& p : fields) {
    if (p.empty()) continue;
    YAML::Node next = Without(*out, p, 0);
    out.reset();
    out.emplace(next);
  }
  return YAML::Clone(*out);
}

std::string FieldPathString(const FieldPath& path) {
  std::string out;
  for (const std::string& token : path) {
    if (token.starts_with("f:")) {
      out += "." + token.substr(2);
    } else if (token.starts_with("k:{\"")) {
      // k:{"name":"web"} -> [name="web"]
      const size_t quote = token.find('"', 4);
      out += "[" + token.substr(4, quote - 4) + "=" + token.substr(quote + 2);
      out.back() = ']';
    }
  }
  return out;
}

std::string WithManagedFields(const std::string& object_json, const ManagedFields& managed) {
  if (managed.empty()) return object_json;
  auto object = ParseJsonNode(object_json);
  auto fields = ParseJsonNode(ManagedFieldsJson(managed));
  if (!object || !fields || !object->IsMap() || !Field(*object, "metadata").IsMap()) {
    return object_json;
  }
  YAML::Node doc = YAML::Clone(*object);
  doc["metadata"]["managedFields"] = *fields;
  return YamlNodeToJson(doc);
}

std::string ManagedFieldsJson(const ManagedFields& managed) {
  proxy::JsonWriter w;
  w.BeginArray();
  for (const ManagerEntry& e : managed) {
    Tree tree;
    for (const FieldPath& p : e.fields) {
      Tree* at = &tree;
      for (const std::string& token : p) {
        if (token.starts_with("k:")) at->children[token].children["."];
        at = &at->children[token];
      }
    }
    w.BeginObject();
    w.Key("manager").String(e.manager);
    w.Key("operation").String(e.operation);
    w.Key("apiVersion").String(e.api_version);
    w.Key("time").String(e.time);
    w.Key("fieldsType").String("FieldsV1");
    w.Key("fieldsV1");
    WriteTree(w, tree);
    w.EndObject();
  }
  w.EndArray();
  return w.Take();
}

}  // namespace podless::api::kube
