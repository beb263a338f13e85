#include "workloads/policy_values.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <utility>

namespace podless::workloads {

bool IpBlock::Contains(uint32_t ip) const {
  if (ipv6) return false;
  if (prefix == 0) return true;
  const uint32_t mask = prefix >= 32 ? 0xffffffffu : ~(0xffffffffu >> prefix);
  return (ip & mask) == address;
}

std::optional<IpBlock> ParseIpBlock(std::string_view text, std::string* why) {
  std::string_view address = text;
  std::optional<int> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    address = text.substr(0, slash);
    std::string_view digits = text.substr(slash + 1);
    int value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || digits.size() > 3 || ec != std::errc() ||
        end != digits.data() + digits.size()) {
      *why = "the prefix length after '/' must be a number";
      return std::nullopt;
    }
    prefix = value;
  }
  IpBlock block;
  std::string host(address);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    block.address = ntohl(v4.s_addr);
    block.prefix = static_cast<uint8_t>(prefix.value_or(32));
    if (prefix && *prefix > 32) {
      *why = "prefix length " + std::to_string(*prefix) + " is more than 32";
      return std::nullopt;
    }
    // Host bits below the prefix are ignored, as Istio's net.ParseCIDR does.
    if (block.prefix < 32) block.address &= ~(0xffffffffu >> block.prefix);
    return block;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    block.ipv6 = true;
    block.prefix = static_cast<uint8_t>(prefix.value_or(128));
    if (prefix && *prefix > 128) {
      *why = "prefix length " + std::to_string(*prefix) + " is more than 128";
      return std::nullopt;
    }
    return block;
  }
  *why = "must be an IP address or a CIDR block such as 10.0.0.0/8";
  return std::nullopt;
}

ConditionKey ClassifyConditionKey(std::string_view key, std::string* header_name) {
  static const std::pair<std::string_view, ConditionKey> kExact[] = {
      {"source.ip", ConditionKey::kSourceIp},
      {"source.namespace", ConditionKey::kSourceNamespace},
      {"source.principal", ConditionKey::kSourcePrincipal},
      {"destination.ip", ConditionKey::kDestinationIp},
      {"destination.port", ConditionKey::kDestinationPort},
      {"remote.ip", ConditionKey::kRemoteIp},
      {"request.auth.principal", ConditionKey::kRequestAuth},
      {"request.auth.audiences", ConditionKey::kRequestAuth},
      {"request.auth.presenter", ConditionKey::kRequestAuth},
      {"connection.sni", ConditionKey::kConnectionSni},
  };
  for (const auto& [name, kind] : kExact) {
    if (key == name) return kind;
  }
  auto bracketed = [&](std::string_view prefix) -> std::optional<std::string_view> {
    if (!key.starts_with(prefix) || !key.ends_with("]") || key.size() <= prefix.size() + 1)
      return std::nullopt;
    return key.substr(prefix.size(), key.size() - prefix.size() - 1);
  };
  if (auto name = bracketed("request.headers[")) {
    if (header_name != nullptr) header_name->assign(*name);
    return ConditionKey::kRequestHeader;
  }
  if (bracketed("request.auth.claims[")) return ConditionKey::kRequestAuth;
  return ConditionKey::kUnknown;
}

bool IsHttpConditionKey(ConditionKey key) {
  return key == ConditionKey::kRequestHeader || key == ConditionKey::kRemoteIp ||
         key == ConditionKey::kRequestAuth || key == ConditionKey::kConnectionSni;
}

std::vector<std::string> HttpAttributesOf(const PolicyRule& rule) {
  std::vector<std::string> out;
  auto add = [&out](bool present, std::string name) {
    if (present && std::find(out.begin(), out.end(), name) == out.end()) {
      out.push_back(std::move(name));
    }
  };
  for (const PolicySource& s : rule.from) {
    add(!s.remote_ip_blocks.empty(), "remoteIpBlocks");
    add(!s.not_remote_ip_blocks.empty(), "notRemoteIpBlocks");
    add(!s.request_principals.empty(), "requestPrincipals");
    add(!s.not_request_principals.empty(), "notRequestPrincipals");
  }
  for (const PolicyOperation& o : rule.to) {
    add(!o.hosts.empty(), "hosts");
    add(!o.not_hosts.empty(), "notHosts");
    add(!o.methods.empty(), "methods");
    add(!o.not_methods.empty(), "notMethods");
    add(!o.paths.empty(), "paths");
    add(!o.not_paths.empty(), "notPaths");
  }
  for (const PolicyCondition& c : rule.when) {
    add(IsHttpConditionKey(ClassifyConditionKey(c.key)), c.key);
  }
  return out;
}

bool HasHttpAttributes(const PolicyRule& rule) {
  for (const PolicySource& s : rule.from) {
    if (!s.remote_ip_blocks.empty() || !s.not_remote_ip_blocks.empty() ||
        !s.request_principals.empty() || !s.not_request_principals.empty())
      return true;
  }
  for (const PolicyOperation& o : rule.to) {
    if (!o.hosts.empty() || !o.not_hosts.empty() || !o.methods.empty() || !o.not_methods.empty() ||
        !o.paths.empty() || !o.not_paths.empty())
      return true;
  }
  for (const PolicyCondition& c : rule.when) {
    if (IsHttpConditionKey(ClassifyConditionKey(c.key))) return true;
  }
  return false;
}

}  // namespace podless::workloads
