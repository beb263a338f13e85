#include "workloads/document_reader.h"

#include <charconv>

namespace podless::workloads::manifest {

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

std::string JoinNames(std::span<const char* const> names) {
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

std::optional<Fields> DocumentReader::ReadMapping(const YAML::Node& node, const Path& path,
                                                  std::span<const char* const> allowed) {
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

void DocumentReader::ReadProtocol(const YAML::Node& node, const Path& path, Protocol& out) {
  ReadEnum<Protocol>(node, path, {{"TCP", Protocol::kTCP}, {"HTTP", Protocol::kHTTP}}, out);
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
  // annotations: kept as written, as for the Kubernetes kinds (kubectl
  // apply keeps its last-applied-configuration there).
  auto fields = ReadMapping(node, "metadata", {"name", "namespace", "labels", "annotations"});
  if (!fields) return;
  for (const Entry& e : fields->entries) {
    Path path = Join("metadata", e.key);
    if (e.key == "name") {
      ReadString(e.value, path, meta.name);
    } else if (e.key == "namespace") {
      ReadString(e.value, path, meta.ns);
    } else if (e.key == "labels") {
      ReadStringMap(e.value, path, meta.labels);
    } else if (e.key == "annotations") {
      Labels annotations;
      ReadStringMap(e.value, path, annotations);
      if (!annotations.empty()) meta.annotations = std::move(annotations);
    }
  }
}

std::string DocumentReader::Translate(const std::string& field) const {
  if (aliases_.empty()) return field;
  std::string path = field;
  while (!path.empty()) {
    if (auto it = aliases_.find(path); it != aliases_.end()) {
      return it->second + field.substr(path.size());
    }
    size_t cut = path.back() == ']' ? path.rfind('[') : path.rfind('.');
    if (cut == std::string::npos) cut = 0;
    path.resize(cut);
  }
  return field;
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

}  // namespace podless::workloads::manifest
