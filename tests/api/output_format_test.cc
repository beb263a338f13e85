#include "api/output_format.h"

#include <doctest.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "api/model_convert.h"
#include "workloads/manifest_parser.h"

namespace podless::api {
namespace {

namespace wl = workloads;
using google::protobuf::util::MessageDifferencer;

void AddReplica(v1::Workload& w, const std::string& address, bool ready,
                const std::string& node = "") {
  v1::Replica* r = w.mutable_status()->add_replicas();
  const uint32_t ordinal = static_cast<uint32_t>(w.status().replicas_size() - 1);
  r->set_name(w.metadata().name() + "-" + std::to_string(ordinal));
  r->set_ordinal(ordinal);
  r->set_address(address);
  r->set_spiffe_id("spiffe://cluster.local/ns/" + w.metadata().namespace_() + "/sa/" +
                   w.spec().service_account());
  r->set_certificate_serial("0a1b2c");
  r->set_certificate_not_after(1714564800);  // 2024-05-01T12:00:00Z
  r->set_ready(ready);
  r->set_node(node);
}

wl::Workload WebModel() {
  wl::Workload w;
  w.metadata = {"web", "shop", {{"app", "web"}, {"tier", "front"}}};
  w.spec.replicas = 3;
  w.spec.service_account = "web";
  w.spec.ports = {{"http", 8080, wl::Protocol::kHTTP}, {"", 9000, wl::Protocol::kTCP}};
  wl::ExecApp exec;
  exec.command = {"python3", "-m", "http.server", "$(PORT)", "two words"};
  exec.env = {{"MODE", "prod"}};
  wl::Probe probe;
  probe.kind = wl::Probe::Kind::kHttpGet;
  probe.port.name = "http";
  probe.path = "/healthz";
  exec.readiness_probe = probe;
  w.spec.app = exec;
  return w;
}

// web: 3 replicas, 2 ready; the status the agent adds.
v1::Object WebObject() {
  v1::Object o;
  *o.mutable_workload() = ToProto(WebModel());
  AddReplica(*o.mutable_workload(), "127.64.0.1", true);
  AddReplica(*o.mutable_workload(), "127.64.0.2", true);
  AddReplica(*o.mutable_workload(), "127.64.0.3", false);
  return o;
}

wl::Workload DbModel() {
  wl::Workload w;
  w.metadata.name = "db";
  return w;  // default namespace, 1 replica, echo, no ports
}

v1::Object DbObject() { return ToProto(wl::Object(DbModel())); }

// 5 replicas on two nodes: the wide table shortens the address list.
v1::Object ManyObject() {
  wl::Workload model;
  model.metadata = {"many", "batch", {}};
  model.spec.replicas = 5;
  model.spec.ports = {{"", 7000, wl::Protocol::kTCP}};
  model.spec.app = wl::StaticApp{200, "ok", {}};
  v1::Object o = ToProto(wl::Object(model));
  for (int i = 0; i < 5; ++i) {
    AddReplica(*o.mutable_workload(), "127.64.1." + std::to_string(i + 1), true,
               i < 3 ? "node-a" : "node-b");
  }
  return o;
}

v1::Object ServiceObject() {
  wl::Service s;
  s.metadata = {"web", "shop", {}};
  s.selector = {{"app", "web"}, {"tier", "front"}};
  s.ports = {{"http", 80, {0, "http"}, wl::Protocol::kHTTP},
             {"", 9000, {9000, ""}, wl::Protocol::kTCP}};
  v1::Object o = ToProto(wl::Object(s));
  o.mutable_service()->mutable_status()->set_vip("10.96.0.10");
  o.mutable_service()->mutable_status()->add_endpoints("127.64.0.1");
  o.mutable_service()->mutable_status()->add_endpoints("127.64.0.2");
  return o;
}

wl::AuthorizationPolicy PolicyModel() {
  wl::AuthorizationPolicy p;
  p.metadata = {"web-allow", "shop", {}};
  p.selector = {{"app", "web"}};
  wl::PolicyRule rule;
  rule.from.push_back({{"spiffe://cluster.local/ns/shop/sa/frontend"}, {}, {}, {}});
  rule.to.push_back({{8080}, {}});
  p.rules = {rule};
  return p;
}

v1::Object PolicyObject() { return ToProto(wl::Object(PolicyModel())); }

v1::Object DenyAllObject() {
  wl::AuthorizationPolicy p;
  p.metadata = {"deny-none", "default", {}};
  p.action = wl::PolicyAction::kDeny;
  return ToProto(wl::Object(p));
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("OutputFormat: -o values parse, unknown ones are named in the error") {
  CHECK(*ParseOutputFormat("") == OutputFormat::kTable);
  CHECK(*ParseOutputFormat("wide") == OutputFormat::kWide);
  CHECK(*ParseOutputFormat("yaml") == OutputFormat::kYaml);
  CHECK(*ParseOutputFormat("json") == OutputFormat::kJson);
  auto bad = ParseOutputFormat("xml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ErrorCode::kInvalidArgument);
  CHECK(Contains(bad.error().message, "\"xml\""));
}

TEST_CASE("OutputFormat: workload table in kubectl layout") {
  std::vector<v1::Object> objects = {WebObject(), DbObject()};
  CHECK(FormatList(objects, v1::WORKLOAD, OutputFormat::kTable, false) ==
        "NAME   READY   REPLICAS   RESTARTS   APP    PORTS\n"
        "web    2/3     3          0          exec   8080/HTTP,9000/TCP\n"
        "db     0/1     1          0          echo   <none>\n");
  CHECK(FormatList(objects, v1::WORKLOAD, OutputFormat::kTable, true) ==
        "NAMESPACE   NAME   READY   REPLICAS   RESTARTS   APP    PORTS\n"
        "shop        web    2/3     3          0          exec   8080/HTTP,9000/TCP\n"
        "default     db     0/1     1          0          echo   <none>\n");
}

TEST_CASE("OutputFormat: wide workload table adds identity columns and shortens addresses") {
  std::vector<v1::Object> objects = {WebObject(), ManyObject()};
  CHECK(FormatList(objects, v1::WORKLOAD, OutputFormat::kWide, true) ==
        "NAMESPACE   NAME   READY   REPLICAS   RESTARTS   APP      PORTS                "
        "SERVICE-ACCOUNT   "
        "ADDRESSES                                  SPIFFE-ID                                    "
        "NODE\n"
        "shop        web    2/3     3          0          exec     8080/HTTP,9000/TCP   web        "
        "       "
        "127.64.0.1,127.64.0.2,127.64.0.3           spiffe://cluster.local/ns/shop/sa/web        "
        "<none>\n"
        "batch       many   5/5     5          0          static   7000/TCP             default    "
        "       "
        "127.64.1.1,127.64.1.2,127.64.1.3 +2 more   spiffe://cluster.local/ns/batch/sa/default   "
        "node-a,node-b\n");
}

TEST_CASE("OutputFormat: service and policy tables") {
  CHECK(FormatList({ServiceObject()}, v1::SERVICE, OutputFormat::kTable, false) ==
        "NAME   VIP          PORTS                    ENDPOINTS\n"
        "web    10.96.0.10   80->http/HTTP,9000/TCP   2\n");
  CHECK(FormatList({ServiceObject()}, v1::SERVICE, OutputFormat::kWide, false) ==
        "NAME   VIP          PORTS                    ENDPOINTS   SELECTOR\n"
        "web    10.96.0.10   80->http/HTTP,9000/TCP   2           app=web,tier=front\n");
  CHECK(FormatList({PolicyObject(), DenyAllObject()}, v1::AUTHORIZATION_POLICY,
                   OutputFormat::kTable, true) ==
        "NAMESPACE   NAME        ACTION   SELECTOR   RULES\n"
        "shop        web-allow   ALLOW    app=web    1\n"
        "default     deny-none   DENY     <all>      0\n");
}

TEST_CASE("OutputFormat: mixed kinds get one table each, the requested kind first") {
  std::string text = FormatList({PolicyObject(), DbObject(), ServiceObject()}, v1::SERVICE,
                                OutputFormat::kTable, false);
  CHECK(text ==
        "NAME   VIP          PORTS                    ENDPOINTS\n"
        "web    10.96.0.10   80->http/HTTP,9000/TCP   2\n"
        "\n"
        "NAME   READY   REPLICAS   RESTARTS   APP    PORTS\n"
        "db     0/1     1          0          echo   <none>\n"
        "\n"
        "NAME        ACTION   SELECTOR   RULES\n"
        "web-allow   ALLOW    app=web    1\n");
}

TEST_CASE("OutputFormat: an empty table list prints nothing, yaml and json an empty list") {
  CHECK(FormatList({}, v1::WORKLOAD, OutputFormat::kTable, false).empty());
  YAML::Node list = YAML::Load(FormatList({}, v1::WORKLOAD, OutputFormat::kYaml, false));
  CHECK(list["kind"].as<std::string>() == "List");
  CHECK(list["items"].IsSequence());
  CHECK(list["items"].size() == 0);
  google::protobuf::Struct json;
  REQUIRE(google::protobuf::util::JsonStringToMessage(
              FormatList({}, v1::WORKLOAD, OutputFormat::kJson, false), &json)
              .ok());
  CHECK(json.fields().at("items").list_value().values_size() == 0);
}

TEST_CASE("OutputFormat: a single object prints as the one-row table") {
  CHECK(FormatObject(DbObject(), OutputFormat::kTable) ==
        "NAME   READY   REPLICAS   RESTARTS   APP    PORTS\n"
        "db     0/1     1          0          echo   <none>\n");
}

// The same document: maps with the same keys in the same order, equal
// scalars (JSON's numbers and booleans compare as the YAML text).
bool SameDocument(const YAML::Node& a, const YAML::Node& b) {
  if (a.Type() != b.Type()) return false;
  if (a.IsScalar()) return a.Scalar() == b.Scalar();
  if (a.size() != b.size()) return false;
  if (a.IsSequence()) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!SameDocument(a[i], b[i])) return false;
    }
    return true;
  }
  auto ia = a.begin();
  auto ib = b.begin();
  for (; ia != a.end(); ++ia, ++ib) {
    if (ia->first.Scalar() != ib->first.Scalar() || !SameDocument(ia->second, ib->second)) {
      return false;
    }
  }
  return true;
}

TEST_CASE("OutputFormat: json is the yaml document, valid JSON, typed, and applies back") {
  for (const v1::Object& object : {WebObject(), ServiceObject(), PolicyObject(), DbObject()}) {
    std::string json = FormatObject(object, OutputFormat::kJson);
    std::string yaml = FormatObject(object, OutputFormat::kYaml);
    google::protobuf::Struct strict;  // a strict JSON parser
    REQUIRE_MESSAGE(google::protobuf::util::JsonStringToMessage(json, &strict).ok(), json);
    CHECK_MESSAGE(SameDocument(YAML::Load(json), YAML::Load(yaml)), json << "\n" << yaml);
    CHECK(strict.fields().at("apiVersion").string_value() == "podless.dev/v1alpha1");
    // The manifest parser reads it as it reads the yaml.
    wl::ParseResult from_json = wl::ParseManifests(json, "get.json");
    wl::ParseResult from_yaml = wl::ParseManifests(yaml, "get.yaml");
    for (const wl::Diagnostic& d : from_json.errors) FAIL_CHECK(d.ToString() << "\n" << json);
    REQUIRE(from_json.objects.size() == 1);
    REQUIRE(from_yaml.objects.size() == 1);
    CHECK(from_json.objects[0].object == from_yaml.objects[0].object);
  }
  std::string web = FormatObject(WebObject(), OutputFormat::kJson);
  CHECK(Contains(web, "\"serviceAccount\": \"web\""));
  CHECK(Contains(web, "\"replicas\": 3,"));                   // a number, not "3"
  CHECK(Contains(web, "\"ready\": false"));                   // a boolean
  CHECK(Contains(web, "\"certificateSerial\": \"0a1b2c\""));  // quoted in yaml: a string
  CHECK(Contains(web, "\"spiffeId\": \"spiffe://cluster.local/ns/shop/sa/web\""));
  CHECK_FALSE(Contains(web, "service_account"));
}

TEST_CASE("OutputFormat: a json list is the yaml List, in JSON") {
  std::vector<v1::Object> objects = {WebObject(), ServiceObject(), PolicyObject()};
  std::string text = FormatList(objects, v1::KIND_UNSPECIFIED, OutputFormat::kJson, false);
  google::protobuf::Struct list;
  REQUIRE_MESSAGE(google::protobuf::util::JsonStringToMessage(text, &list).ok(), text);
  CHECK(list.fields().at("kind").string_value() == "List");
  REQUIRE(list.fields().at("items").list_value().values_size() == 3);
  CHECK(SameDocument(YAML::Load(text), YAML::Load(FormatList(objects, v1::KIND_UNSPECIFIED,
                                                             OutputFormat::kYaml, false))));
}

TEST_CASE("OutputFormat: -o name, --show-labels, --no-headers") {
  std::vector<v1::Object> objects = {WebObject(), ServiceObject(), PolicyObject()};
  CHECK(FormatList(objects, v1::KIND_UNSPECIFIED, OutputFormat::kName, false) ==
        "workload/web\nservice/web\nauthorizationpolicy/web-allow\n");
  CHECK(*ParseOutputFormat("name") == OutputFormat::kName);
  ListOptions options;
  options.no_headers = true;
  options.show_labels = true;
  CHECK(FormatList({DbObject()}, v1::WORKLOAD, OutputFormat::kTable, options) ==
        "db   0/1   1   0   echo   <none>   <none>\n");
}

TEST_CASE("OutputFormat: get replicas, one row each, as kubectl lists pods") {
  v1::Object many = ManyObject();
  v1::Object web = WebObject();
  auto* r2 = web.mutable_workload()->mutable_status()->mutable_replicas(2);
  r2->set_process_state("Waiting");
  r2->set_process_reason("CrashLoopBackOff");
  r2->set_restarts(4);
  for (auto& r : *web.mutable_workload()->mutable_status()->mutable_replicas()) {
    r.set_started_at(1000);
  }
  auto text = FormatReplicas({web, many}, OutputFormat::kTable, {}, 1000 + 300);
  REQUIRE(text.ok());
  CHECK(text->substr(0, text->find('\n')) ==
        "NAME     READY   STATUS             RESTARTS   AGE      ADDRESS      NODE");
  CHECK(Contains(
      *text, "\nweb-0    1/1     Running            0          5m       127.64.0.1   <none>\n"));
  CHECK(Contains(
      *text, "\nweb-2    0/1     CrashLoopBackOff   4          5m       127.64.0.3   <none>\n"));
  CHECK(Contains(
      *text, "\nmany-4   1/1     Running            0          <none>   127.64.1.5   node-b\n"));
  ListOptions all;
  all.all_namespaces = true;
  auto wide = FormatReplicas({web}, OutputFormat::kWide, all, 1300);
  REQUIRE(wide.ok());
  CHECK(wide->rfind("NAMESPACE   NAME    READY", 0) == 0);
  CHECK(Contains(*wide, "   web        spiffe://cluster.local/ns/shop/sa/web\n"));
  CHECK(*FormatReplicas({web}, OutputFormat::kName, {}, 0) ==
        "replica/web-0\nreplica/web-1\nreplica/web-2\n");
  CHECK_FALSE(FormatReplicas({web}, OutputFormat::kYaml, {}, 0).ok());
  CHECK(FormatReplicas({DbObject()}, OutputFormat::kTable, {}, 0)->empty());
}

TEST_CASE("OutputFormat: yaml of an object re-parses to the same model") {
  struct Case {
    v1::Object object;
    wl::Object model;
  };
  wl::Workload web = WebModel();
  v1::Object web_without_status = ToProto(wl::Object(web));
  for (const Case& c : {Case{web_without_status, web}, Case{DbObject(), DbModel()},
                        Case{PolicyObject(), PolicyModel()}}) {
    std::string text = FormatObject(c.object, OutputFormat::kYaml);
    CHECK_FALSE(Contains(text, "status:"));
    wl::ParseResult parsed = wl::ParseManifests(text, "get.yaml");
    for (const wl::Diagnostic& d : parsed.errors) FAIL_CHECK(d.ToString() << "\n" << text);
    REQUIRE(parsed.objects.size() == 1);
    CHECK(parsed.objects[0].object == c.model);
  }
}

TEST_CASE("OutputFormat: yaml of a workload adds the replicas under status") {
  std::string text = FormatObject(WebObject(), OutputFormat::kYaml);
  CHECK(text.rfind("apiVersion: podless.dev/v1alpha1\n", 0) == 0);
  CHECK(Contains(text,
                 "\nstatus:\n"
                 "  replicas:\n"
                 "    - name: web-0\n"
                 "      address: 127.64.0.1\n"
                 "      spiffeId: spiffe://cluster.local/ns/shop/sa/web\n"
                 "      certificateSerial: \"0a1b2c\"\n"
                 "      certificateNotAfter: 2024-05-01T12:00:00Z\n"
                 "      ready: true\n"));
  YAML::Node node = YAML::Load(text);
  CHECK(node["status"]["replicas"].size() == 3);
  CHECK(node["status"]["replicas"][2]["ready"].as<bool>() == false);
  CHECK(node["spec"]["replicas"].as<int>() == 3);

  std::string service = FormatObject(ServiceObject(), OutputFormat::kYaml);
  YAML::Node s = YAML::Load(service);
  CHECK(s["status"]["vip"].as<std::string>() == "10.96.0.10");
  CHECK(s["status"]["endpoints"].size() == 2);
}

TEST_CASE("OutputFormat: a yaml list is a kind List whose items re-parse as manifests") {
  std::vector<v1::Object> objects = {WebObject(), DbObject(), PolicyObject()};
  std::string text = FormatList(objects, v1::KIND_UNSPECIFIED, OutputFormat::kYaml, true);
  YAML::Node list = YAML::Load(text);
  CHECK(list["apiVersion"].as<std::string>() == "v1");
  CHECK(list["kind"].as<std::string>() == "List");
  REQUIRE(list["items"].size() == 3);
  CHECK(list["items"][0]["status"]["replicas"][1]["name"].as<std::string>() == "web-1");
  // Nesting kept every item intact: the ones without status are manifests.
  const wl::Object models[] = {DbModel(), PolicyModel()};
  for (size_t i = 1; i < 3; ++i) {
    wl::ParseResult parsed = wl::ParseManifests(YAML::Dump(list["items"][i]), "item.yaml");
    REQUIRE(parsed.errors.empty());
    REQUIRE(parsed.objects.size() == 1);
    CHECK(parsed.objects[0].object == models[i - 1]);
  }
}

TEST_CASE("OutputFormat: describe a workload shows identity, app details and replicas") {
  v1::Object web = WebObject();
  AddReplica(*web.mutable_workload(), "127.64.0.4", true, "node-a");
  std::string text = Describe(web);
  CHECK(text.rfind("Name:             web\n", 0) == 0);
  CHECK(Contains(text, "\nNamespace:        shop\n"));
  CHECK(Contains(text, "\nLabels:           app=web\n                  tier=front\n"));
  CHECK(Contains(text, "\nService Account:  web\n"));
  CHECK(Contains(text, "\nReplicas:         3 desired | 4 materialized | 3 ready\n"));
  CHECK(Contains(text, "\nPorts:            http 8080/HTTP\n                  9000/TCP\n"));
  CHECK(Contains(text, "\nApp:              exec\n"));
  CHECK(Contains(text, "\n  Command:            python3 -m http.server $(PORT) 'two words'\n"));
  CHECK(Contains(text, "\n  Restart Policy:     Always\n"));
  CHECK(Contains(text, "\n  Environment:        MODE=prod\n"));
  CHECK(Contains(text,
                 "\n  Readiness:          http-get :http/healthz delay=0s timeout=1s period=10s "
                 "#success=1 #failure=3\n"));
  CHECK(Contains(text, "\nReplica Status:\n  NAME    ADDRESS      SPIFFE ID"));
  CHECK(Contains(text, "\n  web-0  "));
  CHECK(Contains(text, "0a1b2c        2024-05-01T12:00:00Z   true    <none>\n"));
  CHECK(Contains(text, "0a1b2c        2024-05-01T12:00:00Z   true    node-a\n"));
}

TEST_CASE("OutputFormat: describe an exec workload shows its sandbox") {
  std::string text = Describe(WebObject());
  CHECK(Contains(text, "\n  Keep Working Dir:   false\n"));
  CHECK(Contains(text, "\n  Security Context:   <none>\n"));
  CHECK(Contains(text, "\n  Limits:             <none>\n"));

  wl::Workload model = WebModel();
  wl::ExecSandbox& sandbox = std::get<wl::ExecApp>(model.spec.app).sandbox.mutable_value();
  sandbox.security_context = {1000, 1000, true};
  sandbox.limits = {128u << 20, 500, 64};
  sandbox.keep_working_dir = true;
  v1::Object object;
  *object.mutable_workload() = ToProto(model);
  text = Describe(object);
  CHECK(Contains(text, "\n  Keep Working Dir:   true\n"));
  CHECK(
      Contains(text, "\n  Security Context:   runAsUser=1000 runAsGroup=1000 runAsNonRoot=true\n"));
  CHECK(Contains(text, "\n  Limits:             memory=128Mi cpu=500m pids=64\n"));
}

TEST_CASE("OutputFormat: describe an unmaterialized echo workload") {
  std::string text = Describe(DbObject());
  CHECK(Contains(text, "\nNamespace:        default\n"));
  CHECK(Contains(text, "\nLabels:           <none>\n"));
  CHECK(Contains(text, "\nPorts:            <none>\n"));
  CHECK(Contains(text, "\nApp:              echo\n"));
  CHECK(Contains(text, "\nReplica Status:   <none>\n"));
}

TEST_CASE("OutputFormat: describe services and policies") {
  std::string service = Describe(ServiceObject());
  CHECK(Contains(service, "\nKind:       Service\n"));
  CHECK(Contains(service, "\nSelector:   app=web,tier=front\n"));
  CHECK(Contains(service, "\nVIP:        10.96.0.10\n"));
  CHECK(Contains(service, "\nPorts:      http 80->http/HTTP\n            9000/TCP\n"));
  CHECK(Contains(service, "\nEndpoints:  127.64.0.1\n            127.64.0.2\n"));

  std::string policy = Describe(PolicyObject());
  CHECK(Contains(policy, "\nAction:     ALLOW\n"));
  CHECK(Contains(policy,
                 "\nRules:\n  Rule 1:\n"
                 "    From:  principals=spiffe://cluster.local/ns/shop/sa/frontend\n"
                 "    To:    ports=8080\n"));
  std::string deny = Describe(DenyAllObject());
  CHECK(Contains(deny, "\nSelector:   <all workloads in the namespace>\n"));
  CHECK(Contains(deny, "\nRules:      <none> (denies nothing)\n"));
}

// An object applied as a Kubernetes kind prints as that kind, with a status
// in its shape.
v1::Object KubeObject(const std::string& manifest) {
  wl::ParseResult parsed = wl::ParseManifests(manifest, "k8s.yaml");
  for (const wl::Diagnostic& d : parsed.errors) FAIL_CHECK(d.ToString());
  REQUIRE(parsed.objects.size() == 1);
  return ToProto(parsed.objects[0].object);
}

TEST_CASE("OutputFormat: yaml of a Kubernetes kind is its document with a Kubernetes status") {
  v1::Object deployment = KubeObject(
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n"
      "  selector: {matchLabels: {app: web}}\n"
      "  template:\n    metadata: {labels: {app: web}}\n"
      "    spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}\n");
  AddReplica(*deployment.mutable_workload(), "127.64.0.1", true);
  AddReplica(*deployment.mutable_workload(), "127.64.0.2", false);
  YAML::Node d = YAML::Load(FormatObject(deployment, OutputFormat::kYaml));
  CHECK(d["kind"].as<std::string>() == "Deployment");
  CHECK(d["spec"]["replicas"].as<int>() == 2);
  CHECK(d["status"]["replicas"].as<int>() == 2);
  CHECK(d["status"]["readyReplicas"].as<int>() == 1);
  CHECK(d["status"]["availableReplicas"].as<int>() == 1);
  CHECK(d["status"]["updatedReplicas"].as<int>() == 2);
  CHECK(Contains(Describe(deployment),
                 "Kind:             Deployment (apps/v1), run as a Workload\n"));

  v1::Object pod = KubeObject(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: job}\n"
      "spec: {containers: [{name: side, image: envoy}, {name: main, command: [sleep, '9']}]}\n");
  v1::Replica* r = pod.mutable_workload()->mutable_status()->add_replicas();
  r->set_name("job-0");
  r->set_address("127.64.0.9");
  r->set_ready(false);
  r->set_process_state("Waiting");
  r->set_process_reason("CrashLoopBackOff");
  r->set_restarts(4);
  r->set_last_exit("exit code 1");
  YAML::Node p = YAML::Load(FormatObject(pod, OutputFormat::kYaml));
  CHECK(p["kind"].as<std::string>() == "Pod");
  CHECK(p["status"]["phase"].as<std::string>() == "Pending");
  CHECK(p["status"]["podIP"].as<std::string>() == "127.64.0.9");
  CHECK(p["status"]["conditions"][0]["type"].as<std::string>() == "Ready");
  CHECK(p["status"]["conditions"][0]["status"].as<std::string>() == "False");
  REQUIRE(p["status"]["containerStatuses"].size() == 2);
  CHECK(p["status"]["containerStatuses"][0]["restartCount"].as<int>() == 0);
  YAML::Node main = p["status"]["containerStatuses"][1];
  CHECK(main["name"].as<std::string>() == "main");
  CHECK(main["restartCount"].as<int>() == 4);
  CHECK(main["state"]["waiting"]["reason"].as<std::string>() == "CrashLoopBackOff");

