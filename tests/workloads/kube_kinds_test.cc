// Kubernetes workload kinds and v1 Service read into the podless model
// (workloads/kube_kinds.cc).
#include <doctest.h>

#include <random>
#include <string>

#include "workloads/manifest_parser.h"

namespace podless::workloads {
namespace {

ParseResult Parse(std::string_view text) { return ParseManifests(text, "k8s.yaml"); }

template <typename T>
T OnlyObject(const ParseResult& result) {
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.empty());
  REQUIRE(result.objects.size() == 1);
  REQUIRE(std::holds_alternative<T>(result.objects[0].object));
  return std::get<T>(result.objects[0].object);
}

Diagnostic OnlyError(const ParseResult& result) {
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.size() == 1);
  return result.errors[0];
}

bool HasWarning(const ParseResult& result, std::string_view text) {
  for (const ParsedObject& o : result.objects) {
    for (const std::string& w : o.warnings) {
      if (w.find(text) != std::string::npos) return true;
    }
  }
  return false;
}

// bookinfo's details Deployment, as Istio ships it.
constexpr char kDeployment[] = R"y(apiVersion: apps/v1
kind: Deployment
metadata:
  name: details-v1
  namespace: bookinfo
  labels:
    app: details
    version: v1
spec:
  replicas: 2
  selector:
    matchLabels:
      app: details
      version: v1
  template:
    metadata:
      labels:
        app: details
        version: v1
    spec:
      serviceAccountName: bookinfo-details
      containers:
      - name: details
        image: docker.io/istio/examples-bookinfo-details-v1:1.20.2
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 9080
        securityContext:
          runAsUser: 1000
)y";

TEST_CASE("Deployment of an image-only container: an in-proxy echo Workload") {
  ParseResult result = Parse(kDeployment);
  Workload w = OnlyObject<Workload>(result);
  CHECK(w.metadata.name == "details-v1");
  CHECK(w.metadata.ns == "bookinfo");
  CHECK(w.metadata.labels == Labels{{"app", "details"}, {"version", "v1"}});
  CHECK(w.spec.replicas == 2);
  CHECK(w.spec.service_account == "bookinfo-details");
  REQUIRE(w.spec.ports.size() == 1);
  CHECK(w.spec.ports[0].port == 9080);
  // Unnamed: HTTP for the in-proxy stand-in (Istio would sniff HTTP).
  CHECK(w.spec.ports[0].protocol == Protocol::kHTTP);
  CHECK(std::holds_alternative<EchoApp>(w.spec.app));
  REQUIRE(w.metadata.applied_as);
  CHECK(w.metadata.applied_as->kind == "Deployment");
  CHECK(w.metadata.applied_as->api_version == "apps/v1");
  // Fields kept but not acted on: one warning each, located.
  CHECK(HasWarning(result,
                   "k8s.yaml:24:9: spec.template.spec.containers[0].image: image "
                   "docker.io/istio/examples-bookinfo-details-v1:1.20.2 is not pulled"));
  CHECK(HasWarning(result, "spec.template.spec.containers[0].imagePullPolicy: ignored"));
  CHECK(HasWarning(result, "spec.template.spec.containers[0].securityContext: ignored"));
}

TEST_CASE("StatefulSet, ReplicaSet, DaemonSet and Pod map to Workloads") {
  const std::string body = R"y(
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres, ports: [{containerPort: 5432, name: tcp-pg}]}]
)y";
  for (const char* kind : {"StatefulSet", "ReplicaSet"}) {
    CAPTURE(kind);
    Workload w = OnlyObject<Workload>(Parse(std::string("apiVersion: apps/v1\nkind: ") + kind +
                                            "\nmetadata: {name: db}\nspec:\n  replicas: 3" + body));
    CHECK(w.spec.replicas == 3);
    CHECK(w.metadata.labels == Labels{{"app", "db"}});
    REQUIRE(w.spec.ports.size() == 1);
    CHECK(w.spec.ports[0].protocol == Protocol::kTCP);  // tcp-: Istio's TCP
    CHECK(w.metadata.applied_as->kind == kind);
  }
  // A DaemonSet: one replica on this agent; it has no replicas field.
  Workload ds = OnlyObject<Workload>(
      Parse("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: db}\nspec:" + body));
  CHECK(ds.spec.replicas == 1);
  Diagnostic d = OnlyError(Parse(
      "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: db}\nspec:\n  replicas: 2" + body));
  CHECK(d.field == "spec.replicas");
  CHECK(d.message.find("unknown field \"replicas\"") == 0);

  Workload pod = OnlyObject<Workload>(Parse(R"y(apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {app: client}
  annotations: {podless.dev/app: static}
spec:
  serviceAccount: legacy
  containers:
  - name: c
    image: curlimages/curl
    ports: [{containerPort: 8080, name: http-web}]
)y"));
  CHECK(pod.metadata.name == "client");
  CHECK(pod.spec.replicas == 1);
  CHECK(pod.spec.service_account == "legacy");  // the deprecated spelling
  CHECK(pod.metadata.labels == Labels{{"app", "client"}});
  REQUIRE(std::holds_alternative<StaticApp>(pod.spec.app));
  CHECK(std::get<StaticApp>(pod.spec.app).status == 200);
  CHECK(pod.spec.ports[0].protocol == Protocol::kHTTP);
}

