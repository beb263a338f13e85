#include "workloads/names.h"

namespace podless::workloads {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

constexpr char kLabelFormat[] =
    "must consist of lower case alphanumeric characters or '-', and must start and end with an "
    "alphanumeric character (e.g. 'my-name', or '123-abc')";
constexpr char kSubdomainFormat[] =
    "must consist of lower case alphanumeric characters, '-' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'example.com')";
constexpr char kNameFormat[] =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName', 'my.name', or '123-abc')";

// The label grammar without its length limit; subdomains reuse it per part.
bool MatchesLabelChars(std::string_view value) {
  if (value.empty() || !IsLowerAlnum(value.front()) || !IsLowerAlnum(value.back())) return false;
  for (char c : value) {
    if (!IsLowerAlnum(c) && c != '-') return false;
  }
  return true;
}

std::string MaxLengthError(size_t max) {
  return "must be no more than " + std::to_string(max) + " characters";
}

}  // namespace

std::string Dns1123LabelError(std::string_view value) {
  if (value.size() > kDns1123LabelMaxLength) return MaxLengthError(kDns1123LabelMaxLength);
  if (!MatchesLabelChars(value)) return kLabelFormat;
  return {};
}

bool IsDns1123Label(std::string_view value) { return Dns1123LabelError(value).empty(); }

std::string Dns1123SubdomainError(std::string_view value) {
  if (value.size() > kDns1123SubdomainMaxLength) {
    return MaxLengthError(kDns1123SubdomainMaxLength);
  }
  if (value.empty()) return kSubdomainFormat;
  size_t start = 0;
  while (true) {
    size_t dot = value.find('.', start);
    std::string_view part = value.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (!MatchesLabelChars(part)) return kSubdomainFormat;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return {};
}

bool IsDns1123Subdomain(std::string_view value) { return Dns1123SubdomainError(value).empty(); }

namespace {

// The name part of a label key and a non-empty label value share a grammar.
std::string QualifiedNamePartError(std::string_view name) {
  if (name.size() > kLabelValueMaxLength) return MaxLengthError(kLabelValueMaxLength);
  if (name.empty() || !IsAlnum(name.front()) || !IsAlnum(name.back())) return kNameFormat;
  for (char c : name) {
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') return kNameFormat;
  }
  return {};
}

}  // namespace

std::string LabelKeyError(std::string_view key) {
  if (key.empty()) return "must not be empty";
  std::string_view name = key;
  size_t slash = key.find('/');
  if (slash != std::string_view::npos) {
    std::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (prefix.empty()) return "prefix part must not be empty";
    if (std::string why = Dns1123SubdomainError(prefix); !why.empty()) {
      return "prefix part " + why;
    }
    if (name.find('/') != std::string_view::npos) {
      return "must be a name with an optional DNS subdomain prefix and '/' (e.g. "
             "'example.com/MyName')";
    }
  }
  if (std::string why = QualifiedNamePartError(name); !why.empty()) return "name part " + why;
  return {};
}

bool IsLabelKey(std::string_view key) { return LabelKeyError(key).empty(); }

std::string LabelValueError(std::string_view value) {
  if (value.empty()) return {};
  return QualifiedNamePartError(value);
}

bool IsLabelValue(std::string_view value) { return LabelValueError(value).empty(); }

std::string PortNameError(std::string_view name) {
  if (name.size() > kPortNameMaxLength) return MaxLengthError(kPortNameMaxLength);
  bool has_letter = false;
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') {
      return "must contain only lower case alphanumeric characters or '-' (e.g. 'http')";
    }
    if (c >= 'a' && c <= 'z') has_letter = true;
  }
  if (!has_letter) return "must contain at least one letter (e.g. 'http')";
  if (name.front() == '-' || name.back() == '-') return "must not begin or end with '-'";
  if (name.find("--") != std::string_view::npos) return "must not contain consecutive '-'";
  return {};
}

bool IsPortName(std::string_view name) { return PortNameError(name).empty(); }

}  // namespace podless::workloads
