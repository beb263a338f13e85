#include "proxy/authorization.h"

#include <doctest.h>

#include <string>
#include <vector>

#include "workloads/manifest_parser.h"

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

// --- Istio's other attributes, the root namespace, HTTP ports --------------

// One AuthorizationPolicy from its manifest (`spec` only, in namespace shop
// unless `ns` says otherwise); fails the test when it does not parse.
AuthorizationPolicy Parse(const std::string& spec, const std::string& ns = "shop") {
  std::string text =
      "apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\n"
      "metadata: {name: p, namespace: " +
      ns + "}\nspec:\n" + spec;
  workloads::ParseResult parsed = workloads::ParseManifests(text, "policy.yaml");
  for (const auto& e : parsed.errors) FAIL_CHECK(e.ToString());
  REQUIRE(parsed.objects.size() == 1);
  return std::get<AuthorizationPolicy>(parsed.objects[0].object);
}

Http1Request HttpRequest(std::string method, std::string target, std::string host = "web",
                         Http1Headers extra = {}) {
  Http1Request request;
  request.method = std::move(method);
  request.target = std::move(target);
  request.version = "HTTP/1.1";
  request.headers.emplace_back("Host", std::move(host));
  for (auto& header : extra) request.headers.push_back(std::move(header));
  return request;
}

// A connection or a request to web (app=web) in shop, at 127.64.0.9.
struct Call {
  Labels labels{{"app", "web"}};
  std::string principal = kFrontend;
  uint32_t source_ip = 0x7f400005;  // 127.64.0.5
  uint16_t port = 8080;
  bool http_port = false;
  std::string root = "istio-system";
  std::string dest_ns = "shop";

  AuthzDecision Check(const std::vector<const AuthorizationPolicy*>& policies,
                      const Http1Request* http = nullptr) const {
    AuthzRequest request{principal,  PrincipalNamespace(principal),
                         dest_ns,    labels,
                         port,       source_ip,
                         0x7f400009, root,
                         http_port,  http};
    return Authorize(request, policies);
  }
  bool Allowed(const AuthorizationPolicy& policy, const Http1Request* http = nullptr) const {
    AuthzDecision d = Check({&policy}, http);
    CHECK_FALSE(d.per_request);  // every caller here expects a final decision
    return d.allowed;
  }
};

TEST_CASE("Authorize: serviceAccounts are ns/sa, or sa in the policy's namespace") {
  Call call;
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {serviceAccounts: [frontend]}}]}]\n")));
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {serviceAccounts: [shop/frontend]}}]}]\n")));
  CHECK_FALSE(
      call.Allowed(Parse("  rules: [{from: [{source: {serviceAccounts: [other/frontend]}}]}]\n")));
  CHECK_FALSE(call.Allowed(Parse("  rules: [{from: [{source: {serviceAccounts: [front]}}]}]\n")));
  CHECK_FALSE(
      call.Allowed(Parse("  rules: [{from: [{source: {notServiceAccounts: [frontend]}}]}]\n")));
  call.principal = kOther;  // other/batch
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {notServiceAccounts: [frontend]}}]}]\n")));
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {serviceAccounts: [other/batch]}}]}]\n")));
  call.principal.clear();  // plaintext has no service account
  CHECK_FALSE(call.Allowed(Parse("  rules: [{from: [{source: {serviceAccounts: [default]}}]}]\n")));
}

TEST_CASE("Authorize: ipBlocks and notIpBlocks match the source address") {
  Call call;  // from 127.64.0.5
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {ipBlocks: [127.64.0.0/16]}}]}]\n")));
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {ipBlocks: [127.64.0.5]}}]}]\n")));
  CHECK_FALSE(call.Allowed(Parse("  rules: [{from: [{source: {ipBlocks: [127.64.0.6]}}]}]\n")));
  CHECK_FALSE(call.Allowed(Parse("  rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}]}]\n")));
  CHECK_FALSE(
      call.Allowed(Parse("  rules: [{from: [{source: {notIpBlocks: [127.64.0.0/29]}}]}]\n")));
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {ipBlocks: [0.0.0.0/0]}}]}]\n")));
  CHECK_FALSE(call.Allowed(Parse("  rules: [{from: [{source: {ipBlocks: [\"::/0\"]}}]}]\n")));
}