  // Several containers with commands: each its own status, by name; the
  // replica's READY counts ready containers, as kubectl does.
  v1::Object pair = KubeObject(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: pair}\n"
      "spec: {containers: [{name: web, command: [sleep, '9']}, {name: poller, command: [x]}]}\n");
  r = pair.mutable_workload()->mutable_status()->add_replicas();
  r->set_name("pair-0");
  r->set_address("127.64.0.10");
  r->set_process_state("Waiting");
  r->set_process_reason("CrashLoopBackOff");
  r->set_restarts(3);
  v1::ContainerStatus* web_status = r->add_containers();
  web_status->set_name("web");
  web_status->set_state("Running");
  web_status->set_ready(true);
  v1::ContainerStatus* poller_status = r->add_containers();
  poller_status->set_name("poller");
  poller_status->set_state("Waiting");
  poller_status->set_reason("CrashLoopBackOff");
  poller_status->set_restarts(3);
  poller_status->set_last_exit("exit code 2");
  YAML::Node two = YAML::Load(FormatObject(pair, OutputFormat::kYaml));
  REQUIRE(two["status"]["containerStatuses"].size() == 2);
  YAML::Node web_node = two["status"]["containerStatuses"][0];
  CHECK(web_node["name"].as<std::string>() == "web");
  CHECK(web_node["ready"].as<bool>());
  CHECK(web_node["restartCount"].as<int>() == 0);
  CHECK(web_node["state"]["running"].IsMap());
  YAML::Node poller_node = two["status"]["containerStatuses"][1];
  CHECK(poller_node["name"].as<std::string>() == "poller");
  CHECK_FALSE(poller_node["ready"].as<bool>());
  CHECK(poller_node["restartCount"].as<int>() == 3);
  CHECK(poller_node["state"]["waiting"]["reason"].as<std::string>() == "CrashLoopBackOff");
  CHECK(poller_node["lastState"]["terminated"]["reason"].as<std::string>() == "exit code 2");
  auto replicas = FormatReplicas({pair}, OutputFormat::kTable, {}, 0);
  REQUIRE(replicas.ok());
  CHECK(Contains(*replicas, "\npair-0   1/2     CrashLoopBackOff   3"));
  CHECK(Contains(Describe(pair), "Container Status:\n"));
  CHECK(Contains(Describe(pair), "poller      Waiting (CrashLoopBackOff)   false   3"));

  v1::Object service = KubeObject(
      "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
      "spec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n");
  service.mutable_service()->mutable_status()->set_vip("127.128.0.3");
  YAML::Node s = YAML::Load(FormatObject(service, OutputFormat::kYaml));
  CHECK(s["apiVersion"].as<std::string>() == "v1");
  CHECK(s["status"]["clusterIP"].as<std::string>() == "127.128.0.3");
  // It applies again as the same object (status is ignored).
  CHECK(KubeObject(FormatObject(service, OutputFormat::kYaml)).service().metadata().name() ==
        "web");
}

}  // namespace
}  // namespace podless::api
