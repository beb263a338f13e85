#include "proxy/authorization.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "workloads/policy_values.h"

namespace podless::proxy {
namespace {

using workloads::AuthorizationPolicy;
using workloads::ConditionKey;
using workloads::PolicyAction;
using workloads::PolicyCondition;
using workloads::PolicyOperation;
using workloads::PolicyRule;
using workloads::PolicySource;

constexpr std::string_view kSpiffeScheme = "spiffe://";

// A match while the request is not known yet: kMaybe when only HTTP
// attributes (of requests to come) can decide it.
enum class Match { kNo, kYes, kMaybe };

Match And(Match a, Match b) {
  if (a == Match::kNo || b == Match::kNo) return Match::kNo;
  if (a == Match::kMaybe || b == Match::kMaybe) return Match::kMaybe;
  return Match::kYes;
}

Match FromBool(bool value) { return value ? Match::kYes : Match::kNo; }

std::string_view StripSpiffeScheme(std::string_view principal) {
  if (principal.starts_with(kSpiffeScheme)) principal.remove_prefix(kSpiffeScheme.size());
  return principal;
}

template <typename Pred>
bool Any(const std::vector<std::string>& values, Pred pred) {
  return std::any_of(values.begin(), values.end(), pred);
}

// A list and its not-list: any entry of the first (when set), none of the second.
template <typename Pred>
bool Listed(const std::vector<std::string>& in, const std::vector<std::string>& not_in, Pred pred) {
  return (in.empty() || Any(in, pred)) && (not_in.empty() || !Any(not_in, pred));
}

bool InBlock(std::string_view block, uint32_t ip) {
  std::string why;
  auto parsed = workloads::ParseIpBlock(block, &why);
  return ip != 0 && parsed && parsed->Contains(ip);
}

bool Contains(const std::vector<uint16_t>& ports, uint16_t port) {
  return std::find(ports.begin(), ports.end(), port) != ports.end();
}

bool EqualsLower(std::string_view pattern_part, std::string_view value_part) {
  return EqualsIgnoreCase(pattern_part, value_part);
}

// MatchesPattern, ASCII case-insensitive (hosts).
bool MatchesPatternIgnoreCase(std::string_view pattern, std::string_view value) {
  if (value.empty()) return false;
  if (pattern == "*") return true;
  if (pattern.size() > 1 && pattern.back() == '*') {
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);
    return value.size() >= prefix.size() && EqualsLower(prefix, value.substr(0, prefix.size()));
  }
  if (pattern.size() > 1 && pattern.front() == '*') {
    std::string_view suffix = pattern.substr(1);
    return value.size() >= suffix.size() &&
           EqualsLower(suffix, value.substr(value.size() - suffix.size()));
  }
  return EqualsLower(pattern, value);
}

// Everything a rule is matched against, with the request's derived values
// computed once.
class Evaluation {
 public:
  explicit Evaluation(const AuthzRequest& request) : r_(request) {
    if (r_.http == nullptr) return;
    path_ = NormalizedRequestPath(r_.http->target);
    if (auto host = r_.http->Header("Host")) {
      host_ = std::string(*host);
    } else if (r_.http->target_form == RequestTargetForm::kAbsolute) {
      if (auto url = ParseAbsoluteUrl(r_.http->target); url.ok()) host_ = url->authority.host;
    }
  }

  Match Rule(const AuthorizationPolicy& policy, const PolicyRule& rule) const {
    // ztunnel: on a TCP port an ALLOW rule with HTTP attributes matches nothing.
    if (!r_.http_port && policy.action == PolicyAction::kAllow &&
        workloads::HasHttpAttributes(rule)) {
      return Match::kNo;
    }
    Match from = rule.from.empty() ? Match::kYes : Match::kNo;
    for (const PolicySource& s : rule.from) from = Or(from, Source(policy, s));
    Match to = rule.to.empty() ? Match::kYes : Match::kNo;
    for (const PolicyOperation& o : rule.to) to = Or(to, Operation(o));
    Match result = And(from, to);
    for (const PolicyCondition& c : rule.when) result = And(result, Condition(c));
    return result;
  }

 private:
  static Match Or(Match a, Match b) {
    if (a == Match::kYes || b == Match::kYes) return Match::kYes;
    if (a == Match::kMaybe || b == Match::kMaybe) return Match::kMaybe;
    return Match::kNo;
  }

  // An HTTP attribute: ignored on TCP ports (a DENY rule keeps its L4
  // part; ALLOW rules with one never get here), unknown until a request
  // comes on HTTP ports.
  template <typename Eval>
  Match Http(bool present, Eval eval) const {
    if (!present || !r_.http_port) return Match::kYes;
    if (r_.http == nullptr) return Match::kMaybe;
    return FromBool(eval());
  }