TEST_CASE("A selector that does not match the template labels is refused as Kubernetes does") {
  std::string text = kDeployment;
  text.replace(text.find("      app: details\n      version: v1\n  template"), 36,
               "      app: detail\n      version: v1");
  Diagnostic d = OnlyError(Parse(text));
  CHECK(d.field == "spec.template.metadata.labels");
  CHECK(d.where.file == "k8s.yaml");
  CHECK(d.where.line == 18);
  CHECK(d.where.column == 9);
  CHECK(d.message.find("selector does not match template labels") == 0);

  // matchExpressions are evaluated against the template labels.
  std::string expressions = kDeployment;
  expressions.replace(expressions.find("    matchLabels:\n      app: details\n      version: v1\n"),
                      54,
                      "    matchExpressions:\n"
                      "    - {key: app, operator: In, values: [details, other]}\n"
                      "    - {key: tier, operator: DoesNotExist}\n");
  CHECK(OnlyObject<Workload>(Parse(expressions)).metadata.labels.size() == 2);
  std::string not_in = expressions;
  not_in.replace(not_in.find("operator: In"), 12, "operator: NotIn");
  CHECK(OnlyError(Parse(not_in)).message.find("selector does not match") == 0);

  // No selector at all: apps/v1 requires one.
  std::string none = kDeployment;
  none.erase(none.find("  selector:"), 66);
  d = OnlyError(Parse(none));
  CHECK(d.field == "spec.selector");
  CHECK(d.message.find("missing required field \"selector\"") == 0);
}

