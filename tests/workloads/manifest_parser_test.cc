#include "workloads/manifest_parser.h"

#include <doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace podless::workloads {
namespace {

ParseResult Parse(std::string_view text) { return ParseManifests(text, "app.yaml"); }

// The one diagnostic of a parse, checked to be the only one.
Diagnostic Only(const ParseResult& result) {
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.size() == 1);
  return result.errors[0];
}

void CheckAt(const Diagnostic& d, std::string_view field, int line, int column) {
  INFO(d.ToString());
  CHECK(d.field == field);
  CHECK(d.where.file == "app.yaml");
  CHECK(d.where.line == line);
  CHECK(d.where.column == column);
}

Workload OnlyWorkload(const ParseResult& result) {
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.empty());
  REQUIRE(result.objects.size() == 1);
  REQUIRE(std::holds_alternative<Workload>(result.objects[0].object));
  return std::get<Workload>(result.objects[0].object);
}

// A valid Workload whose spec lines start at line 6, for tests that change one
// thing at a time.
std::string WorkloadWith(std::string_view spec_lines) {
  return "apiVersion: podless.dev/v1alpha1\n"
         "kind: Workload\n"
         "metadata:\n"
         "  name: web\n"
         "spec:\n" +
         std::string(spec_lines);
}

// Finds the source tree for the example manifests: $PODLESS_SOURCE_ROOT, else
// the directory this file was compiled from, else a parent of the working
// directory (the build directory usually sits in the source tree).
std::filesystem::path SourceRoot() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("PODLESS_SOURCE_ROOT"); env != nullptr && *env != '\0') {
    return env;
  }
  fs::path from_file = fs::path(__FILE__).parent_path().parent_path().parent_path();
  if (from_file.empty()) from_file = ".";
  if (fs::exists(from_file / "examples" / "hello.yaml")) return fs::absolute(from_file);
  for (fs::path dir = fs::current_path(); !dir.empty(); dir = dir.parent_path()) {
    if (fs::exists(dir / "examples" / "hello.yaml")) return dir;
    if (dir == dir.parent_path()) break;
  }
  return {};
}

TEST_CASE("ParseManifests: a kind: List (podless get -o yaml) is unpacked into its items") {
  const std::string text =
      "apiVersion: v1\n"
      "kind: List\n"
      "items:\n"
      "  - apiVersion: podless.dev/v1alpha1\n"
      "    kind: Workload\n"
      "    metadata: {name: a}\n"
      "    spec: {app: {echo: {}}}\n"
      "    status: {replicas: []}\n"
      "  - apiVersion: podless.dev/v1alpha1\n"
      "    kind: Workload\n"
      "    metadata: {name: b}\n"
      "    spec: {replicas: many, app: {echo: {}}}\n";
  ParseResult result = ParseManifests(text, "list.yaml");
  REQUIRE(result.errors.size() == 1);
  // Errors in an item point into the file where the item is.
  CHECK(result.errors[0].ToString().rfind("list.yaml:12:", 0) == 0);
  CHECK(result.errors[0].field == "spec.replicas");
  REQUIRE(result.objects.size() == 1);
  CHECK(MetaOf(result.objects[0].object).name == "a");
  CHECK(result.objects[0].where.line == 4);
}

}  // namespace

TEST_CASE("ParseManifests: reads a Workload with every field") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: Workload
metadata:
  name: api
  namespace: shop
  labels: {app: api, app.kubernetes.io/version: "1.2"}
spec:
  replicas: 4
  serviceAccount: api-sa
  ports:
    - {name: http, port: 8080, protocol: HTTP}
    - {port: 9000}
  app:
    exec:
      command: [python3, -m, http.server, "$(PORT)"]
      env:
        - {name: MODE, value: fast}
        - name: EMPTY
      workingDir: /srv
      restartPolicy: OnFailure
      readinessProbe:
        httpGet: {port: http, path: /healthz}
        initialDelaySeconds: 2
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 4
        successThreshold: 2
      terminationGracePeriodSeconds: 7
)y");
  Workload w = OnlyWorkload(result);
  CHECK(w.metadata.name == "api");
  CHECK(w.metadata.ns == "shop");
  CHECK(w.metadata.labels == Labels{{"app", "api"}, {"app.kubernetes.io/version", "1.2"}});
  CHECK(w.spec.replicas == 4);
  CHECK(w.spec.service_account == "api-sa");
  REQUIRE(w.spec.ports.size() == 2);
  CHECK(w.spec.ports[0] == PortSpec{"http", 8080, Protocol::kHTTP});
  CHECK(w.spec.ports[1] == PortSpec{"", 9000, Protocol::kTCP});
  REQUIRE(std::holds_alternative<ExecApp>(w.spec.app));
  const ExecApp& exec = std::get<ExecApp>(w.spec.app);
  CHECK(exec.command == std::vector<std::string>{"python3", "-m", "http.server", "$(PORT)"});
  CHECK(exec.env == std::vector<EnvVar>{{"MODE", "fast"}, {"EMPTY", ""}});
  CHECK(exec.working_dir == "/srv");
  CHECK(exec.restart_policy == RestartPolicy::kOnFailure);
  REQUIRE(exec.readiness_probe.has_value());
  CHECK(exec.readiness_probe->kind == Probe::Kind::kHttpGet);
  CHECK(exec.readiness_probe->port == PortRef{0, "http"});
  CHECK(exec.readiness_probe->path == "/healthz");
  CHECK(exec.readiness_probe->initial_delay_seconds == 2);
  CHECK(exec.readiness_probe->period_seconds == 5);
  CHECK(exec.readiness_probe->timeout_seconds == 3);
  CHECK(exec.readiness_probe->failure_threshold == 4);
  CHECK(exec.readiness_probe->success_threshold == 2);
  CHECK(exec.termination_grace_period_seconds == 7);
  CHECK(result.objects[0].where == SourceLocation{"app.yaml", 1, 1});
}

TEST_CASE("ParseManifests: leaves out fields take their defaults") {
  Workload w = OnlyWorkload(Parse(WorkloadWith("  app: {echo: }\n")));
  CHECK(w.metadata.ns == "default");
  CHECK(w.metadata.labels.empty());
  CHECK(w.spec.replicas == 1);
  CHECK(w.spec.service_account == "default");
  CHECK(w.spec.ports.empty());
  CHECK(std::holds_alternative<EchoApp>(w.spec.app));

  Workload s = OnlyWorkload(Parse(WorkloadWith("  app:\n    static: {}\n")));
  CHECK(std::get<StaticApp>(s.spec.app) == StaticApp{200, "", {}});

  Workload f = OnlyWorkload(Parse(WorkloadWith(
      "  app: {forward: {address: '127.0.0.1:9000'}}\n  ports: [{port: 1, protocol: TCP}]\n")));
  CHECK(std::get<ForwardApp>(f.spec.app).address == "127.0.0.1:9000");
}