  Match Source(const AuthorizationPolicy& policy, const PolicySource& s) const {
    auto principal = [&](const std::string& p) { return PrincipalMatches(p, r_.source_principal); };
    auto ns = [&](const std::string& p) { return MatchesPattern(p, r_.source_namespace); };
    auto account = [&](const std::string& entry) {
      std::string_view want_ns = policy.metadata.ns;
      std::string_view want_sa = entry;
      if (size_t slash = entry.find('/'); slash != std::string::npos) {
        want_ns = want_sa.substr(0, slash);
        want_sa.remove_prefix(slash + 1);
      }
      return !r_.source_principal.empty() && PrincipalNamespace(r_.source_principal) == want_ns &&
             PrincipalServiceAccount(r_.source_principal) == want_sa;
    };
    auto source_ip = [&](const std::string& block) { return InBlock(block, r_.source_ip); };
    bool l4 = Listed(s.principals, s.not_principals, principal) &&
              Listed(s.namespaces, s.not_namespaces, ns) &&
              Listed(s.service_accounts, s.not_service_accounts, account) &&
              Listed(s.ip_blocks, s.not_ip_blocks, source_ip);
    if (!l4) return Match::kNo;
    // No JWTs are validated: a request has no request principal.
    auto request_principal = [](const std::string& p) { return MatchesPattern(p, ""); };
    return And(Http(!s.remote_ip_blocks.empty() || !s.not_remote_ip_blocks.empty(),
                    [&] { return Listed(s.remote_ip_blocks, s.not_remote_ip_blocks, source_ip); }),
               Http(!s.request_principals.empty() || !s.not_request_principals.empty(), [&] {
                 return Listed(s.request_principals, s.not_request_principals, request_principal);
               }));
  }

  Match Operation(const PolicyOperation& o) const {
    if (!o.ports.empty() && !Contains(o.ports, r_.dest_port)) return Match::kNo;
    if (!o.not_ports.empty() && Contains(o.not_ports, r_.dest_port)) return Match::kNo;
    auto host = [&](const std::string& p) {
      std::string_view full = host_;
      std::string_view bare = full;
      if (size_t colon = full.rfind(':');
          colon != std::string_view::npos && full.find(']', colon) == std::string_view::npos) {
        bare = full.substr(0, colon);
      }
      return MatchesPatternIgnoreCase(p, full) || MatchesPatternIgnoreCase(p, bare);
    };
    auto method = [&](const std::string& p) { return MatchesPattern(p, r_.http->method); };
    auto path = [&](const std::string& p) { return MatchesPattern(p, path_); };
    return And(And(Http(!o.hosts.empty() || !o.not_hosts.empty(),
                        [&] { return Listed(o.hosts, o.not_hosts, host); }),
                   Http(!o.methods.empty() || !o.not_methods.empty(),
                        [&] { return Listed(o.methods, o.not_methods, method); })),
               Http(!o.paths.empty() || !o.not_paths.empty(),
                    [&] { return Listed(o.paths, o.not_paths, path); }));
  }

  Match Condition(const PolicyCondition& c) const {
    std::string header;
    ConditionKey key = workloads::ClassifyConditionKey(c.key, &header);
    auto check = [&](auto pred) { return FromBool(Listed(c.values, c.not_values, pred)); };
    auto source_ip = [&](const std::string& v) { return InBlock(v, r_.source_ip); };
    switch (key) {
      case ConditionKey::kSourceIp:
        return check(source_ip);
      case ConditionKey::kDestinationIp:
        return check([&](const std::string& v) { return InBlock(v, r_.dest_ip); });
      case ConditionKey::kDestinationPort:
        return check([&](const std::string& v) { return v == std::to_string(r_.dest_port); });
      case ConditionKey::kSourceNamespace:
        return check([&](const std::string& v) { return MatchesPattern(v, r_.source_namespace); });
      case ConditionKey::kSourcePrincipal:
        return check(
            [&](const std::string& v) { return PrincipalMatches(v, r_.source_principal); });
      case ConditionKey::kRemoteIp:
        return Http(true, [&] { return Listed(c.values, c.not_values, source_ip); });
      case ConditionKey::kRequestHeader:
        return Http(true, [&] {
          // Several fields of one name count as one, joined by commas (RFC 9110).
          std::optional<std::string> value;
          for (const auto& [name, v] : r_.http->headers) {
            if (!EqualsIgnoreCase(name, header)) continue;
            value = value ? *value + "," + v : v;
          }
          return Listed(c.values, c.not_values, [&](const std::string& p) {
            return value.has_value() && MatchesPattern(p, *value);
          });
        });
      case ConditionKey::kRequestAuth:
      case ConditionKey::kConnectionSni:
        // Never present (see the header): only notValues can hold.
        return Http(true, [&] {
          return Listed(c.values, c.not_values, [](const std::string&) { return false; });
        });
      case ConditionKey::kUnknown:
        break;
    }
    return Match::kNo;  // validation refuses unknown keys; fail closed
  }

  const AuthzRequest& r_;
  std::string path_;
  std::string host_;
};

// The first rule that matches for sure, or whether one may match.
struct PolicyMatch {
  Match match = Match::kNo;
  size_t rule = 0;
};

PolicyMatch MatchPolicy(const Evaluation& evaluation, const AuthorizationPolicy& policy) {
  PolicyMatch out;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    Match m = evaluation.Rule(policy, policy.rules[i]);
    if (m == Match::kYes) return {Match::kYes, i};
    if (m == Match::kMaybe) out.match = Match::kMaybe;
  }
  return out;
}

