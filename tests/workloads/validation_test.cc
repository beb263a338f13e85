#include "workloads/validation.h"

#include <doctest.h>

#include <algorithm>
#include <sstream>
#include <string>

#include "workloads/names.h"

namespace podless::workloads {
namespace {

Workload ValidWorkload() {
  Workload w;
  w.metadata.name = "web";
  w.metadata.ns = "shop";
  w.metadata.labels = {{"app", "web"}};
  w.spec.replicas = 3;
  w.spec.ports = {{"http", 8080, Protocol::kHTTP}, {"admin", 9090, Protocol::kTCP}};
  return w;
}

Service ValidService() {
  Service s;
  s.metadata.name = "web";
  s.selector = {{"app", "web"}};
  s.ports = {{"http", 80, {0, "http"}, Protocol::kTCP}};
  return s;
}

AuthorizationPolicy ValidPolicy() {
  AuthorizationPolicy p;
  p.metadata.name = "web-allow";
  PolicyRule rule;
  rule.from.push_back({{"spiffe://cluster.local/ns/shop/sa/frontend"}, {}, {}, {}});
  rule.to.push_back({{8080}, {}});
  p.rules.push_back(rule);
  return p;
}

// The single diagnostic for `object`, checked to be exactly one.
Diagnostic Only(const Object& object) {
  std::vector<Diagnostic> found = Validate(object);
  REQUIRE(found.size() == 1);
  return found[0];
}

}  // namespace

TEST_CASE("Names: DNS-1123 labels and subdomains follow Kubernetes") {
  CHECK(IsDns1123Label("web-1"));
  CHECK(IsDns1123Label("1abc"));
  CHECK(IsDns1123Label(std::string(63, 'a')));
  CHECK_FALSE(IsDns1123Label(std::string(64, 'a')));
  CHECK_FALSE(IsDns1123Label(""));
  CHECK_FALSE(IsDns1123Label("Web"));
  CHECK_FALSE(IsDns1123Label("-web"));
  CHECK_FALSE(IsDns1123Label("web-"));
  CHECK_FALSE(IsDns1123Label("a.b"));
  CHECK(IsDns1123Subdomain("a.b-c.d"));
  CHECK_FALSE(IsDns1123Subdomain("a..b"));
  CHECK_FALSE(IsDns1123Subdomain("a.-b"));
  CHECK_FALSE(IsDns1123Subdomain(".a"));
  CHECK_FALSE(IsDns1123Subdomain(std::string(254, 'a')));
  CHECK(Dns1123LabelError(std::string(64, 'a')) == "must be no more than 63 characters");
}

TEST_CASE("Names: label keys take a DNS prefix, values may be empty") {
  CHECK(IsLabelKey("app"));
  CHECK(IsLabelKey("app.kubernetes.io/name"));
  CHECK(IsLabelKey("My_Key.v1"));
  CHECK_FALSE(IsLabelKey(""));
  CHECK_FALSE(IsLabelKey("/name"));
  CHECK_FALSE(IsLabelKey("Example.com/name"));
  CHECK_FALSE(IsLabelKey("a/b/c"));
  CHECK_FALSE(IsLabelKey("bad key"));
  CHECK_FALSE(IsLabelKey(std::string(64, 'k')));
  CHECK(IsLabelValue(""));
  CHECK(IsLabelValue("v1.2_3-x"));
  CHECK_FALSE(IsLabelValue("-v"));
  CHECK_FALSE(IsLabelValue("a b"));
  CHECK_FALSE(IsLabelValue(std::string(64, 'v')));
}

TEST_CASE("Names: port names are IANA service names") {
  CHECK(IsPortName("http"));
  CHECK(IsPortName("h2c-metrics"));
  CHECK_FALSE(IsPortName("8080"));
  CHECK_FALSE(IsPortName("http--x"));
  CHECK_FALSE(IsPortName("-http"));
  CHECK_FALSE(IsPortName("Http"));
  CHECK_FALSE(IsPortName("a-very-long-port-name"));
  CHECK(PortNameError("8080") == "must contain at least one letter (e.g. 'http')");
}

TEST_CASE("Validate: well-formed objects of every kind have no findings") {
  CHECK(Validate(ValidWorkload()).empty());
  CHECK(Validate(ValidService()).empty());
  CHECK(Validate(ValidPolicy()).empty());
}

TEST_CASE("Validate: workload names must be labels that leave room for the replica ordinal") {
  Workload w = ValidWorkload();
  w.metadata.name = "Web";
  Diagnostic d = Only(w);
  CHECK(d.field == "metadata.name");
  CHECK(d.message.find("invalid name \"Web\"") == 0);

  w.metadata.name = std::string(MaxWorkloadNameLength(), 'a');
  CHECK(Validate(w).empty());
  w.metadata.name += "a";
  d = Only(w);
  CHECK(d.field == "metadata.name");
  CHECK(d.message.find("no more than 56 characters") != std::string::npos);
  // Longer than a DNS-1123 label too: still told the Workload's limit, not 63.
  w.metadata.name = std::string(66, 'a');
  d = Only(w);
  CHECK(d.message.find("no more than 56 characters") != std::string::npos);
  CHECK(d.message.find("no more than 63") == std::string::npos);
  // The limit is exactly what keeps the longest replica name a DNS-1123 label.
  CHECK(IsDns1123Label(std::string(MaxWorkloadNameLength(), 'a') + "-" +
                       std::to_string(kMaxReplicas - 1)));

  w.metadata.name.clear();
  d = Only(w);
  CHECK(d.field == "metadata.name");
  CHECK(d.message == "missing required field \"name\"");
}

TEST_CASE("Validate: namespace, labels and service account are checked") {
  Workload w = ValidWorkload();
  w.metadata.ns = "Shop";
  CHECK(Only(w).field == "metadata.namespace");
  w = ValidWorkload();
  w.metadata.ns = "";
  CHECK(Only(w).field == "metadata.namespace");
  w = ValidWorkload();
  w.metadata.labels = {{"app", "-bad"}};
  Diagnostic d = Only(w);
  CHECK(d.field == "metadata.labels[app]");
  CHECK(d.message.find("invalid label value \"-bad\"") == 0);
  w = ValidWorkload();
  w.spec.service_account = "front_end";
  d = Only(w);
  CHECK(d.field == "spec.serviceAccount");
  CHECK(d.message.find("invalid service account \"front_end\"") == 0);
  w.spec.service_account = "frontend.shop";  // a subdomain is fine
  CHECK(Validate(w).empty());
}

TEST_CASE("Validate: duplicate port numbers and names name the earlier port") {
  Workload w = ValidWorkload();
  w.spec.ports.push_back({"http", 8080, Protocol::kTCP});
  std::vector<Diagnostic> found = Validate(w);
  REQUIRE(found.size() == 2);
  CHECK(found[0].field == "spec.ports[2].port");
  CHECK(found[0].message == "duplicate port 8080 (also ports[0])");
  CHECK(found[1].field == "spec.ports[2].name");
  CHECK(found[1].message == "duplicate port name \"http\" (also ports[0])");
}

TEST_CASE("Validate: port 0, replicas above the maximum and bad port names are refused") {
  Workload w = ValidWorkload();
  w.spec.ports[1].port = 0;
  Diagnostic d = Only(w);
  CHECK(d.field == "spec.ports[1].port");
  CHECK(d.message == "must be between 1 and 65535, got 0");
  w = ValidWorkload();
  w.spec.replicas = kMaxReplicas + 1;
  d = Only(w);
  CHECK(d.field == "spec.replicas");
  CHECK(d.message == "must be between 0 and 1000000, got 1000001");
  w.spec.replicas = 0;  // scaled to zero is allowed
  CHECK(Validate(w).empty());
  w.spec.ports[0].name = "9000";
  CHECK(Only(w).field == "spec.ports[0].name");
}

TEST_CASE("Validate: static status, forward address, exec command") {
  Workload w = ValidWorkload();
  w.spec.app = StaticApp{99, "", {}};
  Diagnostic d = Only(w);
  CHECK(d.field == "spec.app.static.status");
  CHECK(d.message == "must be between 100 and 599, got 99");
  w.spec.app = StaticApp{200, "", {{"Content-Length", "3"}}};
  CHECK(Only(w).field == "spec.app.static.headers[Content-Length]");
  w.spec.app = StaticApp{200, "", {{"bad header", "x"}}};
  CHECK(Only(w).field == "spec.app.static.headers[bad header]");

  for (const char* good : {"127.0.0.1:9000", "localhost:80", "[::1]:9000"}) {
    w.spec.app = ForwardApp{good};
    CHECK_MESSAGE(Validate(w).empty(), good);
  }
  for (const char* bad : {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":80", "::1:80", "a b:1",
                          "[::1]", "host:http"}) {
    w.spec.app = ForwardApp{bad};
    d = Only(w);
    CHECK_MESSAGE(d.field == "spec.app.forward.address", bad);
  }
  w.spec.app = ForwardApp{""};
  CHECK(Only(w).message == "missing required field \"address\"");

  w.spec.app = ExecApp{};
  d = Only(w);
  CHECK(d.field == "spec.app.exec.command");
  CHECK(d.message.find("must not be empty") == 0);
  ExecApp exec;
  exec.command = {""};
  w.spec.app = exec;
  CHECK(Only(w).field == "spec.app.exec.command[0]");
  exec.command = {"python3"};
  exec.env = {{"OK", "1"}, {"A=B", "2"}};
  w.spec.app = exec;
  CHECK(Only(w).field == "spec.app.exec.env[1].name");
}

Workload SandboxedWorkload(ExecSandbox sandbox) {
  Workload w = ValidWorkload();
  ExecApp exec;
  exec.command = {"server"};
  exec.sandbox = std::move(sandbox);
  w.spec.app = exec;
  return w;
}

TEST_CASE("Validate: runAsNonRoot with runAsUser 0 is refused, naming both fields") {
  ExecSandbox sandbox;
  sandbox.security_context.run_as_user = 0;
  sandbox.security_context.run_as_non_root = true;
  Diagnostic d = Only(SandboxedWorkload(sandbox));
  CHECK(d.field == "spec.app.exec.securityContext.runAsUser");
  CHECK(d.message ==
        "runAsUser 0 (root) contradicts runAsNonRoot: true; set a non-zero runAsUser or drop "
        "runAsNonRoot");

  // Root is fine when runAsNonRoot is false or unset, and runAsNonRoot is
  // fine with any other user (or none: the supervisor checks its own uid).
  sandbox.security_context.run_as_non_root = false;
  CHECK(Validate(SandboxedWorkload(sandbox)).empty());
  sandbox.security_context.run_as_non_root.reset();
  CHECK(Validate(SandboxedWorkload(sandbox)).empty());
  sandbox.security_context.run_as_non_root = true;
  sandbox.security_context.run_as_user = 1000;
  CHECK(Validate(SandboxedWorkload(sandbox)).empty());
  sandbox.security_context.run_as_user.reset();
  CHECK(Validate(SandboxedWorkload(sandbox)).empty());
}

TEST_CASE("Validate: runAsUser and runAsGroup stay below 4294967295, memory limits start at 1Mi") {
  ExecSandbox sandbox;
  sandbox.security_context.run_as_user = kMaxRunAsId;
  sandbox.security_context.run_as_group = kMaxRunAsId;
  sandbox.limits = {kMinMemoryLimitBytes, 1, 1};
  CHECK(Validate(SandboxedWorkload(sandbox)).empty());

  sandbox.security_context.run_as_user = 4294967295u;  // (uid_t)-1: "unchanged" to setuid
  Diagnostic d = Only(SandboxedWorkload(sandbox));
  CHECK(d.field == "spec.app.exec.securityContext.runAsUser");
  CHECK(d.message.find("must be between 0 and 4294967294, got 4294967295") == 0);
  sandbox.security_context.run_as_user = 0;
  sandbox.security_context.run_as_group = 4294967295u;
  CHECK(Only(SandboxedWorkload(sandbox)).field == "spec.app.exec.securityContext.runAsGroup");
  sandbox.security_context.run_as_group = 0;

  sandbox.limits.memory_bytes = kMinMemoryLimitBytes - 1;
  d = Only(SandboxedWorkload(sandbox));
  CHECK(d.field == "spec.app.exec.resources.limits.memory");
  CHECK(d.message == "must be at least 1Mi, got 1048575");
  sandbox.limits.memory_bytes = 512 * 1024;
  CHECK(Only(SandboxedWorkload(sandbox)).message == "must be at least 1Mi, got 512Ki");

  // 0 is "no limit" in the model (the parser and the API refuse a written 0).
  sandbox.limits = {};
  CHECK(Validate(SandboxedWorkload(sandbox)).empty());
}

TEST_CASE("Validate: readiness probe ports refer to declared ports") {
  Workload w = ValidWorkload();
  ExecApp exec;
  exec.command = {"server"};
  Probe probe;
  probe.kind = Probe::Kind::kHttpGet;
  probe.port.name = "http";
  exec.readiness_probe = probe;
  w.spec.app = exec;
  CHECK(Validate(w).empty());

  exec.readiness_probe->port.name = "grpc";
  w.spec.app = exec;
  Diagnostic d = Only(w);
  CHECK(d.field == "spec.app.exec.readinessProbe.httpGet.port");
  CHECK(d.message == "port name \"grpc\" is not declared in spec.ports");

  exec.readiness_probe->port = PortRef{};
  exec.readiness_probe->kind = Probe::Kind::kTcpSocket;
  w.spec.app = exec;
  CHECK(Only(w).field == "spec.app.exec.readinessProbe.tcpSocket.port");

  exec.readiness_probe->port.number = 8080;
  exec.readiness_probe->kind = Probe::Kind::kHttpGet;
  exec.readiness_probe->path = "healthz";
  exec.readiness_probe->period_seconds = 0;
  w.spec.app = exec;
  std::vector<Diagnostic> found = Validate(w);
  REQUIRE(found.size() == 2);
  CHECK(found[0].field == "spec.app.exec.readinessProbe.httpGet.path");
  CHECK(found[1].field == "spec.app.exec.readinessProbe.periodSeconds");
}

TEST_CASE("Validate: a Service needs a selector, ports and well-formed target ports") {
  Service s = ValidService();
  s.selector.clear();
  CHECK(Only(s).field == "spec.selector");
  s = ValidService();
  s.ports.clear();
  CHECK(Only(s).field == "spec.ports");
  s = ValidService();
  s.ports[0].target_port = PortRef{0, "Http_1"};
  Diagnostic d = Only(s);
  CHECK(d.field == "spec.ports[0].targetPort");
  CHECK(d.message.find("invalid port name \"Http_1\"") == 0);
  s.ports[0].target_port = PortRef{8080, "http"};
  CHECK(Only(s).field == "spec.ports[0].targetPort");
  s.ports[0].target_port = PortRef{};  // unset: same as port
  CHECK(Validate(s).empty());
  s.ports.push_back({"http", 80, {}, Protocol::kTCP});
  std::vector<Diagnostic> found = Validate(s);
  REQUIRE(found.size() == 2);
  CHECK(found[0].message == "duplicate port 80 (also ports[0])");
  CHECK(found[1].field == "spec.ports[1].name");
}

TEST_CASE("Validate: policy principals are SPIFFE IDs or Istio wildcards") {
  AuthorizationPolicy p = ValidPolicy();
  auto& principals = p.rules[0].from[0].principals;
  for (const char* good : {"cluster.local/ns/shop/sa/web", "spiffe://td/ns/a/sa/b", "*",
                           "*/sa/frontend", "cluster.local/ns/shop/*"}) {
    principals = {good};
    CHECK_MESSAGE(Validate(p).empty(), good);
  }
  for (const char* bad :
       {"", "frontend", "spiffe://td/ns/a", "td/ns//sa/b", "a*b", "*a*", "td/ns/a/sa/b c"}) {
    principals = {"*", bad};
    Diagnostic d = Only(p);
    CHECK_MESSAGE(d.field == "spec.rules[0].from[0].source.principals[1]", bad);
  }
  p = ValidPolicy();
  p.rules[0].from[0].principals.clear();
  p.rules[0].from[0].not_namespaces = {"Shop"};
  CHECK(Only(p).field == "spec.rules[0].from[0].source.notNamespaces[0]");
  p.rules[0].from[0].not_namespaces.clear();
  CHECK(Only(p).field == "spec.rules[0].from[0].source");
  p = ValidPolicy();
  p.rules[0].to[0].not_ports = {0};
  CHECK(Only(p).field == "spec.rules[0].to[0].operation.notPorts[0]");
  p.rules[0].to[0] = PolicyOperation{};
  CHECK(Only(p).field == "spec.rules[0].to[0].operation");
  p = ValidPolicy();
  p.selector = {{"app", "a b"}};
  CHECK(Only(p).field == "spec.selector.matchLabels[app]");
}

TEST_CASE("ValidateBatch: the same kind, namespace and name twice is reported at the second") {
  Workload a = ValidWorkload();
  Workload b = ValidWorkload();
  Service same_name = ValidService();
  same_name.metadata.ns = "shop";  // a Service named like a Workload is fine
  Workload other_ns = ValidWorkload();
  other_ns.metadata.ns = "default";
  std::vector<ParsedObject> batch = {{a, {"a.yaml", 1, 1}},
                                     {same_name, {"a.yaml", 20, 1}},
                                     {other_ns, {"a.yaml", 30, 1}},
                                     {b, {"b.yaml", 5, 1}}};
  std::vector<Diagnostic> found = ValidateBatch(batch);
  REQUIRE(found.size() == 1);
  CHECK(found[0].where == SourceLocation{"b.yaml", 5, 1});
  CHECK(found[0].field == "metadata.name");
  CHECK(found[0].message == "duplicate Workload \"shop/web\" in one apply (also at a.yaml:1:1)");
}

TEST_CASE("Diagnostic: ToString leaves out the parts that are unknown") {
  Diagnostic d{{"app.yaml", 3, 7}, "spec.replicas", "must be between 0 and 1000000, got -1"};
  CHECK(d.ToString() == "app.yaml:3:7: spec.replicas: must be between 0 and 1000000, got -1");
  d.field.clear();
  CHECK(d.ToString() == "app.yaml:3:7: must be between 0 and 1000000, got -1");
  d = Diagnostic{{}, "metadata.name", "missing required field \"name\""};
  CHECK(d.ToString() == "metadata.name: missing required field \"name\"");
  d.where.line = 2;
  d.where.column = 1;
  CHECK(d.ToString() == "2:1: metadata.name: missing required field \"name\"");
}

TEST_CASE("QuoteForMessage: escapes control characters and cuts long values") {
  CHECK(QuoteForMessage("a\"b\n\x01") == "\"a\\\"b\\n\\x01\"");
  std::string quoted = QuoteForMessage(std::string(500, 'x'));
  CHECK(quoted.size() < 100);
  CHECK(quoted.find("...") != std::string::npos);
}

}  // namespace podless::workloads