TEST_CASE("ParseManifests: a podless Workload keeps its metadata.annotations") {
  // kubectl apply keeps its last-applied-configuration there.
  Workload w = OnlyWorkload(
      Parse("apiVersion: podless.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: web\n"
            "  annotations: {kubectl.kubernetes.io/last-applied-configuration: '{\"a\":1}'}\n"
            "spec:\n  app: {echo: }\n"));
  REQUIRE_FALSE(w.metadata.annotations.is_default());
  CHECK(w.metadata.annotations->at("kubectl.kubernetes.io/last-applied-configuration") ==
        "{\"a\":1}");
}

TEST_CASE("ParseManifests: reads a Service; targetPort is a number, a name, or port") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http, protocol: HTTP}
    - {name: metrics, port: 9090, targetPort: 15020}
    - {name: quoted, port: 81, targetPort: "8081"}
    - {name: plain, port: 443}
)y");
  REQUIRE(result.errors.empty());
  REQUIRE(result.objects.size() == 1);
  const Service& s = std::get<Service>(result.objects[0].object);
  CHECK(s.metadata.ns == "shop");
  CHECK(s.selector == Labels{{"app", "web"}});
  REQUIRE(s.ports.size() == 4);
  CHECK(s.ports[0] == ServicePort{"http", 80, {0, "http"}, Protocol::kHTTP});
  CHECK(s.ports[1] == ServicePort{"metrics", 9090, {15020, ""}, Protocol::kTCP});
  CHECK(s.ports[2].target_port == PortRef{8081, ""});
  CHECK(s.ports[3].target_port == PortRef{443, ""});
}

TEST_CASE("ParseManifests: reads an AuthorizationPolicy in Istio's nesting") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-policy}
spec:
  selector:
    matchLabels: {app: web}
  action: DENY
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/shop/sa/frontend"]
            notPrincipals: ["*/sa/banned"]
        - source: {namespaces: [shop], notNamespaces: ["test-*"]}
      to:
        - operation: {ports: ["8080", 9090], notPorts: ["15000"]}
    - {}
)y");
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.empty());
  const AuthorizationPolicy& p = std::get<AuthorizationPolicy>(result.objects.at(0).object);
  CHECK(p.selector == Labels{{"app", "web"}});
  CHECK(p.action == PolicyAction::kDeny);
  REQUIRE(p.rules.size() == 2);
  REQUIRE(p.rules[0].from.size() == 2);
  CHECK(p.rules[0].from[0].principals ==
        std::vector<std::string>{"cluster.local/ns/shop/sa/frontend"});
  CHECK(p.rules[0].from[0].not_principals == std::vector<std::string>{"*/sa/banned"});
  CHECK(p.rules[0].from[1].namespaces == std::vector<std::string>{"shop"});
  CHECK(p.rules[0].from[1].not_namespaces == std::vector<std::string>{"test-*"});
  REQUIRE(p.rules[0].to.size() == 1);
  CHECK(p.rules[0].to[0].ports == std::vector<uint16_t>{8080, 9090});
  CHECK(p.rules[0].to[0].not_ports == std::vector<uint16_t>{15000});
  CHECK(p.rules[1] == PolicyRule{});

  // No spec at all: an ALLOW policy selecting the whole namespace.
  result = Parse(
      "apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\n"
      "metadata: {name: deny-all}\n");
  REQUIRE(result.errors.empty());
  CHECK(std::get<AuthorizationPolicy>(result.objects.at(0).object) ==
        AuthorizationPolicy{{"deny-all", "default", {}}, {}, PolicyAction::kAllow, {}});
}

