#include "workloads/manifest_writer.h"

#include <doctest.h>

#include <string>
#include <tuple>

#include "workloads/manifest_parser.h"

namespace podless::workloads {
namespace {

// Writes, parses back, and checks the result is the same single object.
void CheckRoundTrip(const Object& object) {
  std::string yaml = WriteManifest(object);
  INFO(yaml);
  ParseResult result = ParseManifests(yaml, "written.yaml");
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.empty());
  REQUIRE(result.objects.size() == 1);
  CHECK(result.objects[0].object == object);
  // Canonical: writing the parsed object again gives the same text.
  CHECK(WriteManifest(result.objects[0].object) == yaml);
}

Workload RichExecWorkload() {
  Workload w;
  w.metadata = {"api", "shop", {{"app", "api"}, {"app.kubernetes.io/version", "1.0"}}};
  w.spec.replicas = 1000;
  w.spec.service_account = "api.shop";
  w.spec.ports = {{"http", 8080, Protocol::kHTTP}, {"", 9000, Protocol::kTCP}};
  ExecApp exec;
  exec.command = {"python3", "-m", "http.server", "$(PORT)", "--flag=a b", "", "123", "true"};
  exec.env = {{"MODE", "fast"}, {"EMPTY", ""}, {"JSON", "{\"a\": [1, 2]}"}, {"NUM", "0x10"}};
  exec.working_dir = "/srv/app";
  exec.restart_policy = RestartPolicy::kNever;
  Probe probe;
  probe.kind = Probe::Kind::kHttpGet;
  probe.port = {0, "http"};
  probe.path = "/healthz?full=1";
  probe.initial_delay_seconds = 3;
  probe.period_seconds = 7;
  probe.timeout_seconds = 2;
  probe.failure_threshold = 5;
  probe.success_threshold = 2;
  exec.readiness_probe = probe;
  exec.termination_grace_period_seconds = 0;
  w.spec.app = exec;
  return w;
}

}  // namespace

TEST_CASE("WriteManifest: a minimal Workload is written with its defaults") {
  Workload w;
  w.metadata.name = "hello";
  w.spec.ports = {{"http", 8080, Protocol::kHTTP}};
  CHECK(WriteManifest(w) == R"(apiVersion: podless.dev/v1alpha1
kind: Workload
metadata:
  name: hello
  namespace: default
spec:
  replicas: 1
  serviceAccount: default
  ports:
    - name: http
      port: 8080
      protocol: HTTP
  app:
    echo: {}
)");
  CheckRoundTrip(w);

  w.spec.ports.clear();
  CHECK(WriteManifest(w).find("  ports: []\n") != std::string::npos);
  CheckRoundTrip(w);
}

TEST_CASE("WriteManifest: round trip of a Workload with every exec field") {
  CheckRoundTrip(RichExecWorkload());

  Workload tcp = RichExecWorkload();
  ExecApp& exec = std::get<ExecApp>(tcp.spec.app);
  exec.readiness_probe->kind = Probe::Kind::kTcpSocket;
  exec.readiness_probe->port = {9000, ""};
  exec.readiness_probe->path = "/";  // not written for tcpSocket, so the default
  exec.restart_policy = RestartPolicy::kOnFailure;
  exec.env.clear();
  exec.working_dir.clear();
  CheckRoundTrip(tcp);

  exec.readiness_probe.reset();
  exec.restart_policy = RestartPolicy::kAlways;
  CheckRoundTrip(tcp);
}

TEST_CASE("WriteManifest: round trip of an exec app's containers") {
  Workload w = RichExecWorkload();
  ExecContainers& containers = std::get<ExecApp>(w.spec.app).containers.mutable_value();
  containers.name = "web";
  ExecContainer poller;
  poller.name = "poller";
  poller.command = {"sh", "-c", "curl 127.0.0.1:$(PORT)"};
  poller.env = {{"ROLE", "poller"}};
  poller.working_dir = "/tmp";
  Probe probe;
  probe.kind = Probe::Kind::kTcpSocket;
  probe.port = {9000, ""};
  poller.readiness_probe = probe;
  containers.more.push_back(poller);
  ExecContainer bare;
  bare.name = "bare";
  bare.command = {"true"};
  containers.more.push_back(bare);
  CheckRoundTrip(w);
  const std::string yaml = WriteManifest(w);
  CHECK(yaml.find("    exec:\n      name: web\n      command:") != std::string::npos);
  CHECK(yaml.find("      containers:\n        - name: poller\n") != std::string::npos);
}

