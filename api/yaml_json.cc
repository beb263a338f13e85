#include "api/yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>

#include "proxy/apps.h"

namespace podless::api {
namespace {

// A JSON string (escapes, and U+FFFD for bytes that are not UTF-8).
std::string Quote(const std::string& text) { return proxy::JsonString(text); }

// [-+]?(0|[1-9][0-9]*)(\.[0-9]+([eE][-+]?[0-9]+)?)?: a number JSON can
// hold as written (without the plus).
bool IsJsonNumber(std::string_view text) {
  size_t i = 0;
  auto digits = [&]() {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    return i - start;
  };
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
  const size_t integer_at = i;
  const size_t integer = digits();
  if (integer == 0 || (integer > 1 && text[integer_at] == '0')) return false;
  if (i == text.size()) return true;
  if (text[i] != '.') return false;
  ++i;
  if (digits() == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

std::string ScalarJson(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() != "!") {  // plain, not quoted
    if (text == "true" || text == "false") return text;
    if (text == "null" || text == "~" || text.empty()) return "null";
    if (IsJsonNumber(text)) return text[0] == '+' ? text.substr(1) : text;
  }
  return Quote(text);
}

void Write(const YAML::Node& node, int depth, std::string& out) {
  const std::string indent(4 * (depth + 1), ' ');
  const std::string closing(4 * depth, ' ');
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      if (node.size() == 0) {
        out += "{}";
        return;
      }
      out += "{\n";
      size_t i = 0;
      for (const auto& entry : node) {
        out += indent + Quote(entry.first.Scalar()) + ": ";
        Write(entry.second, depth + 1, out);
        out += ++i < node.size() ? ",\n" : "\n";
      }
      out += closing + "}";
      return;
    }
    case YAML::NodeType::Sequence: {
      if (node.size() == 0) {
        out += "[]";
        return;
      }
      out += "[\n";
      for (size_t i = 0; i < node.size(); ++i) {
        out += indent;
        Write(node[i], depth + 1, out);
        out += i + 1 < node.size() ? ",\n" : "\n";
      }
      out += closing + "]";
      return;
    }
    case YAML::NodeType::Scalar:
      out += ScalarJson(node);
      return;
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      out += "null";
      return;
  }
}

}  // namespace

std::string YamlNodeToJson(const YAML::Node& node) {
  std::string out;
  Write(node, 0, out);
  return out;
}

Result<std::string> YamlToJson(std::string_view yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("not YAML: ") + e.what());
  }
  std::string out;
  Write(root, 0, out);
  return out + "\n";
}

}  // namespace podless::api
