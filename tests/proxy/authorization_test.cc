#include "proxy/authorization.h"

#include <doctest.h>

#include <vector>

namespace podless::proxy {
namespace {

using workloads::AuthorizationPolicy;
using workloads::Labels;
using workloads::PolicyAction;
using workloads::PolicyOperation;
using workloads::PolicyRule;
using workloads::PolicySource;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr char kOther[] = "spiffe://cluster.local/ns/other/sa/batch";

AuthorizationPolicy Policy(std::string name, PolicyAction action, std::vector<PolicyRule> rules,
                           Labels selector = {}, std::string ns = "shop") {
  AuthorizationPolicy p;
  p.metadata.name = std::move(name);
  p.metadata.ns = std::move(ns);
  p.action = action;
  p.rules = std::move(rules);
  p.selector = std::move(selector);
  return p;
}

PolicySource Source(std::vector<std::string> principals, std::vector<std::string> not_principals,
                    std::vector<std::string> namespaces, std::vector<std::string> not_namespaces) {
  PolicySource source;
  source.principals = std::move(principals);
  source.not_principals = std::move(not_principals);
  source.namespaces = std::move(namespaces);
  source.not_namespaces = std::move(not_namespaces);
  return source;
}

PolicyOperation Operation(std::vector<uint16_t> ports, std::vector<uint16_t> not_ports) {
  PolicyOperation operation;
  operation.ports = std::move(ports);
  operation.not_ports = std::move(not_ports);
  return operation;
}

PolicyRule FromPrincipals(std::vector<std::string> principals) {
  PolicyRule rule;
  rule.from.push_back(Source(std::move(principals), {}, {}, {}));
  return rule;
}

PolicyRule ToPorts(std::vector<uint16_t> ports) {
  PolicyRule rule;
  rule.to.push_back(Operation(std::move(ports), {}));
  return rule;
}

// A request from `principal` to a web workload (app=web) in shop on 8080.
struct Fixture {
  Labels labels{{"app", "web"}, {"tier", "front"}};

