// Kubernetes naming rules: DNS-1123 labels and subdomains, label keys and
// values, port names (IANA service names). Each check has a boolean form and a
// form that returns why a value is invalid (empty when it is valid), worded
// like Kubernetes' own messages so users recognise them.
#pragma once

#include <string>
#include <string_view>

namespace podless::workloads {

inline constexpr size_t kDns1123LabelMaxLength = 63;
inline constexpr size_t kDns1123SubdomainMaxLength = 253;
inline constexpr size_t kLabelValueMaxLength = 63;
inline constexpr size_t kPortNameMaxLength = 15;

// At most 63 characters of [a-z0-9-], starting and ending with [a-z0-9].
bool IsDns1123Label(std::string_view value);
std::string Dns1123LabelError(std::string_view value);

// At most 253 characters: DNS-1123 labels joined by '.'.
bool IsDns1123Subdomain(std::string_view value);
std::string Dns1123SubdomainError(std::string_view value);

// A label key: `[prefix/]name`, prefix a DNS-1123 subdomain, name at most 63
// characters of [A-Za-z0-9_.-] starting and ending with an alphanumeric.
bool IsLabelKey(std::string_view key);
std::string LabelKeyError(std::string_view key);

// A label value: empty, or at most 63 characters of [A-Za-z0-9_.-] starting
// and ending with an alphanumeric.
bool IsLabelValue(std::string_view value);
std::string LabelValueError(std::string_view value);

// A port name (Kubernetes IANA_SVC_NAME): at most 15 characters of [a-z0-9-],
// at least one letter, no leading, trailing or doubled '-'. Port names are
// what a Service's targetPort or a probe's port may refer to.
bool IsPortName(std::string_view name);
std::string PortNameError(std::string_view name);

}  // namespace podless::workloads
