#include "api/kube/media_type.h"

#include <cctype>

namespace podless::api::kube {
namespace {

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string MediaType::Param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return "";
}

std::vector<MediaType> ParseAccept(std::string_view accept) {
  std::vector<MediaType> types;
  while (!accept.empty()) {
    const size_t comma = accept.find(',');
    std::string_view range = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    MediaType type;
    const size_t semi = range.find(';');
    type.type = Lower(Trim(range.substr(0, semi)));
    if (type.type.empty()) continue;
    std::string_view rest = semi == std::string_view::npos ? "" : range.substr(semi + 1);
    while (!rest.empty()) {
      const size_t next = rest.find(';');
      std::string_view param = Trim(rest.substr(0, next));
      rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
      const size_t eq = param.find('=');
      if (eq == std::string_view::npos) continue;
      std::string_view value = Trim(param.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      type.params.emplace_back(Lower(Trim(param.substr(0, eq))), std::string(value));
    }
    types.push_back(std::move(type));
  }
  return types;
}

std::string TableVersion(std::string_view accept) {
  for (const MediaType& type : ParseAccept(accept)) {
    if (type.Param("as") == "Table" && type.Param("g") == "meta.k8s.io") {
      const std::string version = type.Param("v");
      if (version == "v1" || version == "v1beta1") return version;
      continue;
    }
    if (type.type == "application/json" || type.type == "*/*") return "";
  }
  return "";
}

}  // namespace podless::api::kube