TEST_CASE("WriteManifest: round trip of an exec app's sandbox, quantities in canonical form") {
  Workload w = RichExecWorkload();
  ExecSandbox& sandbox = std::get<ExecApp>(w.spec.app).sandbox.mutable_value();
  sandbox.security_context = {1000, 2000, true};
  sandbox.limits = {128u << 20, 500, 64};
  sandbox.keep_working_dir = true;
  CheckRoundTrip(w);
  const std::string yaml = WriteManifest(w);
  CHECK(yaml.find("      terminationGracePeriodSeconds: 0\n"
                  "      securityContext:\n"
                  "        runAsUser: 1000\n"
                  "        runAsGroup: 2000\n"
                  "        runAsNonRoot: true\n"
                  "      resources:\n"
                  "        limits:\n"
                  "          memory: 128Mi\n"
                  "          cpu: 500m\n"
                  "          pids: 64\n"
                  "      keepWorkingDir: true\n") != std::string::npos);

  // Each quantity in the largest exact unit, binary unless decimal is shorter.
  const std::tuple<uint64_t, uint32_t, const char*> canonical[] = {
      {uint64_t{1} << 30, 2000, "memory: 1Gi\n          cpu: 2\n"},
      {1000000000, 2250, "memory: 1G\n          cpu: 2250m\n"},
      {1536 * 1024, 1, "memory: 1536Ki\n          cpu: 1m\n"},
      {1048577, 4294967295u, "memory: 1048577\n          cpu: 4294967295m\n"},
      {uint64_t{15} << 60, 1000000, "memory: 15Ei\n          cpu: 1000\n"},
  };
  for (const auto& [bytes, millis, text] : canonical) {
    CAPTURE(text);
    sandbox.limits = {bytes, millis, 0};
    CHECK(WriteManifest(w).find(text) != std::string::npos);
    CheckRoundTrip(w);
  }

  // Only what is set is written; keepWorkingDir always is, like other defaults.
  sandbox.security_context = {std::nullopt, std::nullopt, false};
  sandbox.limits = {};
  sandbox.keep_working_dir = false;
  CHECK(WriteManifest(w).find("      securityContext:\n        runAsNonRoot: false\n"
                              "      keepWorkingDir: false\n") != std::string::npos);
  CheckRoundTrip(w);
  sandbox.security_context = {};
  CHECK(WriteManifest(w).find("securityContext") == std::string::npos);
  CHECK(WriteManifest(w).find("resources") == std::string::npos);
  CheckRoundTrip(w);
}

TEST_CASE("WriteManifest: round trip of static and forward apps, with strings YAML would misread") {
  Workload w;
  w.metadata = {"site", "web", {{"tier", ""}, {"version", "1.10"}, {"on", "yes"}}};
  w.spec.replicas = 0;
  w.spec.ports = {{"http", 80, Protocol::kHTTP}};
  StaticApp app;
  app.status = 418;
  app.body = "line one\nline two: \"quoted\" # not a comment\n\ttab and unicode: héllo ✓\n";
  app.headers = {{"Content-Type", "application/json"},
                 {"X-Empty", ""},
                 {"X-Null", "null"},
                 {"X-Tilde", "~"},
                 {"X-Number", "012"},
                 {"X-Float", "1e3"},
                 {"X-Indicator", "- [a] {b} &c *d !e %f @g `h"},
                 {"X-Colon", "a: b"},
                 {"X-Trailing", "space "}};
  w.spec.app = app;
  CheckRoundTrip(w);

  w.spec.app = ForwardApp{"[::1]:9000"};
  CheckRoundTrip(w);
  w.spec.app = ForwardApp{"localhost:9000"};
  CheckRoundTrip(w);
}