TEST_CASE("Authorize: when conditions on L4 keys hold on every port") {
  Call call;
  auto when = [](const std::string& condition) {
    return Parse("  rules: [{when: [" + condition + "]}]\n");
  };
  CHECK(call.Allowed(when("{key: source.ip, values: [127.64.0.0/24]}")));
  CHECK_FALSE(call.Allowed(when("{key: source.ip, notValues: [127.64.0.5]}")));
  CHECK(call.Allowed(when("{key: destination.ip, values: [127.64.0.9]}")));
  CHECK(call.Allowed(when("{key: destination.port, values: [\"8080\"]}")));
  CHECK_FALSE(call.Allowed(when("{key: destination.port, values: [\"9090\"]}")));
  CHECK(call.Allowed(when("{key: source.namespace, values: [sh*]}")));
  CHECK_FALSE(call.Allowed(when("{key: source.namespace, notValues: [shop]}")));
  CHECK(call.Allowed(when("{key: source.principal, values: [cluster.local/ns/shop/sa/*]}")));
  // Every condition of a rule must hold.
  CHECK_FALSE(
      call.Allowed(Parse("  rules: [{when: [{key: source.ip, values: [127.64.0.5]}, "
                         "{key: destination.port, values: [\"1\"]}]}]\n")));
}

TEST_CASE("Authorize: on TCP ports an ALLOW rule with HTTP attributes matches nothing (ztunnel)") {
  Call call;  // port 8080 is TCP
  CHECK_FALSE(call.Allowed(Parse("  rules: [{to: [{operation: {methods: [GET]}}]}]\n")));
  CHECK_FALSE(
      call.Allowed(Parse("  rules: [{to: [{operation: {ports: [\"8080\"], paths: [/a]}}]}]\n")));
  CHECK_FALSE(call.Allowed(
      Parse("  rules: [{when: [{key: \"request.headers[x-user]\", values: [alice]}]}]\n")));
  CHECK_FALSE(call.Allowed(Parse("  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]\n")));
  // Another rule without HTTP attributes still allows.
  CHECK(
      call.Allowed(Parse("  rules:\n  - to: [{operation: {methods: [GET]}}]\n"
                         "  - from: [{source: {namespaces: [shop]}}]\n")));
}

TEST_CASE(
    "Authorize: on TCP ports a DENY rule keeps its L4 part only, so it denies more (ztunnel)") {
  Call call;
  // The method is ignored: every connection on the port is denied.
  CHECK_FALSE(call.Allowed(Parse(
      "  action: DENY\n  rules: [{to: [{operation: {ports: [\"8080\"], methods: [POST]}}]}]\n")));
  // Its L4 part still has to match.
  CHECK(call.Allowed(Parse(
      "  action: DENY\n  rules: [{to: [{operation: {ports: [\"9090\"], methods: [POST]}}]}]\n")));
  CHECK_FALSE(call.Allowed(Parse(
      "  action: DENY\n  rules: [{when: [{key: \"request.headers[x-a]\", values: [b]}]}]\n")));
}

TEST_CASE("Authorize: on HTTP ports methods, paths and hosts decide each request") {
  Call call;
  call.http_port = true;
  AuthorizationPolicy allow = Parse(
      "  rules: [{to: [{operation: {methods: [GET, \"HE*\"], paths: [/api/*, /health], "
      "hosts: [\"web.shop.svc*\", web]}}]}]\n");
  // The connection cannot be decided before its requests.
  AuthzDecision connection = call.Check({&allow});
  CHECK(connection.allowed);
  CHECK(connection.per_request);
  Http1Request get = HttpRequest("GET", "/api/items?x=1");
  Http1Request head = HttpRequest("HEAD", "/health");
  Http1Request post = HttpRequest("POST", "/api/items");
  Http1Request other_path = HttpRequest("GET", "/admin");
  Http1Request dotted = HttpRequest("GET", "/api/../admin");
  Http1Request host_port = HttpRequest("GET", "/health", "WEB.shop.svc.cluster.local:8080");
  Http1Request other_host = HttpRequest("GET", "/health", "evil");
  CHECK(call.Allowed(allow, &get));
  CHECK(call.Allowed(allow, &head));
  CHECK_FALSE(call.Allowed(allow, &post));
  CHECK_FALSE(call.Allowed(allow, &other_path));
  CHECK_FALSE(call.Allowed(allow, &dotted));  // normalized to /admin
  CHECK(call.Allowed(allow, &host_port));     // case-insensitive, port ignored
  CHECK_FALSE(call.Allowed(allow, &other_host));

  AuthorizationPolicy deny = Parse(
      "  action: DENY\n  rules: [{to: [{operation: {notMethods: [GET], notPaths: "
      "[\"*.css\"]}}]}]\n");
  Http1Request css = HttpRequest("POST", "/site.css");
  CHECK(call.Allowed(deny, &get));
  CHECK_FALSE(call.Allowed(deny, &post));
  CHECK(call.Allowed(deny, &css));
}