  AuthzDecision Check(std::string_view principal, std::vector<const AuthorizationPolicy*> policies,
                      uint16_t port = 8080) {
    AuthzRequest request{principal, PrincipalNamespace(principal), "shop", labels, port};
    return Authorize(request, policies);
  }
};

TEST_CASE("Authorize: no policy allows everything") {
  Fixture f;
  AuthzDecision d = f.Check(kFrontend, {});
  CHECK(d.allowed);
  CHECK(d.policy.empty());
  CHECK(f.Check("", {}).allowed);
}

TEST_CASE("Authorize: an ALLOW policy admits matching principals only") {
  Fixture f;
  AuthorizationPolicy allow =
      Policy("web-allow", PolicyAction::kAllow, {FromPrincipals({kFrontend})}, {{"app", "web"}});
  AuthzDecision yes = f.Check(kFrontend, {&allow});
  CHECK(yes.allowed);
  CHECK(yes.policy == "shop/web-allow");
  AuthzDecision no = f.Check(kOther, {&allow});
  CHECK_FALSE(no.allowed);
  CHECK(no.reason.find("no rule matches in the 1 ALLOW policy") != std::string::npos);
  CHECK_FALSE(f.Check("", {&allow}).allowed);  // plaintext has no principal
}

TEST_CASE("Authorize: DENY wins over ALLOW") {
  Fixture f;
  AuthorizationPolicy allow = Policy("allow-all", PolicyAction::kAllow, {PolicyRule{}});
  AuthorizationPolicy deny =
      Policy("deny-frontend", PolicyAction::kDeny, {FromPrincipals({kFrontend})});
  AuthzDecision d = f.Check(kFrontend, {&allow, &deny});
  CHECK_FALSE(d.allowed);
  CHECK(d.policy == "shop/deny-frontend");
  CHECK(d.reason == "denied by DENY policy shop/deny-frontend (rule 0)");
  CHECK(f.Check(kOther, {&allow, &deny}).allowed);
}

TEST_CASE("Authorize: ALLOW without rules allows nothing, DENY without rules denies nothing") {
  Fixture f;
  AuthorizationPolicy allow_none = Policy("allow-nothing", PolicyAction::kAllow, {});
  AuthorizationPolicy deny_none = Policy("deny-nothing", PolicyAction::kDeny, {});
  CHECK_FALSE(f.Check(kFrontend, {&allow_none}).allowed);
  CHECK(f.Check(kFrontend, {&deny_none}).allowed);
  // An empty rule, by contrast, matches every connection.
  AuthorizationPolicy deny_all = Policy("deny-all", PolicyAction::kDeny, {PolicyRule{}});
  CHECK_FALSE(f.Check(kFrontend, {&deny_all}).allowed);
}

TEST_CASE("Authorize: policies of another namespace or with a non-matching selector do not apply") {
  Fixture f;
  AuthorizationPolicy other_ns =
      Policy("deny-all", PolicyAction::kDeny, {PolicyRule{}}, {}, "other");
  AuthorizationPolicy root_ns =
      Policy("deny-all", PolicyAction::kDeny, {PolicyRule{}}, {}, "istio-system");
  AuthorizationPolicy other_app =
      Policy("deny-db", PolicyAction::kDeny, {PolicyRule{}}, {{"app", "db"}});
  AuthorizationPolicy allow_db =
      Policy("allow-db", PolicyAction::kAllow, {PolicyRule{}}, {{"app", "db"}});
  AuthzDecision d = f.Check(kFrontend, {&other_ns, &root_ns, &other_app, &allow_db});
  CHECK(d.allowed);
  CHECK(d.reason == "allowed: no ALLOW policy selects the destination");
  // A selector that is a subset of the labels does match.
  AuthorizationPolicy subset =
      Policy("deny-front", PolicyAction::kDeny, {PolicyRule{}}, {{"tier", "front"}});
  CHECK_FALSE(f.Check(kFrontend, {&subset}).allowed);
}

TEST_CASE("Authorize: rules match on destination ports and notPorts") {
  Fixture f;
  AuthorizationPolicy allow = Policy("allow-8080", PolicyAction::kAllow, {ToPorts({8080, 9090})});
  CHECK(f.Check(kFrontend, {&allow}, 8080).allowed);
  CHECK(f.Check(kFrontend, {&allow}, 9090).allowed);
  CHECK_FALSE(f.Check(kFrontend, {&allow}, 8081).allowed);

  PolicyRule not_admin;
  not_admin.to.push_back(Operation({}, {15000}));
  AuthorizationPolicy deny = Policy("deny-not-admin", PolicyAction::kDeny, {not_admin});
  CHECK_FALSE(f.Check(kFrontend, {&deny}, 8080).allowed);
  CHECK(f.Check(kFrontend, {&deny}, 15000).allowed);
}

TEST_CASE("Authorize: from and to of one rule must both match (AND), rules are OR") {
  Fixture f;
  PolicyRule both = FromPrincipals({kFrontend});
  both.to.push_back(Operation({8080}, {}));
  AuthorizationPolicy allow = Policy("allow", PolicyAction::kAllow, {both, ToPorts({9090})});
  CHECK(f.Check(kFrontend, {&allow}, 8080).allowed);
  CHECK_FALSE(f.Check(kOther, {&allow}, 8080).allowed);     // from fails
  CHECK_FALSE(f.Check(kFrontend, {&allow}, 7070).allowed);  // to fails
  AuthzDecision second = f.Check(kOther, {&allow}, 9090);   // second rule
  CHECK(second.allowed);
  CHECK(second.reason == "allowed by ALLOW policy shop/allow (rule 1)");
}

TEST_CASE("Authorize: source namespaces, notNamespaces and notPrincipals") {
  Fixture f;
  PolicyRule from_shop;
  from_shop.from.push_back(Source({}, {}, {"shop"}, {}));
  AuthorizationPolicy allow = Policy("same-ns", PolicyAction::kAllow, {from_shop});
  CHECK(f.Check(kFrontend, {&allow}).allowed);
  CHECK_FALSE(f.Check(kOther, {&allow}).allowed);
  CHECK_FALSE(f.Check("", {&allow}).allowed);

  PolicyRule outside;
  outside.from.push_back(Source({}, {}, {}, {"shop"}));
  AuthorizationPolicy deny_outside = Policy("deny-outside", PolicyAction::kDeny, {outside});
  CHECK(f.Check(kFrontend, {&deny_outside}).allowed);
  CHECK_FALSE(f.Check(kOther, {&deny_outside}).allowed);

  // Within one source every list must match: namespace shop but not the
  // frontend principal.
  PolicyRule shop_but_frontend;
  shop_but_frontend.from.push_back(Source({}, {kFrontend}, {"shop"}, {}));
  AuthorizationPolicy deny = Policy("deny", PolicyAction::kDeny, {shop_but_frontend});
  CHECK(f.Check(kFrontend, {&deny}).allowed);
  CHECK_FALSE(f.Check("spiffe://cluster.local/ns/shop/sa/cart", {&deny}).allowed);
  CHECK(f.Check(kOther, {&deny}).allowed);
}

TEST_CASE(
    "Authorize: principals [\"*\"] requires mTLS; notPrincipals [\"*\"] admits only plaintext") {
  Fixture f;
  AuthorizationPolicy mtls = Policy("require-mtls", PolicyAction::kAllow, {FromPrincipals({"*"})});
  CHECK(f.Check(kOther, {&mtls}).allowed);
  CHECK_FALSE(f.Check("", {&mtls}).allowed);

  PolicyRule plaintext;
  plaintext.from.push_back(Source({}, {"*"}, {}, {}));
  AuthorizationPolicy deny_plaintext = Policy("deny-plaintext", PolicyAction::kDeny, {plaintext});
  CHECK_FALSE(f.Check("", {&deny_plaintext}).allowed);
  CHECK(f.Check(kFrontend, {&deny_plaintext}).allowed);
}

TEST_CASE("PrincipalMatches: exact, wildcard, prefix, suffix, with or without spiffe://") {
  CHECK(PrincipalMatches("cluster.local/ns/shop/sa/frontend", kFrontend));
  CHECK(PrincipalMatches(kFrontend, "cluster.local/ns/shop/sa/frontend"));
  CHECK(PrincipalMatches("cluster.local/ns/shop/*", kFrontend));
  CHECK(PrincipalMatches("spiffe://cluster.local/ns/shop/*", kFrontend));
  CHECK_FALSE(PrincipalMatches("cluster.local/ns/other/*", kFrontend));
  CHECK(PrincipalMatches("*/sa/frontend", kFrontend));
  CHECK_FALSE(PrincipalMatches("*/sa/backend", kFrontend));
  CHECK(PrincipalMatches("*", kFrontend));
  CHECK_FALSE(PrincipalMatches("*", ""));
  CHECK_FALSE(PrincipalMatches("", ""));
  CHECK_FALSE(PrincipalMatches("cluster.local/ns/shop/sa/front", kFrontend));
  CHECK(MatchesPattern("prod-*", "prod-eu"));
  CHECK(MatchesPattern("*-eu", "prod-eu"));
  CHECK_FALSE(MatchesPattern("prod-*", "dev-eu"));
}

TEST_CASE("PrincipalNamespace: reads the ns segment of a SPIFFE ID") {
  CHECK(PrincipalNamespace(kFrontend) == "shop");
  CHECK(PrincipalNamespace("cluster.local/ns/other/sa/x") == "other");
  CHECK(PrincipalNamespace("spiffe://cluster.local/sa/x") == "");
  CHECK(PrincipalNamespace("") == "");
  CHECK(PrincipalNamespace("spiffe://ns/ns/a/sa/b") == "a");
}

}  // namespace
}  // namespace podless::proxy