namespace podless::workloads {
namespace {

TEST_CASE("Validate: an exec command may not carry the proxy credentials ($(HTTP_PROXY))") {
  Workload w = ValidWorkload();
  ExecApp exec;
  exec.command = {"curl", "--proxy", "$(HTTP_PROXY)", "http://web"};
  w.spec.app = exec;
  Diagnostic d = Only(w);
  CHECK(d.field == "spec.app.exec.command[2]");
  CHECK(d.message.find("/proc/<pid>/cmdline") != std::string::npos);
  exec.command = {"sh", "-c", "curl --proxy \"$HTTP_PROXY\" http://web"};  // from the environment
  w.spec.app = exec;
  CHECK(Validate(w).empty());
}

}  // namespace
}  // namespace podless::workloads

namespace podless::workloads {
namespace {

Workload WithApp(AppSpec app) {
  Workload w = ValidWorkload();
  w.spec.app = std::move(app);
  return w;
}

ExecApp Exec(std::vector<std::string> command, std::vector<EnvVar> env = {}) {
  ExecApp exec;
  exec.command = std::move(command);
  exec.env = std::move(env);
  return exec;
}

TEST_CASE("Validate: an exec app's containers have distinct DNS-label names and commands") {
  ExecApp exec = Exec({"server"});
  ExecContainer poller;
  poller.name = "poller";
  poller.command = {"sh", "-c", "true"};
  exec.containers.mutable_value().more.push_back(poller);
  CHECK(Validate(WithApp(exec)).empty());

  // The first container is "main" unless named: a further "main" clashes.
  exec.containers.mutable_value().more[0].name = "main";
  Diagnostic d = Only(WithApp(exec));
  CHECK(d.field == "spec.app.exec.containers[0].name");
  CHECK(d.message ==
        "duplicate container name \"main\": the containers of a replica need distinct names");
  exec.containers.mutable_value().name = "web";
  CHECK(Validate(WithApp(exec)).empty());

  exec.containers.mutable_value().more[0].name = "";
  d = Only(WithApp(exec));
  CHECK(d.field == "spec.app.exec.containers[0].name");
  exec.containers.mutable_value().more[0].name = "Poller";
  d = Only(WithApp(exec));
  CHECK(d.message.find("invalid container name \"Poller\"") == 0);

  // Each container's command is checked as the app's is.
  exec.containers.mutable_value().more[0].name = "poller";
  exec.containers.mutable_value().more[0].command.clear();
  d = Only(WithApp(exec));
  CHECK(d.field == "spec.app.exec.containers[0].command");
  CHECK(d.message.find("must not be empty") == 0);
}

TEST_CASE("Validate: a static body is at most 1 MiB") {
  CHECK(Validate(WithApp(StaticApp{200, std::string(kMaxStaticBodyBytes, 'x'), {}})).empty());
  Diagnostic d = Only(WithApp(StaticApp{200, std::string(kMaxStaticBodyBytes + 1, 'x'), {}}));
  CHECK(d.field == "spec.app.static.body");
  CHECK(d.message == "is 1048577 bytes, more than the limit of 1 MiB");
}

TEST_CASE("Validate: a static app has at most 64 headers of at most 8 KiB each") {
  StaticApp app{200, "", {}};
  for (size_t i = 0; i < kMaxStaticHeaders; ++i) app.headers["X-H" + std::to_string(i)] = "v";
  CHECK(Validate(WithApp(app)).empty());
  app.headers["X-One-Too-Many"] = "v";
  Diagnostic d = Only(WithApp(app));
  CHECK(d.field == "spec.app.static.headers");
  CHECK(d.message == "has 65 headers, more than the limit of 64");

  // Name and value together, as a server's header-line limit counts them.
  app.headers = {{"X-Big", std::string(kMaxStaticHeaderBytes - 5, 'v')}};
  CHECK(Validate(WithApp(app)).empty());
  app.headers = {{"X-Big", std::string(kMaxStaticHeaderBytes - 4, 'v')}};
  d = Only(WithApp(app));
  CHECK(d.field == "spec.app.static.headers[X-Big]");
  CHECK(d.message == "header name and value are 8193 bytes, more than the limit of 8 KiB");
}

TEST_CASE("Validate: an exec command has at most 1024 arguments of at most 128 KiB") {
  CHECK(Validate(WithApp(Exec(std::vector<std::string>(kMaxExecArgs, "a")))).empty());
  Diagnostic d = Only(WithApp(Exec(std::vector<std::string>(kMaxExecArgs + 1, "a"))));
  CHECK(d.field == "spec.app.exec.command");
  CHECK(d.message == "has 1025 arguments, more than the limit of 1024");

  CHECK(Validate(WithApp(Exec({"sh", std::string(kMaxExecStringBytes, 'a')}))).empty());
  d = Only(WithApp(Exec({"sh", std::string(kMaxExecStringBytes + 1, 'a')})));
  CHECK(d.field == "spec.app.exec.command[1]");
  CHECK(d.message == "is 131073 bytes, more than the limit of 128 KiB (Linux's MAX_ARG_STRLEN)");
}

TEST_CASE("Validate: an exec env has at most 1024 variables, each NAME=value at most 128 KiB") {
  std::vector<EnvVar> env;
  for (size_t i = 0; i < kMaxExecEnvVars; ++i) env.push_back({"V" + std::to_string(i), "1"});
  CHECK(Validate(WithApp(Exec({"server"}, env))).empty());
  env.push_back({"ONE_TOO_MANY", "1"});
  Diagnostic d = Only(WithApp(Exec({"server"}, env)));
  CHECK(d.field == "spec.app.exec.env");
  CHECK(d.message == "has 1025 variables, more than the limit of 1024");

  // "AB=" and the value: 3 + (limit - 3) bytes fit, one more does not.
  CHECK(Validate(WithApp(Exec({"server"}, {{"AB", std::string(kMaxExecStringBytes - 3, 'v')}})))
            .empty());
  d = Only(WithApp(Exec({"server"}, {{"AB", std::string(kMaxExecStringBytes - 2, 'v')}})));
  CHECK(d.field == "spec.app.exec.env[0].value");
  CHECK(d.message.find("NAME=value is 131073 bytes, more than the limit of 128 KiB") == 0);
}

TEST_CASE("Validate: exec command and env together stay within 1 MiB (execve's ARG_MAX)") {
  // Each string fits on its own; together they do not.
  const std::string arg(kMaxExecStringBytes, 'a');
  std::vector<std::string> command(kMaxExecTotalBytes / kMaxExecStringBytes - 1, arg);
  command.insert(command.begin(), "server");
  std::vector<EnvVar> env = {{"A", std::string(kMaxExecStringBytes / 2, 'v')}};
  CHECK(Validate(WithApp(Exec(command, env))).empty());
  env.push_back({"B", std::string(kMaxExecStringBytes / 2, 'v')});
  Diagnostic d = Only(WithApp(Exec(command, env)));
  CHECK(d.field == "spec.app.exec");
  CHECK(d.message.find("command and env together are ") == 0);
  CHECK(d.message.find("more than the limit of 1 MiB") != std::string::npos);
}

TEST_CASE("Validate: workingDir, probe paths, principals and forward hosts have length limits") {
  ExecApp exec = Exec({"server"});
  exec.working_dir = "/" + std::string(kMaxPathBytes - 1, 'd');
  CHECK(Validate(WithApp(exec)).empty());
  exec.working_dir += "d";
  CHECK(Only(WithApp(exec)).field == "spec.app.exec.workingDir");

  Workload w = ValidWorkload();
  exec = Exec({"server"});
  Probe probe;
  probe.kind = Probe::Kind::kHttpGet;
  probe.port.name = "http";
  probe.path = "/" + std::string(kMaxProbePathBytes, 'p');
  exec.readiness_probe = probe;
  w.spec.app = exec;
  Diagnostic d = Only(w);
  CHECK(d.field == "spec.app.exec.readinessProbe.httpGet.path");
  CHECK(d.message == "is 8193 bytes, more than the limit of 8 KiB");

  AuthorizationPolicy p = ValidPolicy();
  const std::string prefix = "spiffe://cluster.local/ns/shop/sa/";
  p.rules[0].from[0].principals = {prefix + std::string(kMaxPrincipalBytes - prefix.size(), 'a')};
  CHECK(Validate(p).empty());
  p.rules[0].from[0].principals[0] += "a";
  d = Only(p);
  CHECK(d.field == "spec.rules[0].from[0].source.principals[0]");
  CHECK(d.message.find("is 2049 bytes, more than the limit of 2 KiB") != std::string::npos);

  d = Only(WithApp(ForwardApp{std::string(254, 'h') + ":80"}));
  CHECK(d.field == "spec.app.forward.address");
  CHECK(d.message.find("no more than 253 characters") != std::string::npos);
}

TEST_CASE("Validate: label keys and values keep Kubernetes' limits") {
  Workload w = ValidWorkload();
  w.metadata.labels = {{std::string(253, 'a') + "/" + std::string(63, 'n'), std::string(63, 'v')}};
  CHECK(Validate(w).empty());
  w.metadata.labels = {{"app", std::string(64, 'v')}};
  CHECK(Only(w).message.find("must be no more than 63 characters") != std::string::npos);
  w.metadata.labels = {{std::string(64, 'n'), "v"}};
  CHECK(Only(w).field.find("metadata.labels[") == 0);
}

std::vector<Diagnostic> NumberedDiagnostics(size_t count) {
  std::vector<Diagnostic> out;
  for (size_t i = 0; i < count; ++i) {
    out.push_back(Diagnostic{{"p.yaml", static_cast<int>(i + 9), 5},
                             "spec.rules[0].from[0].source.principals[" + std::to_string(i) + "]",
                             "invalid principal"});
  }
  return out;
}

TEST_CASE("JoinDiagnostics: lists the first errors and counts the rest") {
  CHECK(JoinDiagnostics({}) == "");
  CHECK(JoinDiagnostics(NumberedDiagnostics(2)) ==
        "p.yaml:9:5: spec.rules[0].from[0].source.principals[0]: invalid principal\n"
        "p.yaml:10:5: spec.rules[0].from[0].source.principals[1]: invalid principal");

  // By count: the first 100, then "... and 900 more errors".
  std::string text = JoinDiagnostics(NumberedDiagnostics(1000), 100, 1u << 20);
  CHECK(std::count(text.begin(), text.end(), '\n') == 100);
  CHECK(text.find("principals[99]: ") != std::string::npos);
  CHECK(text.find("principals[100]: ") == std::string::npos);
  CHECK(text.substr(text.rfind('\n') + 1) == "... and 900 more errors");
  CHECK(JoinDiagnostics(NumberedDiagnostics(2), 1, 1u << 20).ends_with("\n... and 1 more error"));

  // By size, by default: the text and its summary fit a 4 KiB gRPC status
  // message, and the lines shown are whole.
  text = JoinDiagnostics(NumberedDiagnostics(1000));
  CHECK(text.size() <= kMaxDiagnosticsBytes + 40);
  CHECK(text.starts_with("p.yaml:9:5: spec.rules[0].from[0].source.principals[0]: "));
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() > 10);
  CHECK(lines.back() == "... and " + std::to_string(1000 - (lines.size() - 1)) + " more errors");
  for (size_t i = 0; i + 1 < lines.size(); ++i) CHECK(lines[i].ends_with(": invalid principal"));

  // One line longer than the budget is still shown (the transport cuts it).
  std::vector<Diagnostic> huge = {Diagnostic{{}, "", std::string(10'000, 'x')}};
  CHECK(JoinDiagnostics(huge).size() == 10'000);
}

}  // namespace
}  // namespace podless::workloads