std::string PolicyName(const AuthorizationPolicy& policy) {
  return policy.metadata.ns + "/" + policy.metadata.name;
}

}  // namespace

std::string RbacDeniedResponse() {
  std::string body(kRbacDeniedBody);
  return FormatResponseHead(403, "",
                            {{"Content-Length", std::to_string(body.size())},
                             {"Content-Type", "text/plain"},
                             {"Connection", "close"}}) +
         body;
}

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

std::string_view PrincipalServiceAccount(std::string_view principal) {
  std::string_view ns = PrincipalNamespace(principal);
  if (ns.empty()) return {};
  // ns points into principal: what follows it must be "/sa/<sa>".
  std::string_view rest = principal.substr(ns.data() + ns.size() - principal.data());
  if (!rest.starts_with("/sa/")) return {};
  rest.remove_prefix(4);
  return rest.find('/') == std::string_view::npos ? rest : std::string_view();
}

std::string NormalizedRequestPath(std::string_view target) {
  if (target.starts_with("http://") || target.starts_with("https://")) {
    size_t scheme_end = target.find("//") + 2;
    size_t slash = target.find('/', scheme_end);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  target = target.substr(0, target.find_first_of("?#"));
  // RFC 3986 section 5.2.4, segment by segment.
  std::vector<std::string_view> segments;
  bool trailing_slash = false;
  size_t start = target.starts_with('/') ? 1 : 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    if (end == std::string_view::npos) end = target.size();
    std::string_view segment = target.substr(start, end - start);
    bool last = end == target.size();
    if (segment == ".") {
      trailing_slash = last;
    } else if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
      trailing_slash = last;
    } else {
      segments.push_back(segment);
      trailing_slash = false;
    }
    start = end + 1;
  }
  std::string out;
  for (std::string_view segment : segments) {
    out += '/';
    out += segment;
  }
  if (trailing_slash || out.empty()) out += '/';
  return out;
}

bool PolicyApplies(const AuthorizationPolicy& policy, std::string_view dest_namespace,
                   const workloads::Labels& dest_labels, std::string_view root_namespace) {
  const bool in_scope = policy.metadata.ns == dest_namespace ||
                        (!root_namespace.empty() && policy.metadata.ns == root_namespace);
  return in_scope && workloads::LabelsMatch(policy.selector, dest_labels);
}

AuthzDecision Authorize(const AuthzRequest& request,
                        std::span<const AuthorizationPolicy* const> policies_in_scope) {
  const Evaluation evaluation(request);
  auto applies = [&](const AuthorizationPolicy& policy) {
    return PolicyApplies(policy, request.dest_namespace, request.dest_labels,
                         request.root_namespace);
  };
  // DENY first: one matching rule anywhere decides.
  std::string deny_pending;  // a DENY policy that requests may still match
  for (const AuthorizationPolicy* policy : policies_in_scope) {
    if (policy->action != PolicyAction::kDeny || !applies(*policy)) continue;
    PolicyMatch m = MatchPolicy(evaluation, *policy);
    if (m.match == Match::kYes) {
      std::string name = PolicyName(*policy);
      return {false, false, name,
              "denied by DENY policy " + name + " (rule " + std::to_string(m.rule) + ")"};
    }
    if (m.match == Match::kMaybe && deny_pending.empty()) deny_pending = PolicyName(*policy);
  }
  size_t allow_policies = 0;
  std::optional<AuthzDecision> allowed;
  std::string allow_pending;  // an ALLOW policy that requests may match
  for (const AuthorizationPolicy* policy : policies_in_scope) {
    if (policy->action != PolicyAction::kAllow || !applies(*policy)) continue;
    ++allow_policies;
    if (allowed) continue;
    PolicyMatch m = MatchPolicy(evaluation, *policy);
    if (m.match == Match::kYes) {
      std::string name = PolicyName(*policy);
      allowed = AuthzDecision{
          true, false, name,
          "allowed by ALLOW policy " + name + " (rule " + std::to_string(m.rule) + ")"};
    } else if (m.match == Match::kMaybe && allow_pending.empty()) {
      allow_pending = PolicyName(*policy);
    }
  }
  if (allow_policies > 0 && !allowed && allow_pending.empty()) {
    return {false, false, "",
            "denied: no rule matches in the " + std::to_string(allow_policies) +
                (allow_policies == 1 ? " ALLOW policy" : " ALLOW policies") +
                " selecting the destination"};
  }
  if (!deny_pending.empty() || (allow_policies > 0 && !allowed)) {
    return {true, true, deny_pending.empty() ? allow_pending : deny_pending,
            "admitted: HTTP attributes of policy " +
                (deny_pending.empty() ? allow_pending : deny_pending) + " decide each request"};
  }
  if (allowed) return *allowed;
  return {true, false, "", "allowed: no ALLOW policy selects the destination"};
}

}  // namespace podless::proxy
