#include "proxy/authorization.h"

#include <algorithm>

namespace podless::proxy {
namespace {

using workloads::AuthorizationPolicy;
using workloads::PolicyAction;
using workloads::PolicyOperation;
using workloads::PolicyRule;
using workloads::PolicySource;

constexpr std::string_view kSpiffeScheme = "spiffe://";

std::string_view StripSpiffeScheme(std::string_view principal) {
  if (principal.starts_with(kSpiffeScheme)) principal.remove_prefix(kSpiffeScheme.size());
  return principal;
}

bool AnyPrincipalMatches(const std::vector<std::string>& patterns, std::string_view principal) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return PrincipalMatches(p, principal); });
}

bool AnyMatches(const std::vector<std::string>& patterns, std::string_view value) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return MatchesPattern(p, value); });
}

bool Contains(const std::vector<uint16_t>& ports, uint16_t port) {
  return std::find(ports.begin(), ports.end(), port) != ports.end();
}

// Every non-empty list of the source must match (AND); within a list any
// entry does (OR); a not-list matches when none of its entries does.
bool SourceMatches(const PolicySource& source, const AuthzRequest& request) {
  if (!source.principals.empty() &&
      !AnyPrincipalMatches(source.principals, request.source_principal))
    return false;
  if (!source.not_principals.empty() &&
      AnyPrincipalMatches(source.not_principals, request.source_principal))
    return false;
  if (!source.namespaces.empty() && !AnyMatches(source.namespaces, request.source_namespace))
    return false;
  if (!source.not_namespaces.empty() && AnyMatches(source.not_namespaces, request.source_namespace))
    return false;
  return true;
}

bool OperationMatches(const PolicyOperation& operation, uint16_t port) {
  if (!operation.ports.empty() && !Contains(operation.ports, port)) return false;
  if (!operation.not_ports.empty() && Contains(operation.not_ports, port)) return false;
  return true;
}

bool RuleMatches(const PolicyRule& rule, const AuthzRequest& request) {
  bool from = rule.from.empty() ||
              std::any_of(rule.from.begin(), rule.from.end(),
                          [&](const PolicySource& s) { return SourceMatches(s, request); });
  if (!from) return false;
  return rule.to.empty() ||
         std::any_of(rule.to.begin(), rule.to.end(), [&](const PolicyOperation& o) {
           return OperationMatches(o, request.dest_port);
         });
}

// The index of the first matching rule, or -1.
int MatchingRule(const AuthorizationPolicy& policy, const AuthzRequest& request) {
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    if (RuleMatches(policy.rules[i], request)) return static_cast<int>(i);
  }
  return -1;
}

std::string PolicyName(const AuthorizationPolicy& policy) {
  return policy.metadata.ns + "/" + policy.metadata.name;
}

}  // namespace

bool MatchesPattern(std::string_view pattern, std::string_view value) {
  if (value.empty()) return false;
  if (pattern == "*") return true;
  if (pattern.size() > 1 && pattern.back() == '*') {
    return value.starts_with(pattern.substr(0, pattern.size() - 1));
  }
  if (pattern.size() > 1 && pattern.front() == '*') return value.ends_with(pattern.substr(1));
  return pattern == value;
}

bool PrincipalMatches(std::string_view pattern, std::string_view principal) {
  return MatchesPattern(StripSpiffeScheme(pattern), StripSpiffeScheme(principal));
}

std::string_view PrincipalNamespace(std::string_view principal) {
  std::string_view rest = StripSpiffeScheme(principal);
  size_t slash = rest.find('/');  // after the trust domain
  if (slash == std::string_view::npos) return {};
  rest.remove_prefix(slash + 1);
  if (!rest.starts_with("ns/")) return {};
  rest.remove_prefix(3);
  return rest.substr(0, rest.find('/'));
}

bool PolicyApplies(const AuthorizationPolicy& policy, std::string_view dest_namespace,
                   const workloads::Labels& dest_labels) {
  return policy.metadata.ns == dest_namespace &&
         workloads::LabelsMatch(policy.selector, dest_labels);
}

AuthzDecision Authorize(const AuthzRequest& request,
                        std::span<const AuthorizationPolicy* const> policies_in_scope) {
  // DENY first: one matching rule anywhere decides.
  for (const AuthorizationPolicy* policy : policies_in_scope) {
    if (policy->action != PolicyAction::kDeny) continue;
    if (!PolicyApplies(*policy, request.dest_namespace, request.dest_labels)) continue;
    int rule = MatchingRule(*policy, request);
    if (rule >= 0) {
      std::string name = PolicyName(*policy);
      return {false, name,
              "denied by DENY policy " + name + " (rule " + std::to_string(rule) + ")"};
    }
  }
  size_t allow_policies = 0;
  for (const AuthorizationPolicy* policy : policies_in_scope) {
    if (policy->action != PolicyAction::kAllow) continue;
    if (!PolicyApplies(*policy, request.dest_namespace, request.dest_labels)) continue;
    ++allow_policies;
    int rule = MatchingRule(*policy, request);
    if (rule >= 0) {
      std::string name = PolicyName(*policy);
      return {true, name,
              "allowed by ALLOW policy " + name + " (rule " + std::to_string(rule) + ")"};
    }
  }
  if (allow_policies > 0) {
    return {false, "",
            "denied: no rule matches in the " + std::to_string(allow_policies) +
                (allow_policies == 1 ? " ALLOW policy" : " ALLOW policies") +
                " selecting the destination"};
  }
  return {true, "", "allowed: no ALLOW policy selects the destination"};
}

}  // namespace podless::proxy