TEST_CASE("Authorize: on HTTP ports L4 parts still decide the connection at once") {
  Call call;
  call.http_port = true;
  // Another namespace's caller can never match: refused before any request.
  AuthorizationPolicy allow = Parse(
      "  rules: [{from: [{source: {namespaces: [other]}}], to: [{operation: {methods: "
      "[GET]}}]}]\n");
  AuthzDecision d = call.Check({&allow});
  CHECK_FALSE(d.allowed);
  CHECK_FALSE(d.per_request);
  // An L4 DENY match refuses the connection; an L4 ALLOW match without any
  // pending DENY admits it without per-request checks.
  AuthorizationPolicy deny =
      Parse("  action: DENY\n  rules: [{from: [{source: {namespaces: [shop]}}]}]\n");
  CHECK_FALSE(call.Check({&deny}).allowed);
  AuthorizationPolicy l4 = Parse("  rules: [{from: [{source: {namespaces: [shop]}}]}]\n");
  d = call.Check({&l4});
  CHECK(d.allowed);
  CHECK_FALSE(d.per_request);
  // A DENY rule with HTTP attributes keeps the check per request.
  AuthorizationPolicy deny_post =
      Parse("  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n");
  d = call.Check({&l4, &deny_post});
  CHECK(d.allowed);
  CHECK(d.per_request);
  Http1Request post = HttpRequest("POST", "/");
  CHECK_FALSE(call.Check({&l4, &deny_post}, &post).allowed);
}

TEST_CASE("Authorize: request headers, remote.ip, request principals on HTTP ports") {
  Call call;
  call.http_port = true;
  AuthorizationPolicy header =
      Parse("  rules: [{when: [{key: \"request.headers[X-User]\", values: [\"ali*\"]}]}]\n");
  Http1Request alice = HttpRequest("GET", "/", "web", {{"x-user", "alice"}});
  Http1Request bob = HttpRequest("GET", "/", "web", {{"x-user", "bob"}});
  Http1Request none = HttpRequest("GET", "/");
  CHECK(call.Allowed(header, &alice));
  CHECK_FALSE(call.Allowed(header, &bob));
  CHECK_FALSE(call.Allowed(header, &none));
  CHECK(
      call.Allowed(Parse("  rules: [{when: [{key: remote.ip, values: [127.64.0.5]}]}]\n"), &none));
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {remoteIpBlocks: [127.0.0.0/8]}}]}]\n"),
                     &none));
  // No JWT is ever validated: no request principal, no claims.
  CHECK_FALSE(
      call.Allowed(Parse("  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]\n"), &none));
  CHECK(call.Allowed(Parse("  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]\n"),
                     &none));
  CHECK_FALSE(call.Allowed(
      Parse("  rules: [{when: [{key: request.auth.principal, values: [\"*\"]}]}]\n"), &none));
}

TEST_CASE("Authorize: a policy in the root namespace applies to every namespace") {
  Call call;
  AuthorizationPolicy mesh_wide = Parse("  action: DENY\n  rules: [{}]\n", "istio-system");
  AuthorizationPolicy selected = Parse(
      "  selector: {matchLabels: {app: db}}\n  action: DENY\n  rules: [{}]\n", "istio-system");
  CHECK_FALSE(call.Check({&mesh_wide}).allowed);
  CHECK(call.Check({&selected}).allowed);  // its selector does not match app=web
  call.labels = {{"app", "db"}};
  CHECK_FALSE(call.Check({&selected}).allowed);
  call.root = "";  // --root-namespace "": no root namespace
  CHECK(call.Check({&mesh_wide}).allowed);
  call.root = "mesh";
  CHECK(call.Check({&mesh_wide}).allowed);  // istio-system is an ordinary namespace then
  CHECK(PolicyApplies(mesh_wide, "anything", {}, "istio-system"));
  CHECK_FALSE(PolicyApplies(mesh_wide, "anything", {}));
}

TEST_CASE("NormalizedRequestPath: query, fragment and dot-segments removed") {
  CHECK(NormalizedRequestPath("/a/b?c=d") == "/a/b");
  CHECK(NormalizedRequestPath("/a/./b/../c#x") == "/a/c");
  CHECK(NormalizedRequestPath("/../../etc") == "/etc");
  CHECK(NormalizedRequestPath("/a/") == "/a/");
  CHECK(NormalizedRequestPath("/a/..") == "/");
  CHECK(NormalizedRequestPath("http://web:80/x/y?z") == "/x/y");
  CHECK(NormalizedRequestPath("http://web") == "/");
  CHECK(PrincipalServiceAccount("spiffe://cluster.local/ns/shop/sa/web") == "web");
  CHECK(PrincipalServiceAccount("cluster.local/ns/shop/sa/web/x").empty());
}

}  // namespace
}  // namespace podless::proxy