TEST_CASE("WriteManifest: round trip of a Service with named and numbered target ports") {
  Service s;
  s.metadata = {"web", "shop", {{"app", "web"}}};
  s.selector = {{"app", "web"}, {"tier", "front"}};
  s.ports = {{"http", 80, {0, "http"}, Protocol::kHTTP},
             {"metrics", 9090, {15020, ""}, Protocol::kTCP},
             {"", 443, {443, ""}, Protocol::kTCP}};
  CheckRoundTrip(s);

  // An unset targetPort is written as the port it stands for.
  Service unset = s;
  unset.ports = {{"", 8080, {}, Protocol::kTCP}};
  ParseResult result = ParseManifests(WriteManifest(unset), "svc.yaml");
  REQUIRE(result.errors.empty());
  CHECK(std::get<Service>(result.objects.at(0).object).ports.at(0).target_port ==
        PortRef{8080, ""});
}

TEST_CASE("WriteManifest: round trip of AuthorizationPolicies in Istio's shape") {
  AuthorizationPolicy p;
  p.metadata = {"payments.deny", "shop", {}};
  p.selector = {{"app", "payments"}};
  p.action = PolicyAction::kDeny;
  PolicyRule rule;
  rule.from.push_back({{"cluster.local/ns/shop/sa/frontend", "spiffe://td/ns/a/sa/*"},
                       {"*/sa/banned"},
                       {"shop", "prod-*"},
                       {"kube-system"}});
  rule.from.push_back({{}, {}, {"*"}, {}});
  rule.to.push_back({{8080, 9090}, {15000}});
  p.rules = {rule, PolicyRule{}};
  std::string yaml = WriteManifest(p);
  CHECK(
      yaml.find("      to:\n        - operation:\n            ports:\n              - \"8080\"") !=
      std::string::npos);
  CheckRoundTrip(p);

  // No selector and no rules: an ALLOW-nothing policy for the whole namespace.
  AuthorizationPolicy empty;
  empty.metadata.name = "deny-all";
  yaml = WriteManifest(empty);
  CHECK(yaml.find("selector") == std::string::npos);
  CHECK(yaml.find("rules: []") != std::string::npos);
  CheckRoundTrip(empty);
}

TEST_CASE("WriteManifest: round trip of a policy with Istio's HTTP attributes and conditions") {
  ParseResult parsed = ParseManifests(R"y(apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  rules:
    - from:
        - source: {serviceAccounts: [web, "other/batch"], notIpBlocks: ["10.0.0.0/8", "::1"]}
        - source: {remoteIpBlocks: [1.2.3.4], requestPrincipals: ["*"], notRequestPrincipals: [a/b]}
      to:
        - operation: {methods: [GET], notMethods: ["*"], paths: ["/a/*"], notPaths: ["*.x"],
                      hosts: ["*.shop"], notHosts: [evil], ports: ["80"]}
      when:
        - {key: "request.headers[x-a]", values: ["*", "on"], notValues: ["yes"]}
        - {key: destination.port, values: ["8080"]}
)y",
                                      "in.yaml");
  for (const Diagnostic& d : parsed.errors) MESSAGE(d.ToString());
  REQUIRE(parsed.errors.empty());
  const Object& object = parsed.objects.at(0).object;
  CheckRoundTrip(object);
  const std::string yaml = WriteManifest(object);
  // Istio's spelling, so the output applies to Istio as well.
  for (const char* field :
       {"serviceAccounts:", "notIpBlocks:", "remoteIpBlocks:", "requestPrincipals:",
        "notRequestPrincipals:", "methods:", "notMethods:", "paths:", "notPaths:", "hosts:",
        "notHosts:", "when:", "notValues:"}) {
    CHECK_MESSAGE(yaml.find(field) != std::string::npos, field);
  }
}

}  // namespace podless::workloads