TEST_CASE("UDP ports and unknown fields are refused, with their place") {
  std::string udp = kDeployment;
  udp.replace(udp.find("- containerPort: 9080"), 21,
              "- containerPort: 9080\n          protocol: UDP");
  Diagnostic d = OnlyError(Parse(udp));
  CHECK(d.field == "spec.template.spec.containers[0].ports[0].protocol");
  CHECK(d.where.line == 28);
  CHECK(d.where.column == 21);
  CHECK(d.message == "UDP is not supported: podless relays TCP only (HBONE carries TCP streams)");

  std::string unknown = kDeployment;
  unknown.replace(unknown.find("        imagePullPolicy"), 8,
                  "        imagePulPolicy: x\n        ");
  d = OnlyError(Parse(unknown));
  CHECK(d.field == "spec.template.spec.containers[0].imagePulPolicy");
  CHECK(d.where.line == 25);
  CHECK(d.message.find("unknown field \"imagePulPolicy\"") == 0);

  d = OnlyError(Parse(R"y(apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  selector: {app: dns}
  ports: [{port: 53, protocol: UDP}]
)y"));
  CHECK(d.field == "spec.ports[0].protocol");
  CHECK(d.where.line == 6);
  CHECK(d.message.find("UDP is not supported") == 0);
}

TEST_CASE("Kept-but-ignored pod fields are warnings, one each") {
  ParseResult result = Parse(R"y(apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate}
  revisionHistoryLimit: 3
  template:
    metadata: {labels: {app: web}, creationTimestamp: null}
    spec:
      nodeSelector: {disk: ssd}
      tolerations: [{key: a, operator: Exists}]
      volumes: [{name: tmp, emptyDir: {}}]
      containers:
      - name: web
        image: nginx
        volumeMounts: [{name: tmp, mountPath: /tmp}]
        livenessProbe: {httpGet: {port: 80}}
)y");
  Workload w = OnlyObject<Workload>(result);
  for (const char* field :
       {"spec.strategy: ignored", "spec.revisionHistoryLimit: ignored",
        "spec.template.spec.nodeSelector: ignored", "spec.template.spec.tolerations: ignored",
        "spec.template.spec.volumes: ignored",
        "spec.template.spec.containers[0].volumeMounts: ignored",
        "spec.template.spec.containers[0].livenessProbe: ignored"}) {
    CAPTURE(field);
    CHECK(HasWarning(result, field));
  }
  CHECK(w.spec.ports.empty());
}

TEST_CASE("podless.dev/app on the pod template picks static or forward") {
  auto with = [](std::string annotation) {
    return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
           "  selector: {matchLabels: {app: web}}\n"
           "  template:\n"
           "    metadata:\n"
           "      labels: {app: web}\n"
           "      annotations: {podless.dev/app: \"" +
           annotation +
           "\"}\n"
           "    spec:\n"
           "      containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]\n";
  };
  Workload s = OnlyObject<Workload>(Parse(with("static")));
  REQUIRE(std::holds_alternative<StaticApp>(s.spec.app));
  CHECK(std::get<StaticApp>(s.spec.app).status == 200);
  CHECK(std::get<StaticApp>(s.spec.app).body == "ok\n");
  Workload s404 = OnlyObject<Workload>(Parse(with("static=404")));
  CHECK(std::get<StaticApp>(s404.spec.app).status == 404);
  Workload f = OnlyObject<Workload>(Parse(with("forward=127.0.0.1:9000")));
  REQUIRE(std::holds_alternative<ForwardApp>(f.spec.app));
  CHECK(std::get<ForwardApp>(f.spec.app).address == "127.0.0.1:9000");
  Workload e = OnlyObject<Workload>(Parse(with("echo")));
  CHECK(std::holds_alternative<EchoApp>(e.spec.app));

  Diagnostic d = OnlyError(Parse(with("nginx")));
  CHECK(d.where.line == 9);
  CHECK(d.message.find("unsupported value \"nginx\": must be echo, static") == 0);

  // On the Deployment's own metadata, when the template has none.
  std::string own =
      "apiVersion: apps/v1\nkind: Deployment\n"
      "metadata: {name: web, annotations: {podless.dev/app: static}}\nspec:\n"
      "  selector: {matchLabels: {app: web}}\n"
      "  template:\n"
      "    metadata: {labels: {app: web}}\n"
      "    spec: {containers: [{name: web, image: nginx}]}\n";
  CHECK(std::holds_alternative<StaticApp>(OnlyObject<Workload>(Parse(own)).spec.app));
}

TEST_CASE("A container with a command is an exec app, env fieldRefs resolved per replica") {
  ParseResult result = Parse(R"y(apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api, tier: back}}
    spec:
      serviceAccountName: api
      terminationGracePeriodSeconds: 5
      securityContext: {runAsUser: 1000, runAsNonRoot: true}
      containers:
      - name: api
        image: python:3
        command: [python3, -m, http.server]
        args: ["$(PORT)"]
        workingDir: /srv
        ports: [{containerPort: 8000, name: http}]
        env:
        - {name: GREETING, value: hi}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: SA
          valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
        - name: TIER
          valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}
        readinessProbe: {httpGet: {port: http, path: /}, periodSeconds: 2}
        resources:
          limits: {memory: 64Mi, cpu: 500m, ephemeral-storage: 1Gi}
          requests: {cpu: 100m}
        securityContext: {runAsGroup: 1000}
      - name: sidecar
        image: envoy
)y");
  Workload w = OnlyObject<Workload>(result);
  REQUIRE(std::holds_alternative<ExecApp>(w.spec.app));
  const ExecApp& exec = std::get<ExecApp>(w.spec.app);
  CHECK(exec.command == std::vector<std::string>{"python3", "-m", "http.server", "$(PORT)"});
  CHECK(exec.working_dir == "/srv");
  CHECK(exec.termination_grace_period_seconds == 5);
  REQUIRE(exec.env.size() == 6);
  CHECK(exec.env[0] == EnvVar{"GREETING", "hi"});
  CHECK(exec.env[1] == EnvVar{"POD_NAME", "$(PODLESS_REPLICA)"});
  CHECK(exec.env[2] == EnvVar{"POD_NAMESPACE", "$(PODLESS_NAMESPACE)"});
  CHECK(exec.env[3] == EnvVar{"POD_IP", "$(PODLESS_ADDRESS)"});
  CHECK(exec.env[4] == EnvVar{"SA", "api"});
  CHECK(exec.env[5] == EnvVar{"TIER", "back"});
  REQUIRE(exec.readiness_probe);
  CHECK(exec.readiness_probe->kind == Probe::Kind::kHttpGet);
  CHECK(exec.readiness_probe->port.name == "http");
  CHECK(exec.readiness_probe->period_seconds == 2);
  CHECK(exec.sandbox->limits.memory_bytes == 64u << 20);
  CHECK(exec.sandbox->limits.cpu_millis == 500);
  CHECK(exec.sandbox->security_context.run_as_user == 1000u);
  CHECK(exec.sandbox->security_context.run_as_group == 1000u);
  CHECK(exec.sandbox->security_context.run_as_non_root == true);
  REQUIRE(w.spec.ports.size() == 1);
  CHECK(w.spec.ports[0].protocol == Protocol::kHTTP);
  CHECK(w.spec.service_account == "api");
  CHECK(HasWarning(result,
                   "containers[0].image: image python:3 is not pulled: podless has no "
                   "container runtime; the command runs on the host"));
  CHECK(HasWarning(result, "limits[ephemeral-storage]: ignored"));
  CHECK(HasWarning(result, "resources.requests: ignored"));
  CHECK(HasWarning(result, "containers[1]: ignored: container \"sidecar\" has no command"));

  // Secrets and unsupported fieldPaths are refused.
  Diagnostic d = OnlyError(Parse(R"y(apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: a
    command: [env]
    env:
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
)y"));
  CHECK(d.field == "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath");
  CHECK(d.message.find("unsupported fieldPath \"spec.nodeName\"") == 0);
}

TEST_CASE("Several containers with commands run side by side in one replica") {
  ParseResult result = Parse(R"y(apiVersion: apps/v1
kind: Deployment
metadata: {name: pair, namespace: shop}
spec:
  selector: {matchLabels: {app: pair}}
  template:
    metadata: {labels: {app: pair}}
    spec:
      restartPolicy: Always
      securityContext: {runAsUser: 1000}
      containers:
      - name: web
        command: [python3, -m, http.server]
        args: ["8000"]
        ports: [{containerPort: 8000, name: http}]
        env: [{name: ROLE, value: server}]
        readinessProbe: {tcpSocket: {port: http}}
        resources: {limits: {memory: 64Mi, cpu: 250m}}
      - name: image-only
        image: envoy
        ports: [{containerPort: 9901, name: admin}]
      - name: poller
        command: [sh, -c]
        args: ["curl -s 127.0.0.1:8000"]
        ports: [{containerPort: 9000, name: metrics}]
        workingDir: /tmp
        env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        resources: {limits: {memory: 32Mi, cpu: 250m}}
)y");
  Workload w = OnlyObject<Workload>(result);
  REQUIRE(std::holds_alternative<ExecApp>(w.spec.app));
  const ExecApp& exec = std::get<ExecApp>(w.spec.app);
  // The first container is the app's own command.
  CHECK(exec.containers->name == "web");
  CHECK(exec.command == std::vector<std::string>{"python3", "-m", "http.server", "8000"});
  CHECK(exec.env == std::vector<EnvVar>{{"ROLE", "server"}});
  REQUIRE(exec.readiness_probe);
  CHECK(exec.readiness_probe->port.name == "http");
  // The second that has a command is a further container.
  REQUIRE(exec.containers->more.size() == 1);
  const ExecContainer& poller = exec.containers->more[0];
  CHECK(poller.name == "poller");
  CHECK(poller.command == std::vector<std::string>{"sh", "-c", "curl -s 127.0.0.1:8000"});
  CHECK(poller.working_dir == "/tmp");
  CHECK(poller.env == std::vector<EnvVar>{{"POD", "$(PODLESS_REPLICA)"}});
  CHECK_FALSE(poller.readiness_probe);
  // Every running container's ports belong to the one workload (an
  // image-only sidecar's are ignored, as beside one command).
  REQUIRE(w.spec.ports.size() == 2);
  CHECK(w.spec.ports[0].port == 8000);
  CHECK(w.spec.ports[1].port == 9000);
  CHECK(w.spec.ports[1].name == "metrics");
  // Limits: the containers' sum, for the replica's cgroup; the pod's
  // securityContext as for one container.
  CHECK(exec.sandbox->limits.memory_bytes == 96u << 20);
  CHECK(exec.sandbox->limits.cpu_millis == 500);
  CHECK(exec.sandbox->security_context.run_as_user == 1000u);
  CHECK(HasWarning(result, "containers[1]: ignored: container \"image-only\" has no command"));

  // A lone container keeps its name too (logs -c).
  Workload one = OnlyObject<Workload>(Parse(R"y(apiVersion: v1
kind: Pod
metadata: {name: one}
spec:
  containers:
  - {name: solo, command: [sleep, "1"]}
)y"));
  CHECK(std::get<ExecApp>(one.spec.app).containers->name == "solo");
  CHECK(std::get<ExecApp>(one.spec.app).containers->more.empty());
}

TEST_CASE("Several containers: duplicate names and partial limits are refused, with their place") {
  Diagnostic d = OnlyError(Parse(R"y(apiVersion: v1
kind: Pod
metadata: {name: two, labels: {app: two}}
spec:
  containers:
  - {name: a, command: [sleep, "1"]}
  - name: a
    command: [sleep, "2"]
)y"));
  CHECK(d.field == "spec.containers[1].name");
  CHECK(d.where.line == 7);
  CHECK(d.where.column == 11);
  CHECK(d.message ==
        "duplicate container name \"a\": the containers of a replica need distinct names");
  CHECK(d.ToString().find("k8s.yaml:7:11") != std::string::npos);

  d = OnlyError(Parse(R"y(apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  containers:
  - {name: a, command: [sleep, "1"], resources: {limits: {memory: 64Mi}}}
  - {name: b, command: [sleep, "2"]}
)y"));
  CHECK(d.field == "spec.containers[1].resources.limits.memory");
  CHECK(d.where.line == 7);
  CHECK(d.message.find("missing: podless limits a replica's containers together") == 0);

  d = OnlyError(Parse(R"y(apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  containers:
  - {name: a, command: [sleep, "1"]}
  - {name: B_b, command: [sleep, "2"]}
)y"));
  CHECK(d.field == "spec.containers[1].name");
  CHECK(d.message.find("invalid container name \"B_b\"") == 0);
}

TEST_CASE("v1 Service: ports, Istio's protocol rule, ignored fields") {
  ParseResult result = Parse(R"y(apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo, labels: {app: reviews}}
spec:
  type: NodePort
  clusterIP: 10.96.0.12
  sessionAffinity: None
  ipFamilies: [IPv4]
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080}
  - {name: http2-api, port: 81, targetPort: api}
  - {name: grpc, port: 82, targetPort: 8082, appProtocol: kubernetes.io/h2c}
  - {name: db, port: 5432, protocol: TCP, nodePort: 30001}
)y");
  Service s = OnlyObject<Service>(result);
  CHECK(s.selector == Labels{{"app", "reviews"}});
  REQUIRE(s.ports.size() == 4);
  CHECK(s.ports[0].protocol == Protocol::kHTTP);
  CHECK(s.ports[0].target_port.number == 9080);
  CHECK(s.ports[1].protocol == Protocol::kHTTP);
  CHECK(s.ports[1].target_port.name == "api");
  CHECK(s.ports[2].protocol == Protocol::kHTTP);
  CHECK(s.ports[2].target_port.number == 8082);
  CHECK(s.ports[3].protocol == Protocol::kTCP);
  CHECK(s.metadata.applied_as->kind == "Service");
  CHECK(HasWarning(result, "spec.type: ignored: served as ClusterIP"));
  CHECK(HasWarning(result, "spec.clusterIP: ignored"));
  CHECK(HasWarning(result, "spec.ports[3].nodePort: ignored"));
  CHECK(!HasWarning(result, "sessionAffinity"));
  CHECK(!HasWarning(result, "ipFamilies"));

  // kubectl get -o yaml output: one warning, for the address podless replaces.
  ParseResult kubectl = Parse(R"y(apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, resourceVersion: "5"}
spec:
  clusterIP: 10.96.0.7
  clusterIPs: [10.96.0.7]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
  selector: {app: web}
  sessionAffinity: None
  type: ClusterIP
status: {loadBalancer: {}}
)y");
  OnlyObject<Service>(kubectl);
  REQUIRE(kubectl.objects[0].warnings.size() == 1);
  CHECK(kubectl.objects[0].warnings[0].find("spec.clusterIP: ignored") != std::string::npos);

  Diagnostic d = OnlyError(Parse(
      "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\n"
      "spec: {type: ExternalName, externalName: example.com, selector: {a: b}, ports: [{port: "
      "80}]}\n"));
  CHECK(d.field == "spec.type");
  CHECK(d.message.find("ExternalName Services are not supported") == 0);
}

TEST_CASE("kubectl get -o yaml output applies: Kubernetes' defaults are not warned about") {
  ParseResult result = Parse(R"y(apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    deployment.kubernetes.io/revision: "1"
  creationTimestamp: "2024-05-01T12:00:00Z"
  generation: 1
  name: web
  namespace: default
  resourceVersion: "1234"
  uid: 0b6f1d2e-1111-2222-3333-444455556666
spec:
  progressDeadlineSeconds: 600
  replicas: 1
  revisionHistoryLimit: 10
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}
    type: RollingUpdate
  template:
    metadata:
      creationTimestamp: null
      labels: {app: web}
    spec:
      containers:
      - image: nginx
        imagePullPolicy: Always
        name: web
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
status:
  availableReplicas: 1
  replicas: 1
)y");
  OnlyObject<Workload>(result);
  REQUIRE(result.objects.size() == 1);
  const std::vector<std::string>& warnings = result.objects[0].warnings;
  for (const std::string& w : warnings) MESSAGE(w);
  REQUIRE(warnings.size() == 3);
  CHECK(warnings[0].find("spec.strategy: ignored") != std::string::npos);
  CHECK(warnings[1].find("containers[0].image: image nginx is not pulled") != std::string::npos);
  CHECK(warnings[2].find("containers[0].imagePullPolicy: ignored") != std::string::npos);
  // The stored document leaves out what the API server sets, and status.
  const std::string& doc =
      result.objects[0].object.index() == 0
          ? std::get<Workload>(result.objects[0].object).metadata.applied_as->document
          : "";
  CHECK(doc.find("resourceVersion") == std::string::npos);
  CHECK(doc.find("status") == std::string::npos);
  CHECK(doc.find("deployment.kubernetes.io/revision") != std::string::npos);
}

TEST_CASE("Validation findings name the Kubernetes document's fields") {
  ParseResult result = Parse(R"y(apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: Web_SA
      containers:
      - name: a
        image: nginx
        ports:
        - {containerPort: 80, name: http}
      - name: b
        image: envoy
        ports:
        - {containerPort: 80, name: admin}
)y");
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.size() == 2);
  CHECK(result.errors[0].field == "spec.template.spec.serviceAccountName");
  CHECK(result.errors[0].where.line == 9);
  CHECK(result.errors[1].field == "spec.template.spec.containers[1].ports[0].containerPort");
  CHECK(result.errors[1].where.line == 18);
  CHECK(result.errors[1].message == "duplicate port 80 (also ports[0])");
}

TEST_CASE("Kubernetes kinds: the parser never throws on mangled input") {
  const std::string seed = std::string(kDeployment) +
                           "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: "
                           "{a: 'static=201'}}\nspec:\n  containers:\n"
                           "  - name: a\n    command: [sh]\n    args: ['$(POD)']\n    env:\n"
                           "    - {name: POD, valueFrom: {fieldRef: {fieldPath: "
                           "\"metadata.labels['x']\"}}}\n"
                           "    readinessProbe: {tcpSocket: {port: 80}, exec: {command: [x]}}\n"
                           "    resources: {limits: {cpu: 1, memory: 2Mi, gpu: 1}}\n"
                           "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
                           "spec: {clusterIP: None, selector: {a: b}, ports: [{port: 80, "
                           "targetPort: http, appProtocol: http}]}\n"
                           "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\n"
                           "spec: {selector: {matchExpressions: [{key: a, operator: In, values: "
                           "[b]}]}, template: {metadata: {labels: {a: b}}, spec: {containers: "
                           "[{name: c, image: i}]}}}\n";
  static const char kAlphabet[] = "{}[]:,-&*!|>'\"#%@` \n\t?~0123456789abcXYZ$()";
  const std::string alphabet(kAlphabet, sizeof kAlphabet - 1);
  std::mt19937 rng(20261207);  // fixed: the test is the same on every run
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
  // The seed itself is valid.
  ParseResult clean = Parse(seed);
  for (const Diagnostic& d : clean.errors) MESSAGE(d.ToString());
  CHECK(clean.errors.empty());
  CHECK(clean.objects.size() == 4);
}

}  // namespace
}  // namespace podless::workloads