TEST_CASE("ParseManifests: reads Istio's serviceAccounts, ipBlocks, HTTP operations and when") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  rules:
    - from:
        - source:
            serviceAccounts: [frontend, other/batch]
            notServiceAccounts: [other/bad]
            ipBlocks: [10.0.0.0/8, 127.64.0.5]
            notIpBlocks: [10.1.0.0/16]
            remoteIpBlocks: [192.168.0.0/16]
            notRemoteIpBlocks: [192.168.1.1]
            requestPrincipals: ["issuer/*"]
            notRequestPrincipals: ["*"]
      to:
        - operation:
            ports: ["8080"]
            methods: [GET, HEAD]
            notMethods: [DELETE]
            paths: [/api/*, /health]
            notPaths: ["*.php"]
            hosts: ["web.shop.svc*"]
            notHosts: ["*.internal"]
      when:
        - key: request.headers[x-user]
          values: [alice]
          notValues: [mallory]
        - {key: source.ip, notValues: [10.0.0.1]}
)y");
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.empty());
  const AuthorizationPolicy& p = std::get<AuthorizationPolicy>(result.objects.at(0).object);
  REQUIRE(p.rules.size() == 1);
  const PolicySource& s = p.rules[0].from.at(0);
  CHECK(s.service_accounts == std::vector<std::string>{"frontend", "other/batch"});
  CHECK(s.not_service_accounts == std::vector<std::string>{"other/bad"});
  CHECK(s.ip_blocks == std::vector<std::string>{"10.0.0.0/8", "127.64.0.5"});
  CHECK(s.not_ip_blocks == std::vector<std::string>{"10.1.0.0/16"});
  CHECK(s.remote_ip_blocks == std::vector<std::string>{"192.168.0.0/16"});
  CHECK(s.not_remote_ip_blocks == std::vector<std::string>{"192.168.1.1"});
  CHECK(s.request_principals == std::vector<std::string>{"issuer/*"});
  CHECK(s.not_request_principals == std::vector<std::string>{"*"});
  const PolicyOperation& o = p.rules[0].to.at(0);
  CHECK(o.ports == std::vector<uint16_t>{8080});
  CHECK(o.methods == std::vector<std::string>{"GET", "HEAD"});
  CHECK(o.not_methods == std::vector<std::string>{"DELETE"});
  CHECK(o.paths == std::vector<std::string>{"/api/*", "/health"});
  CHECK(o.not_paths == std::vector<std::string>{"*.php"});
  CHECK(o.hosts == std::vector<std::string>{"web.shop.svc*"});
  CHECK(o.not_hosts == std::vector<std::string>{"*.internal"});
  REQUIRE(p.rules[0].when.size() == 2);
  CHECK(p.rules[0].when[0] == PolicyCondition{"request.headers[x-user]", {"alice"}, {"mallory"}});
  CHECK(p.rules[0].when[1] == PolicyCondition{"source.ip", {}, {"10.0.0.1"}});
}

TEST_CASE("ParseManifests: bad CIDRs, methods, paths and when keys are located errors") {
  auto errors = [](const std::string& rules) {
    std::string out;
    for (const Diagnostic& d : Parse("apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\n"
                                     "metadata: {name: p}\nspec:\n  rules:\n" +
                                     rules)
                                   .errors) {
      out += d.ToString() + "\n";
    }
    return out;
  };
  CHECK(errors("  - from: [{source: {ipBlocks: [10.0.0.0/33]}}]\n") ==
        "app.yaml:6:33: spec.rules[0].from[0].source.ipBlocks[0]: invalid IP block "
        "\"10.0.0.0/33\": prefix length 33 is more than 32\n");
  CHECK(errors("  - from: [{source: {notIpBlocks: [10.0.0]}}]\n") ==
        "app.yaml:6:36: spec.rules[0].from[0].source.notIpBlocks[0]: invalid IP block "
        "\"10.0.0\": must be an IP address or a CIDR block such as 10.0.0.0/8\n");
  CHECK(errors("  - to: [{operation: {methods: [get]}}]\n") ==
        "app.yaml:6:33: spec.rules[0].to[0].operation.methods[0]: invalid method \"get\": "
        "methods are case-sensitive: write GET\n");
  CHECK(errors("  - to: [{operation: {methods: [\"GET POST\"]}}]\n")
            .find("must be an HTTP method token") != std::string::npos);
  CHECK(errors("  - to: [{operation: {paths: [api]}}]\n").find("must start with '/'") !=
        std::string::npos);
  CHECK(errors("  - to: [{operation: {paths: [\"/a/{*}\"]}}]\n").find("path templates") !=
        std::string::npos);
  CHECK(errors("  - when: [{key: destination.labels, values: [a]}]\n") ==
        "app.yaml:6:18: spec.rules[0].when[0].key: unsupported key \"destination.labels\": "
        "expected source.ip, source.namespace, source.principal, destination.ip, "
        "destination.port, remote.ip, request.headers[NAME], request.auth.principal, "
        "request.auth.audiences, request.auth.presenter, request.auth.claims[NAME] or "
        "connection.sni\n");
  CHECK(errors("  - when: [{key: source.ip}]\n").find("must set values or notValues") !=
        std::string::npos);
  CHECK(errors("  - when: [{key: destination.port, values: [http]}]\n")
            .find("must be a port number between 1 and 65535") != std::string::npos);
  CHECK(errors("  - when: [{key: source.ip, values: [nope]}]\n").find("invalid IP block") !=
        std::string::npos);
  CHECK(errors("  - from: [{source: {serviceAccounts: [\"web*\"]}}]\n")
            .find("wildcards are not supported") != std::string::npos);
  CHECK(errors("  - from: [{source: {serviceAccounts: [a], principals: [\"*\"]}}]\n")
            .find("cannot set serviceAccounts with namespaces or principals") != std::string::npos);
  // Unknown fields stay errors.
  CHECK(errors("  - to: [{operation: {verbs: [GET]}}]\n").find("unknown field \"verbs\"") !=
        std::string::npos);
  CHECK(errors("  - when: [{key: source.ip, value: [a]}]\n").find("unknown field \"value\"") !=
        std::string::npos);
  CHECK(errors("  - from: [{source: {ipBlocks: [10.0.0.0/8], notIpBlocks: [\"::1\"]}}]\n").empty());
}

TEST_CASE("ParseManifests: several documents, empty ones skipped, each located") {
  ParseResult result = Parse(R"y(---
# nothing here
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: a}
spec: {app: {echo: {}}}
---
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: a}
spec: {selector: {app: a}, ports: [{port: 80}]}
---
)y");
  REQUIRE(result.errors.empty());
  REQUIRE(result.objects.size() == 2);
  CHECK(std::holds_alternative<Workload>(result.objects[0].object));
  CHECK(result.objects[0].where == SourceLocation{"app.yaml", 4, 1});
  CHECK(std::holds_alternative<Service>(result.objects[1].object));
  CHECK(result.objects[1].where == SourceLocation{"app.yaml", 10, 1});

  CHECK(Parse("").errors.empty());
  CHECK(Parse("---\n...\n").objects.empty());
}

TEST_CASE("ParseManifests: reports every problem of every document, good documents kept") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: Bad_Name}
spec:
  replicas: -1
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: good}
spec: {app: {echo: {}}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: svc}
spec: {selector: {}, ports: [{port: 80, colour: red}]}
)y");
  REQUIRE(result.errors.size() == 4);
  CheckAt(result.errors[0], "metadata.name", 3, 18);
  CheckAt(result.errors[1], "spec.replicas", 5, 13);
  CHECK(result.errors[1].message == "must be between 0 and 1000000, got -1");
  CheckAt(result.errors[2], "spec.selector", 16, 18);
  CheckAt(result.errors[3], "spec.ports[0].colour", 16, 41);
  REQUIRE(result.objects.size() == 1);
  CHECK(MetaOf(result.objects[0].object).name == "good");
}

TEST_CASE("ParseManifests: an unknown field is reported at its key with the allowed fields") {
  Diagnostic d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  replica: 3\n")));
  CheckAt(d, "spec.replica", 7, 3);
  CHECK(d.message ==
        "unknown field \"replica\"; allowed fields: replicas, serviceAccount, ports, app");

  d = Only(Parse(WorkloadWith("  app:\n    echo: {verbose: true}\n")));
  CheckAt(d, "spec.app.echo.verbose", 7, 12);
  CHECK(d.message == "unknown field \"verbose\"; this mapping takes no fields");

  d = Only(Parse(WorkloadWith("  app: {exec: {command: [x], env: [{name: A, valueFrom: {}}]}}\n")));
  CheckAt(d, "spec.app.exec.env[0].valueFrom", 6, 46);
  CHECK(d.message == "unknown field \"valueFrom\"; allowed fields: name, value");
}

TEST_CASE("ParseManifests: a wrong type is reported at the value") {
  Diagnostic d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  replicas: abc\n")));
  CheckAt(d, "spec.replicas", 7, 13);
  CHECK(d.message == "expected an integer, got string \"abc\"");

  d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  replicas: \"3\"\n")));
  CHECK(d.message == "expected an integer, got string \"3\"");

  d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  replicas: 2.5\n")));
  CHECK(d.message == "expected an integer, got number 2.5");

  d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  ports: {http: 80}\n")));
  CheckAt(d, "spec.ports", 7, 10);
  CHECK(d.message == "expected a sequence of ports, got a mapping");

  d = Only(Parse(WorkloadWith("  app: {exec: {command: python3 -m http.server}}\n")));
  CheckAt(d, "spec.app.exec.command", 6, 25);
  CHECK(d.message == "expected a sequence of strings, got string \"python3 -m http.server\"");

  d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  serviceAccount: [a]\n")));
  CheckAt(d, "spec.serviceAccount", 7, 19);
  CHECK(d.message == "expected a string, got a sequence");

  d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  ports: [{port: 99999}]\n")));
  CheckAt(d, "spec.ports[0].port", 7, 18);
  CHECK(d.message == "must be between 1 and 65535, got 99999");

  d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  replicas: 99999999999999999999999\n")));
  CHECK(d.message == "must be between 0 and 1000000, got 99999999999999999999999");
}

TEST_CASE("ParseManifests: a missing required field is reported at its parent mapping") {
  Diagnostic d =
      Only(Parse("apiVersion: podless.dev/v1alpha1\nkind: Workload\nmetadata:\n  labels: {a: b}\n"
                 "spec: {app: {echo: {}}}\n"));
  CheckAt(d, "metadata.name", 4, 3);
  CHECK(d.message == "missing required field \"name\"");

  d =
      Only(Parse("apiVersion: podless.dev/v1alpha1\nkind: Workload\nmetadata: {name: a}\n"
                 "spec:\n  replicas: 1\n"));
  CheckAt(d, "spec.app", 5, 3);
  CHECK(d.message.find("missing required field \"app\"") == 0);

  d = Only(Parse("apiVersion: podless.dev/v1alpha1\nkind: Workload\nmetadata: {name: a}\n"));
  CheckAt(d, "spec.app", 1, 1);

  d = Only(
      Parse(WorkloadWith("  app: {echo: {}}\n  ports:\n    - name: http\n      protocol: HTTP\n")));
  CheckAt(d, "spec.ports[0].port", 8, 7);
  CHECK(d.message == "missing required field \"port\"");

  d = Only(Parse(WorkloadWith("  app:\n    exec: {env: []}\n")));
  CheckAt(d, "spec.app.exec.command", 7, 11);
  CHECK(d.message.find("must not be empty") == 0);

  d = Only(Parse(WorkloadWith("  app:\n    forward:\n      address: 127.0.0.1\n")));
  CheckAt(d, "spec.app.forward.address", 8, 16);
  CHECK(d.message.find("invalid address \"127.0.0.1\": must be host:port") == 0);

  d = Only(Parse(WorkloadWith("  app:\n    forward: {}\n")));
  CheckAt(d, "spec.app.forward.address", 7, 14);
  CHECK(d.message == "missing required field \"address\"");

  d = Only(Parse("kind: Workload\nmetadata: {name: a}\nspec: {app: {echo: {}}}\n"));
  CheckAt(d, "apiVersion", 1, 1);
}

TEST_CASE("ParseManifests: a key twice in one mapping is an error at the second") {
  Diagnostic d = Only(Parse(WorkloadWith("  replicas: 1\n  app: {echo: {}}\n  replicas: 2\n")));
  CheckAt(d, "spec.replicas", 8, 3);
  CHECK(d.message == "duplicate field \"replicas\" (first at line 6)");

  d =
      Only(Parse("apiVersion: podless.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: a\n"
                 "  labels: {app: a, app: b}\nspec: {app: {echo: {}}}\n"));
  CheckAt(d, "metadata.labels[app]", 5, 20);
  CHECK(d.message == "duplicate key \"app\"");
}

TEST_CASE("ParseManifests: an app must have exactly one kind") {
  Diagnostic d = Only(Parse(WorkloadWith("  app: {}\n")));
  CheckAt(d, "spec.app", 6, 8);
  CHECK(d.message == "must set exactly one of echo, static, forward, exec");

  d = Only(Parse(WorkloadWith("  app:\n    echo: {}\n    static: {status: 204}\n")));
  CheckAt(d, "spec.app.static", 8, 5);
  CHECK(d.message ==
        "only one of echo, static, forward, exec may be set, and \"echo\" is set already");

  d = Only(Parse(WorkloadWith("  app:\n")));
  CheckAt(d, "spec.app", 6, 3);
}

TEST_CASE("ParseManifests: a readiness probe has exactly one handler") {
  std::string exec =
      "  ports: [{name: http, port: 8080}]\n  app:\n    exec:\n      command: [srv]\n"
      "      readinessProbe:\n";
  Diagnostic d = Only(Parse(WorkloadWith(exec + "        periodSeconds: 5\n")));
  CheckAt(d, "spec.app.exec.readinessProbe", 11, 9);
  CHECK(d.message == "must set exactly one of tcpSocket, httpGet");

  d = Only(Parse(WorkloadWith(exec + "        tcpSocket: {port: http}\n"
                                     "        httpGet: {port: 8080}\n")));
  CheckAt(d, "spec.app.exec.readinessProbe.httpGet", 12, 9);

  d = Only(Parse(WorkloadWith(exec + "        tcpSocket: {port: grpc}\n")));
  CheckAt(d, "spec.app.exec.readinessProbe.tcpSocket.port", 11, 27);
  CHECK(d.message == "port name \"grpc\" is not declared in spec.ports");

  d = Only(Parse(WorkloadWith(exec + "        tcpSocket: {}\n")));
  CheckAt(d, "spec.app.exec.readinessProbe.tcpSocket.port", 11, 20);

  d = Only(Parse(WorkloadWith(exec + "        tcpSocket: {port: 1}\n        periodSeconds: 0\n")));
  CheckAt(d, "spec.app.exec.readinessProbe.periodSeconds", 12, 24);
}

// An exec Workload whose lines after `command` start at line 9.
std::string ExecWith(std::string_view exec_lines) {
  return WorkloadWith("  app:\n    exec:\n      command: [srv]\n" + std::string(exec_lines));
}

const ExecSandbox& SandboxOf(const Workload& w) { return *std::get<ExecApp>(w.spec.app).sandbox; }

TEST_CASE("ParseManifests: reads an exec app's securityContext, resources and keepWorkingDir") {
  Workload w = OnlyWorkload(Parse(WorkloadWith(
      "  app:\n"
      "    exec:\n"
      "      command: [python3, -m, http.server, \"$(PORT)\"]\n"
      "      securityContext: {runAsUser: 1000, runAsGroup: 2000, runAsNonRoot: true}\n"
      "      resources: {limits: {memory: 128Mi, cpu: 500m, pids: 64}}\n"
      "      keepWorkingDir: true\n")));
  const ExecSandbox& sandbox = SandboxOf(w);
  CHECK(sandbox.security_context.run_as_user == 1000u);
  CHECK(sandbox.security_context.run_as_group == 2000u);
  CHECK(sandbox.security_context.run_as_non_root == true);
  CHECK(sandbox.limits.memory_bytes == 128u * 1024 * 1024);
  CHECK(sandbox.limits.cpu_millis == 500u);
  CHECK(sandbox.limits.pids == 64u);
  CHECK(sandbox.keep_working_dir);
}

TEST_CASE("ParseManifests: every sandbox field is optional, and leaving all out stores nothing") {
  Workload w = OnlyWorkload(Parse(ExecWith("")));
  CHECK(std::get<ExecApp>(w.spec.app).sandbox.is_default());

  w =
      OnlyWorkload(Parse(ExecWith("      securityContext: {}\n      resources: {limits: {}}\n"
                                  "      keepWorkingDir: false\n")));
  CHECK(std::get<ExecApp>(w.spec.app).sandbox.is_default());

  // An explicit false is kept apart from an absent runAsNonRoot, so that
  // `get -o yaml` shows what was applied.
  w = OnlyWorkload(Parse(ExecWith("      securityContext: {runAsNonRoot: false}\n")));
  CHECK(SandboxOf(w).security_context.run_as_non_root == false);
  CHECK_FALSE(SandboxOf(w).security_context.run_as_user.has_value());
  CHECK(SandboxOf(w).limits == ResourceLimits{});

  w =
      OnlyWorkload(Parse(ExecWith("      securityContext: {runAsGroup: 0}\n"
                                  "      resources: {limits: {pids: 1}}\n")));
  CHECK(SandboxOf(w).security_context.run_as_group == 0u);
  CHECK(SandboxOf(w).limits.pids == 1u);
  CHECK(SandboxOf(w).limits.memory_bytes == 0u);  // no limit
}

TEST_CASE("ParseManifests: memory limits take every Kubernetes quantity form") {
  const std::pair<const char*, uint64_t> forms[] = {
      {"134217728", 134217728},   {"\"134217728\"", 134217728},
      {"2048k", 2048000},         {"2M", 2000000},
      {"1G", 1000000000},         {"1T", 1000000000000},
      {"1P", 1000000000000000},   {"1E", 1000000000000000000},
      {"1024Ki", 1048576},        {"128Mi", 134217728},
      {"1Gi", uint64_t{1} << 30}, {"1Ti", uint64_t{1} << 40},
      {"1Pi", uint64_t{1} << 50}, {"15Ei", uint64_t{15} << 60},
      {"1.5Gi", 1610612736},      {"0.5Gi", 536870912},
      {"1e9", 1000000000},        {"2.5E6", 2500000},
      {"\"256Mi\"", 268435456},
  };
  for (const auto& [text, bytes] : forms) {
    CAPTURE(text);
    Workload w = OnlyWorkload(
        Parse(ExecWith("      resources: {limits: {memory: " + std::string(text) + "}}\n")));
    CHECK(SandboxOf(w).limits.memory_bytes == bytes);
  }
}

TEST_CASE("ParseManifests: cpu limits are cores or millicores, pids a positive integer") {
  const std::pair<const char*, uint32_t> forms[] = {
      {"500m", 500}, {"1", 1000},   {"0.5", 500},    {"2.25", 2250},
      {"0.001", 1},  {"1e-3", 1},   {"\"2\"", 2000}, {"1000m", 1000},
      {"64", 64000}, {"1.0", 1000}, {"2k", 2000000}, {"+3", 3000},
  };
  for (const auto& [text, millis] : forms) {
    CAPTURE(text);
    Workload w = OnlyWorkload(
        Parse(ExecWith("      resources: {limits: {cpu: " + std::string(text) + "}}\n")));
    CHECK(SandboxOf(w).limits.cpu_millis == millis);
  }
  Workload w = OnlyWorkload(Parse(ExecWith("      resources: {limits: {pids: 2147483647}}\n")));
  CHECK(SandboxOf(w).limits.pids == 2147483647u);
}

TEST_CASE("ParseManifests: a bad quantity is reported at its value with the field path") {
  // "      resources:" is line 9; each limit is on line 11, its value at column 18.
  auto limit = [](std::string_view line) {
    return Parse(
        ExecWith("      resources:\n        limits:\n          " + std::string(line) + "\n"));
  };
  Diagnostic d = Only(limit("memory: 12Q"));
  CheckAt(d, "spec.app.exec.resources.limits.memory", 11, 19);
  CHECK(d.message == "\"12Q\" is not a Kubernetes quantity (e.g. 134217728, 128Mi, 1G)");
  CHECK(d.ToString() ==
        "app.yaml:11:19: spec.app.exec.resources.limits.memory: \"12Q\" is not a Kubernetes "
        "quantity (e.g. 134217728, 128Mi, 1G)");

  const std::pair<const char*, const char*> memory[] = {
      {"128MB", "\"128MB\" is not a Kubernetes quantity (e.g. 134217728, 128Mi, 1G)"},
      {"Mi", "\"Mi\" is not a Kubernetes quantity (e.g. 134217728, 128Mi, 1G)"},
      {"1 Gi", "\"1 Gi\" is not a Kubernetes quantity (e.g. 134217728, 128Mi, 1G)"},
      {"-1Gi", "\"-1Gi\" is negative"},
      {"128m",
       "\"128m\" is in millibytes (\"m\"); memory is in bytes or Ki, Mi, Gi, k, M, G, ...: did "
       "you mean \"128Mi\"?"},
      {"1.5", "\"1.5\" is not a whole number of bytes"},
      {"16Ei", "\"16Ei\" is too large (at most 18446744073709551615 bytes)"},
      {"0", "must be at least 1Mi, got 0"},
  };
  for (const auto& [text, message] : memory) {
    CAPTURE(text);
    d = Only(limit("memory: " + std::string(text)));
    CheckAt(d, "spec.app.exec.resources.limits.memory", 11, 19);
    CHECK(d.message == message);
  }

  const std::pair<const char*, const char*> cpu[] = {
      {"0.0005", "\"0.0005\" is finer than 1m (cpu is counted in whole millicores)"},
      {"1.5m", "\"1.5m\" is finer than 1m (cpu is counted in whole millicores)"},
      {"1Ki",
       "\"1Ki\" has a binary suffix; cpu is in cores (\"2\", \"0.5\") or millicores (\"500m\")"},
      {"two", "\"two\" is not a Kubernetes quantity (e.g. 500m, 0.5, 2)"},
      {"5000000", "\"5000000\" is too large (at most 4294967295m)"},
      {"0", "must be more than 0, got 0"},
      {"0m", "must be more than 0, got 0m"},
  };
  for (const auto& [text, message] : cpu) {
    CAPTURE(text);
    d = Only(limit("cpu: " + std::string(text)));
    CheckAt(d, "spec.app.exec.resources.limits.cpu", 11, 16);
    CHECK(d.message == message);
  }

  d = Only(limit("pids: 0"));
  CheckAt(d, "spec.app.exec.resources.limits.pids", 11, 17);
  CHECK(d.message == "must be between 1 and 2147483647, got 0");
  d = Only(limit("pids: 64k"));
  CheckAt(d, "spec.app.exec.resources.limits.pids", 11, 17);
  CHECK(d.message == "expected an integer, got string \"64k\"");
  d = Only(limit("memory: [1Gi]"));
  CheckAt(d, "spec.app.exec.resources.limits.memory", 11, 19);
  CHECK(d.message == "expected a quantity, got a sequence");
}

TEST_CASE("ParseManifests: sandbox fields are checked for unknown names and types") {
  Diagnostic d = Only(Parse(ExecWith("      resources: {requests: {cpu: 1}}\n")));
  CheckAt(d, "spec.app.exec.resources.requests", 9, 19);
  CHECK(d.message == "unknown field \"requests\"; allowed fields: limits");

  d = Only(Parse(ExecWith("      resources: {limits: {memory: 1Gi, storage: 1Gi}}\n")));
  CheckAt(d, "spec.app.exec.resources.limits.storage", 9, 41);
  CHECK(d.message == "unknown field \"storage\"; allowed fields: memory, cpu, pids");

  d = Only(Parse(ExecWith("      securityContext: {privileged: true}\n")));
  CheckAt(d, "spec.app.exec.securityContext.privileged", 9, 25);
  CHECK(d.message ==
        "unknown field \"privileged\"; allowed fields: runAsUser, runAsGroup, runAsNonRoot");

  d = Only(Parse(ExecWith("      securityContext: {runAsUser: -1}\n")));
  CheckAt(d, "spec.app.exec.securityContext.runAsUser", 9, 36);
  CHECK(d.message == "must be between 0 and 4294967294, got -1");
  d = Only(Parse(ExecWith("      securityContext: {runAsGroup: 4294967295}\n")));
  CheckAt(d, "spec.app.exec.securityContext.runAsGroup", 9, 37);
  CHECK(d.message == "must be between 0 and 4294967294, got 4294967295");

  d = Only(Parse(ExecWith("      securityContext: {runAsNonRoot: yes}\n")));
  CheckAt(d, "spec.app.exec.securityContext.runAsNonRoot", 9, 39);
  CHECK(d.message == "expected a boolean (true or false), got boolean yes");
  d = Only(Parse(ExecWith("      keepWorkingDir: \"true\"\n")));
  CheckAt(d, "spec.app.exec.keepWorkingDir", 9, 23);
  CHECK(d.message == "expected a boolean (true or false), got string \"true\"");
  d = Only(Parse(ExecWith("      securityContext: 1000\n")));
  CheckAt(d, "spec.app.exec.securityContext", 9, 24);
  CHECK(d.message == "expected a mapping, got integer 1000");
}

TEST_CASE("ParseManifests: sandbox Validate findings are located at the offending value") {
  Diagnostic d =
      Only(Parse(ExecWith("      securityContext: {runAsUser: 0, runAsNonRoot: true}\n")));
  CheckAt(d, "spec.app.exec.securityContext.runAsUser", 9, 36);
  CHECK(d.message ==
        "runAsUser 0 (root) contradicts runAsNonRoot: true; set a non-zero runAsUser or drop "
        "runAsNonRoot");

  d = Only(Parse(ExecWith("      resources: {limits: {memory: 64Ki}}\n")));
  CheckAt(d, "spec.app.exec.resources.limits.memory", 9, 36);
  CHECK(d.message == "must be at least 1Mi, got 64Ki");
}

TEST_CASE("ParseManifests: enumerations name their allowed values") {
  Diagnostic d =
      Only(Parse(WorkloadWith("  app: {exec: {command: [x], restartPolicy: always}}\n")));
  CheckAt(d, "spec.app.exec.restartPolicy", 6, 45);
  CHECK(d.message ==
        "unsupported value: must be one of Always, OnFailure, Never, got string \"always\"");

  d = Only(Parse(WorkloadWith("  app: {echo: {}}\n  ports: [{port: 80, protocol: UDP}]\n")));
  CheckAt(d, "spec.ports[0].protocol", 7, 32);
  CHECK(d.message == "unsupported value: must be one of TCP, HTTP, got string \"UDP\"");

  d =
      Only(Parse("apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\n"
                 "metadata: {name: p}\nspec: {action: AUDIT}\n"));
  CheckAt(d, "spec.action", 4, 16);
  CHECK(d.message == "unsupported value: must be one of ALLOW, DENY, got string \"AUDIT\"");
}

TEST_CASE("ParseManifests: unsupported apiVersion or kind") {
  Diagnostic d = Only(Parse("apiVersion: v1\nkind: Workload\nmetadata: {name: a}\nspec: {}\n"));
  CheckAt(d, "apiVersion", 1, 13);
  CHECK(d.message ==
        "unsupported apiVersion for Workload: expected podless.dev/v1alpha1, got string \"v1\"");

  d = Only(Parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {}\n"));
  CheckAt(d, "kind", 2, 7);
  CHECK(d.message.find("unsupported kind \"ConfigMap\" (v1): podless runs "
                       "podless.dev/v1alpha1: Workload, Service, AuthorizationPolicy; v1: ") == 0);
  CHECK(d.message.find("; apply with --skip-unsupported to skip the documents of other kinds") !=
        std::string::npos);

  // Skipped on request, with where it was; the rest of the file applies.
  ParseOptions skip;
  skip.skip_unsupported = true;
  ParseResult result = ParseManifests(
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n---\n"
      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n",
      "m.yaml", skip);
  CHECK(result.errors.empty());
  REQUIRE(result.skipped.size() == 1);
  CHECK(result.skipped[0].kind == "ConfigMap");
  CHECK(result.skipped[0].api_version == "v1");
  CHECK(result.skipped[0].name == "settings");
  CHECK(result.skipped[0].where.line == 1);
  REQUIRE(result.objects.size() == 1);
  CHECK(std::holds_alternative<ServiceAccount>(result.objects[0].object));

  d = Only(Parse("- a\n- b\n"));
  CheckAt(d, "", 1, 1);
  CHECK(d.message.find("expected a mapping with apiVersion, kind") == 0);
}

TEST_CASE("ParseManifests: Validate findings are located at the offending node") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: Workload
metadata:
  name: web
  namespace: Shop
  labels:
    "bad key": x
spec:
  serviceAccount: Front_End
  ports:
    - {name: http, port: 8080}
    - {name: http2, port: 8080}
  app:
    static: {status: 700}
)y");
  REQUIRE(result.errors.size() == 5);
  CheckAt(result.errors[0], "metadata.namespace", 5, 14);
  CheckAt(result.errors[1], "metadata.labels[bad key]", 7, 5);
  CheckAt(result.errors[2], "spec.serviceAccount", 9, 19);
  CheckAt(result.errors[3], "spec.ports[1].port", 12, 27);
  CHECK(result.errors[3].message == "duplicate port 8080 (also ports[0])");
  CheckAt(result.errors[4], "spec.app.static.status", 14, 22);
  CHECK(result.errors[4].ToString() ==
        "app.yaml:14:22: spec.app.static.status: must be between 100 and 599, got 700");
  CHECK(result.objects.empty());

  result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: Web_Port}]
---
apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules:
    - from: [{source: {principals: [frontend]}}]
      to: [{operation: {ports: [http]}}]
)y");
  REQUIRE(result.errors.size() == 3);
  CheckAt(result.errors[0], "spec.ports[0].targetPort", 6, 34);
  CheckAt(result.errors[1], "spec.rules[0].from[0].source.principals[0]", 13, 37);
  CheckAt(result.errors[2], "spec.rules[0].to[0].operation.ports[0]", 14, 33);
  CHECK(result.errors[2].message == "expected a port number, got string \"http\"");

  // A Service without spec: both requirements reported at the document.
  result = Parse("apiVersion: podless.dev/v1alpha1\nkind: Service\nmetadata: {name: web}\n");
  REQUIRE(result.errors.size() == 2);
  CheckAt(result.errors[0], "spec.selector", 1, 1);
  CheckAt(result.errors[1], "spec.ports", 1, 1);
}

TEST_CASE("ParseManifests: the same object twice in one apply is reported at the second") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec: {app: {echo: {}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata:
  name: web
  namespace: default
spec: {app: {echo: {}}}
)y");
  Diagnostic d = Only(result);
  CheckAt(d, "metadata.name", 9, 9);
  CHECK(d.message == "duplicate Workload \"default/web\" in one apply (also at app.yaml:1:1)");
  CHECK(result.objects.size() == 1);
}

TEST_CASE("ParseManifests: a syntax error in a later document gives no objects") {
  ParseResult result = Parse(R"y(apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec: {app: {echo: {}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: [web}
)y");
  Diagnostic d = Only(result);
  CHECK(d.field.empty());
  CHECK(d.where.file == "app.yaml");
  CHECK(d.where.line >= 8);
  CHECK(d.message.find("invalid YAML: ") == 0);
  CHECK(result.objects.empty());

  d = Only(Parse("a: b\n  c: d\n"));
  CHECK(d.where.line == 2);
  d = Only(Parse("a: *missing\n"));
  CHECK(d.message.find("invalid YAML") == 0);
}

TEST_CASE("ParseManifests: aliases that expand to a huge tree are refused quickly") {
  // 300 rules x 300 sources x 300 principals from a few kilobytes of text.
  std::string text =
      "apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
      "x0: &p [\"*\"";
  for (int i = 1; i < 300; ++i) text += ", \"*\"";
  text += "]\nx1: &f [&s {source: {principals: *p}}";
  for (int i = 1; i < 300; ++i) text += ", *s";
  text += "]\nspec:\n  rules: [&r {from: *f}";
  for (int i = 1; i < 300; ++i) text += ", *r";
  text += "]\n";
  ParseResult result = Parse(text);
  CHECK(result.objects.empty());
  bool refused = false;
  for (const Diagnostic& d : result.errors) {
    refused = refused || d.message.find("too many nodes") != std::string::npos;
  }
  CHECK(refused);
}

TEST_CASE("ParseManifests: aliases of bad values give many errors, all located, quickly") {
  // 30 rules x 20 sources x 30 principals, each principal invalid, from about
  // a kilobyte: the node budget stops the reading, and the diagnostics stay
  // within the budget too.
  std::string text =
      "apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
      "x0: &p [&b \"bad principal\"";
  for (int i = 1; i < 30; ++i) text += ", *b";
  text += "]\nx1: &f [&s {source: {principals: *p}}";
  for (int i = 1; i < 20; ++i) text += ", *s";
  text += "]\nspec:\n  rules: [&r {from: *f}";
  for (int i = 1; i < 30; ++i) text += ", *r";
  text += "]\n";
  ParseResult result = Parse(text);
  CHECK(result.objects.empty());
  CHECK(result.errors.size() > 1000);
  CHECK(result.errors.size() < text.size() + 10'000);
  for (const Diagnostic& d : result.errors) {
    CHECK(d.where.file == "app.yaml");
    CHECK(d.where.line > 0);
  }
  // The text an apply answers with lists the first ones and counts the rest.
  const std::string joined = JoinDiagnostics(result.errors);
  CHECK(joined.size() < 4096);
  CHECK(joined.find("more errors") != std::string::npos);
}

TEST_CASE("ParseManifests: a manifest over 16 MiB is refused before it is read") {
  std::string text = "apiVersion: podless.dev/v1alpha1\nkind: Workload\n# ";
  text.resize(kMaxManifestBytes + 1, 'x');
  Diagnostic d = Only(Parse(text));
  CHECK(d.where == SourceLocation{"app.yaml", 0, 0});
  CHECK(d.ToString() ==
        "app.yaml: the manifest is 16777217 bytes, more than the limit of 16 MiB per file; split "
        "it into several files");
  // At the limit it is read (and here refused for what it says, not its size).
  text.resize(kMaxManifestBytes);
  for (const Diagnostic& e : Parse(text).errors) {
    CHECK(e.message.find("16 MiB") == std::string::npos);
  }
}

TEST_CASE("ParseManifests: never throws on mangled input") {
  const std::string seed =
      "apiVersion: podless.dev/v1alpha1\nkind: Workload\nmetadata: {name: web, labels: {a: b}}\n"
      "spec:\n  replicas: 2\n  ports: [{name: http, port: 8080, protocol: HTTP}]\n"
      "  app:\n    exec:\n      command: [a, \"b\"]\n      env: [{name: X, value: y}]\n"
      "      readinessProbe: {httpGet: {port: http, path: /}}\n---\n"
      "apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
      "spec: {selector: {matchLabels: {a: b}}, action: DENY, rules: [{from: [{source: "
      "{principals: ['*']}}], to: [{operation: {ports: ['80']}}]}]}\n";
  static const char kAlphabet[] = "{}[]:,-&*!|>'\"#%@` \n\t?~0123456789abcXYZ\x00\xff\xc3";
  const std::string alphabet(kAlphabet, sizeof kAlphabet - 1);
  std::mt19937 rng(12345);  // fixed: the test is the same on every run
  for (int round = 0; round < 3000; ++round) {
    std::string text = seed;
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      size_t at = rng() % text.size();
      switch (rng() % 4) {
        case 0:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          text.erase(at, 1 + rng() % 6);
          break;
        case 2:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 3:
          text.insert(at, text.substr(rng() % text.size(), rng() % 20));
          break;
      }
    }
    ParseResult result = ParseManifests(text, "fuzz.yaml");
    for (const Diagnostic& d : result.errors) CHECK_FALSE(d.message.empty());
  }
  // yaml-cpp 0.7 alone would loop forever on a stray ',' where a document starts.
  Diagnostic d = Only(Parse("a: b\n---\n,\n"));
  CheckAt(d, "", 3, 1);
  CHECK(d.message == "invalid YAML: unexpected \",\" where a node should start");
  // Deep nesting stops in yaml-cpp's own depth guard, not in a stack overflow.
  CHECK_FALSE(Parse(std::string(100000, '[')).errors.empty());
  CHECK_FALSE(Parse(std::string(100000, '{')).errors.empty());
}

TEST_CASE("ParseManifests: the example manifests parse cleanly") {
  std::filesystem::path root = SourceRoot();
  REQUIRE_MESSAGE(!root.empty(), "set PODLESS_SOURCE_ROOT to the source tree");
  for (const char* name : {"hello.yaml", "shop.yaml", "bookinfo.yaml"}) {
    std::filesystem::path path = root / "examples" / name;
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), path.string());
    std::stringstream text;
    text << in.rdbuf();
    ParseResult result = ParseManifests(text.str(), path.string());
    for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
    CHECK_MESSAGE(result.errors.empty(), name);
    CHECK_MESSAGE(result.objects.size() >= 3, name);
  }
}

TEST_CASE("ParseManifests: Kubernetes kinds keep the document they were applied as") {
  const char* text =
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a}\n"
      "  uid: 1234\n---\n"
      "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n  namespace: shop\n"
      "  annotations: {owner: me}\nautomountServiceAccountToken: false\n";
  ParseResult result = Parse(text);
  for (const Diagnostic& e : result.errors) MESSAGE(e.ToString());
  REQUIRE(result.errors.empty());
  REQUIRE(result.objects.size() == 2);
  const auto& ns = std::get<Namespace>(result.objects[0].object);
  CHECK(ns.metadata.name == "shop");
  CHECK(ns.metadata.ns.empty());
  CHECK(ns.metadata.labels == Labels{{"team", "a"}});
  REQUIRE(ns.metadata.applied_as.has_value());
  CHECK(ns.metadata.applied_as->api_version == "v1");
  CHECK(ns.metadata.applied_as->kind == "Namespace");
  // The server's fields (uid) are not kept; a cluster-scoped kind gets no namespace.
  CHECK(ns.metadata.applied_as->document ==
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    team: a\n");

  const auto& account = std::get<ServiceAccount>(result.objects[1].object);
  CHECK(account.metadata.ns == "shop");
  CHECK(*account.metadata.annotations == Labels{{"owner", "me"}});
  // Accepted, not acted on: reported once, where it is.
  REQUIRE(result.objects[1].warnings.size() == 1);
  CHECK(result.objects[1].warnings[0] ==
        "app.yaml:14:1: automountServiceAccountToken: ignored: podless issues the account's "
        "SPIFFE certificate");

  // The same text gives the same document: a re-apply is "unchanged".
  ParseResult again = Parse(text);
  REQUIRE(again.objects.size() == 2);
  CHECK(again.objects[1].object == result.objects[1].object);
}

TEST_CASE("ParseManifests: Kubernetes metadata is checked like kubectl --validate=strict") {
  Diagnostic d =
      Only(Parse("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n"
                 "  nmespace: shop\n"));
  CheckAt(d, "metadata.nmespace", 5, 3);
  CHECK(d.message.find("unknown field \"nmespace\"") == 0);

  d = Only(Parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n"));
  CheckAt(d, "metadata.namespace", 3, 21);
  CHECK(d.message == "a cluster-scoped kind has no namespace");

  d =
      Only(Parse("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n"
                 "  annotations: {\"bad key!\": x}\n"));
  CHECK(d.field == "metadata.annotations[bad key!]");
  CHECK(d.message.find("invalid annotation key \"bad key!\"") == 0);
}

}  // namespace podless::workloads

namespace podless::workloads {
namespace {

TEST_CASE("ParseManifests: a kept document is bounded in depth and size") {
  std::string deep =
      "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n"
      "  ownerReferences: " +
      std::string(100, '[') + std::string(100, ']') + "\n";
  ParseResult result = Parse(deep);
  REQUIRE(!result.errors.empty());
  CHECK(result.errors.back().message.find("document too deep or too large to keep") == 0);
  CHECK(result.objects.empty());

  // Aliases that expand to millions of nodes in a field the reader skips.
  std::string bomb =
      "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n"
      "  ownerReferences:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char previous = 'a';
  for (char name = 'b'; name <= 'h'; ++name) {
    bomb += std::string("    ") + name + ": &" + name + " [";
    for (int i = 0; i < 10; ++i) bomb += std::string(i ? ", *" : "*") + previous;
    bomb += "]\n";
    previous = name;
  }
  result = Parse(bomb);
  REQUIRE(!result.errors.empty());
  CHECK(result.objects.empty());
}

}  // namespace
}  // namespace podless::workloads
