#include "api/model_convert.h"

#include <doctest.h>

#include <string>

namespace podless::api {
namespace {

namespace wl = workloads;

wl::Workload RichWorkload(wl::AppSpec app) {
  wl::Workload w;
  w.metadata.name = "web";
  w.metadata.ns = "shop";
  w.metadata.labels = {{"app", "web"}, {"tier", "front"}};
  w.spec.replicas = 3;
  w.spec.service_account = "web-sa";
  w.spec.ports = {{"http", 8080, wl::Protocol::kHTTP}, {"", 9000, wl::Protocol::kTCP}};
  w.spec.app = std::move(app);
  return w;
}

wl::ExecApp RichExec() {
  wl::ExecApp exec;
  exec.command = {"python3", "-m", "http.server", "$(PORT)"};
  exec.env = {{"MODE", "prod"}, {"EMPTY", ""}};
  exec.working_dir = "/srv";
  exec.restart_policy = wl::RestartPolicy::kOnFailure;
  wl::Probe probe;
  probe.kind = wl::Probe::Kind::kHttpGet;
  probe.port.name = "http";
  probe.path = "/healthz";
  probe.initial_delay_seconds = 2;
  probe.period_seconds = 5;
  probe.timeout_seconds = 3;
  probe.failure_threshold = 4;
  probe.success_threshold = 2;
  exec.readiness_probe = probe;
  exec.termination_grace_period_seconds = 7;
  return exec;
}

wl::Service RichService() {
  wl::Service s;
  s.metadata.name = "web";
  s.metadata.ns = "shop";
  s.metadata.labels = {{"team", "a"}};
  s.selector = {{"app", "web"}};
  s.ports = {{"http", 80, {0, "http"}, wl::Protocol::kHTTP},
             {"raw", 9000, {9001, ""}, wl::Protocol::kTCP}};
  return s;
}

wl::AuthorizationPolicy RichPolicy() {
  wl::AuthorizationPolicy p;
  p.metadata.name = "web-allow";
  p.metadata.ns = "shop";
  p.selector = {{"app", "web"}};
  p.action = wl::PolicyAction::kDeny;
  wl::PolicyRule rule;
  rule.from.push_back({{"spiffe://cluster.local/ns/shop/sa/frontend"},
                       {"spiffe://cluster.local/ns/shop/sa/bad"},
                       {"shop"},
                       {"kube-*"}});
  rule.from.push_back({{}, {}, {"ops"}, {}});
  rule.to.push_back({{8080, 9000}, {}});
  rule.to.push_back({{}, {22}});
  p.rules = {rule, wl::PolicyRule{}};
  return p;
}

template <typename T>
void CheckRoundTrip(const T& model) {
  auto back = FromProto(ToProto(model));
  REQUIRE_MESSAGE(back.ok(), back.error().message);
  CHECK(*back == model);
  // Through the Object envelope and the wire bytes as well.
  v1::Object object = ToProto(wl::Object(model));
  v1::Object reparsed;
  REQUIRE(reparsed.ParseFromString(object.SerializeAsString()));
  auto back_object = FromProto(reparsed);
  REQUIRE_MESSAGE(back_object.ok(), back_object.error().message);
  CHECK(*back_object == wl::Object(model));
}

// The error text of a conversion that must fail.
template <typename T>
std::string ErrorOf(const T& proto) {
  auto result = FromProto(proto);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ErrorCode::kInvalidArgument);
  return result.error().message;
}

v1::Workload MinimalProtoWorkload() {
  v1::Workload w;
  w.mutable_metadata()->set_name("web");
  return w;
}

TEST_CASE("ModelConvert: workloads with every app variant survive a round trip") {
  SUBCASE("echo") { CheckRoundTrip(RichWorkload(wl::EchoApp{})); }
  SUBCASE("static") {
    CheckRoundTrip(RichWorkload(
        wl::StaticApp{404, "not here\n", {{"Content-Type", "text/plain"}, {"X-A", "b"}}}));
  }
  SUBCASE("forward") { CheckRoundTrip(RichWorkload(wl::ForwardApp{"127.0.0.1:9000"})); }
  SUBCASE("exec with an httpGet probe by port name") { CheckRoundTrip(RichWorkload(RichExec())); }
  SUBCASE("exec with a tcpSocket probe by number and no probe") {
    wl::ExecApp exec = RichExec();
    exec.restart_policy = wl::RestartPolicy::kNever;
    exec.readiness_probe->kind = wl::Probe::Kind::kTcpSocket;
    exec.readiness_probe->port = {8080, ""};
    exec.readiness_probe->path = "/";  // the model's default, unused by tcpSocket
    CheckRoundTrip(RichWorkload(exec));
    exec.readiness_probe.reset();
    exec.restart_policy = wl::RestartPolicy::kAlways;
    CheckRoundTrip(RichWorkload(exec));
  }
  SUBCASE("exec with further containers") {
    wl::ExecApp exec = RichExec();
    wl::ExecContainers& containers = exec.containers.mutable_value();
    containers.name = "web";
    wl::ExecContainer poller;
    poller.name = "poller";
    poller.command = {"sh", "-c", "curl 127.0.0.1:$(PORT)"};
    poller.env = {{"ROLE", "poller"}};
    poller.working_dir = "/tmp";
    poller.readiness_probe = *exec.readiness_probe;
    containers.more.push_back(poller);
    wl::ExecContainer bare;
    bare.name = "bare";
    bare.command = {"true"};
    containers.more.push_back(bare);
    CheckRoundTrip(RichWorkload(exec));
    const v1::Object p = ToProto(wl::Object(RichWorkload(exec)));
    const v1::ExecApp& e = p.workload().spec().app().exec();
    CHECK(e.name() == "web");
    REQUIRE(e.containers_size() == 2);
    CHECK(e.containers(0).name() == "poller");
    CHECK(e.containers(0).env(0).value() == "poller");
    CHECK(e.containers(0).has_readiness_probe());
    CHECK_FALSE(e.containers(1).has_readiness_probe());
  }
  SUBCASE("zero replicas and the default namespace") {
    wl::Workload w = RichWorkload(wl::EchoApp{});
    w.spec.replicas = 0;
    w.metadata.ns = wl::kDefaultNamespace;
    CheckRoundTrip(w);
  }
}

TEST_CASE("ModelConvert: an exec app's sandbox survives a round trip, field by field") {
  wl::ExecApp exec = RichExec();
  wl::ExecSandbox& sandbox = exec.sandbox.mutable_value();
  sandbox.security_context = {1000, 2000, true};
  sandbox.limits = {128u << 20, 500, 64};
  sandbox.keep_working_dir = true;
  CheckRoundTrip(RichWorkload(exec));

  v1::Workload p = ToProto(RichWorkload(exec));
  const v1::ExecApp& e = p.spec().app().exec();
  CHECK(e.security_context().run_as_user().value() == 1000);
  CHECK(e.security_context().run_as_group().value() == 2000);
  CHECK(e.security_context().run_as_non_root().value());
  CHECK(e.resources().limits().memory_bytes().value() == 128u << 20);
  CHECK(e.resources().limits().cpu_millis().value() == 500);
  CHECK(e.resources().limits().pids().value() == 64);
  CHECK(e.keep_working_dir());

  // One field at a time: the others stay absent, on the wire and back.
  SUBCASE("runAsUser 0 alone") {
    sandbox = {};
    sandbox.security_context.run_as_user = 0;
    CheckRoundTrip(RichWorkload(exec));
    const v1::Workload proto = ToProto(RichWorkload(exec));
    const v1::ExecApp& only = proto.spec().app().exec();
    CHECK(only.security_context().has_run_as_user());
    CHECK_FALSE(only.security_context().has_run_as_group());
    CHECK_FALSE(only.security_context().has_run_as_non_root());
    CHECK_FALSE(only.has_resources());
  }
  SUBCASE("runAsNonRoot false alone") {
    sandbox = {};
    sandbox.security_context.run_as_non_root = false;
    CheckRoundTrip(RichWorkload(exec));
  }
  SUBCASE("one limit alone") {
    sandbox = {};
    sandbox.limits.pids = 1;
    CheckRoundTrip(RichWorkload(exec));
    const v1::Workload proto = ToProto(RichWorkload(exec));
    const v1::ExecApp& only = proto.spec().app().exec();
    CHECK_FALSE(only.has_security_context());
    CHECK_FALSE(only.resources().limits().has_memory_bytes());
    CHECK_FALSE(only.resources().limits().has_cpu_millis());
  }
  SUBCASE("nothing set: no messages, and FromProto stores nothing") {
    sandbox = {};
    CheckRoundTrip(RichWorkload(exec));
    const v1::Workload proto = ToProto(RichWorkload(exec));
    const v1::ExecApp& none = proto.spec().app().exec();
    CHECK_FALSE(none.has_security_context());
    CHECK_FALSE(none.has_resources());
    CHECK_FALSE(none.keep_working_dir());
    auto back = FromProto(ToProto(RichWorkload(exec)));
    REQUIRE(back.ok());
    CHECK(std::get<wl::ExecApp>(back->spec.app).sandbox.is_default());
  }
}

TEST_CASE("ModelConvert: sandbox limits of 0 and runAsNonRoot with root are refused") {
  v1::Workload p = MinimalProtoWorkload();
  v1::ExecApp* exec = p.mutable_spec()->mutable_app()->mutable_exec();
  exec->add_command("x");
  v1::ResourceLimits* limits = exec->mutable_resources()->mutable_limits();
  limits->mutable_memory_bytes()->set_value(0);
  limits->mutable_cpu_millis()->set_value(0);
  limits->mutable_pids()->set_value(0);
  CHECK(ErrorOf(p) ==
        "workload.spec.app.exec.resources.limits.memory: must be at least 1Mi (leave it out for "
        "no limit)\n"
        "workload.spec.app.exec.resources.limits.cpu: must be more than 0 (leave it out for no "
        "limit)\n"
        "workload.spec.app.exec.resources.limits.pids: must be more than 0 (leave it out for no "
        "limit)");

  exec->clear_resources();
  exec->mutable_resources()->mutable_limits()->mutable_memory_bytes()->set_value(4096);
  exec->mutable_security_context()->mutable_run_as_user()->set_value(0);
  exec->mutable_security_context()->mutable_run_as_non_root()->set_value(true);
  const std::string error = ErrorOf(p);
  CHECK(error.find("workload.spec.app.exec.resources.limits.memory: must be at least 1Mi, got "
                   "4Ki") != std::string::npos);
  CHECK(error.find("workload.spec.app.exec.securityContext.runAsUser: runAsUser 0 (root) "
                   "contradicts runAsNonRoot: true") != std::string::npos);
}

TEST_CASE("ModelConvert: services and policies survive a round trip") {
  CheckRoundTrip(RichService());
  CheckRoundTrip(RichPolicy());
  wl::AuthorizationPolicy empty = RichPolicy();
  empty.selector.clear();
  empty.rules.clear();
  empty.action = wl::PolicyAction::kAllow;
  CheckRoundTrip(empty);
}

TEST_CASE("ModelConvert: Istio's source, operation and when attributes survive a round trip") {
  wl::AuthorizationPolicy p = RichPolicy();
  wl::PolicySource source;
  source.service_accounts = {"shop/web", "batch"};
  source.not_service_accounts = {"other/admin"};
  source.ip_blocks = {"10.0.0.0/8", "127.64.0.5"};
  source.not_ip_blocks = {"10.1.0.0/16"};
  source.remote_ip_blocks = {"192.168.0.0/16"};
  source.not_remote_ip_blocks = {"192.168.1.1"};
  source.request_principals = {"issuer/*"};
  source.not_request_principals = {"*"};
  wl::PolicyOperation operation;
  operation.hosts = {"web.shop.svc*"};
  operation.not_hosts = {"*.internal"};
  operation.methods = {"GET", "HEAD"};
  operation.not_methods = {"DELETE"};
  operation.paths = {"/api/*", "/health"};
  operation.not_paths = {"*.php"};
  wl::PolicyRule rule;
  rule.from = {source};
  rule.to = {operation};
  rule.when = {{"request.headers[x-user]", {"alice"}, {"mallory"}},
               {"destination.port", {}, {"22"}}};
  p.rules.push_back(rule);
  CheckRoundTrip(p);
  v1::AuthorizationPolicy proto = ToProto(p);
  const v1::PolicyRule& r = proto.spec().rules(2);
  CHECK(r.from(0).service_accounts(1) == "batch");
  CHECK(r.to(0).methods(1) == "HEAD");
  CHECK(r.when(0).key() == "request.headers[x-user]");
  CHECK(r.when(1).not_values(0) == "22");
}

TEST_CASE("ModelConvert: ToProto spells every default out") {
  wl::Workload w;
  w.metadata.name = "web";
  w.spec.ports = {{"", 80, wl::Protocol::kTCP}};
  v1::Workload p = ToProto(w);
  CHECK(p.metadata().namespace_() == "default");
  CHECK(p.spec().has_replicas());
  CHECK(p.spec().replicas().value() == 1);
  CHECK(p.spec().service_account() == "default");
  CHECK(p.spec().ports(0).protocol() == v1::TCP);
  CHECK(p.spec().app().has_echo());
  CHECK_FALSE(p.has_status());

  wl::ExecApp exec;
  exec.command = {"true"};
  exec.readiness_probe = wl::Probe{};
  w.spec.app = exec;
  p = ToProto(w);
  const v1::ExecApp& e = p.spec().app().exec();
  CHECK(e.restart_policy() == v1::ALWAYS);
  CHECK(e.termination_grace_period_seconds().value() == 30);
  CHECK(e.readiness_probe().has_tcp_socket());
  CHECK(e.readiness_probe().period_seconds().value() == 10);
  CHECK(e.readiness_probe().failure_threshold().value() == 3);
}

TEST_CASE("ModelConvert: FromProto applies the defaults the proto documents") {
  v1::Workload p = MinimalProtoWorkload();
  p.mutable_spec()->add_ports()->set_port(8080);  // PROTOCOL_UNSPECIFIED
  auto w = FromProto(p);
  REQUIRE_MESSAGE(w.ok(), w.error().message);
  CHECK(w->metadata.ns == "default");
  CHECK(w->spec.replicas == 1);
  CHECK(w->spec.service_account == "default");
  CHECK(w->spec.ports.at(0).protocol == wl::Protocol::kTCP);
  CHECK(std::holds_alternative<wl::EchoApp>(w->spec.app));

  SUBCASE("explicit zero replicas stays zero") {
    p.mutable_spec()->mutable_replicas()->set_value(0);
    auto z = FromProto(p);
    REQUIRE(z.ok());
    CHECK(z->spec.replicas == 0);
  }
  SUBCASE("static status 0 means 200") {
    p.mutable_spec()->mutable_app()->mutable_static_()->set_body("ok");
    auto s = FromProto(p);
    REQUIRE_MESSAGE(s.ok(), s.error().message);
    CHECK(std::get<wl::StaticApp>(s->spec.app).status == 200);
  }
  SUBCASE("an exec probe without timings gets Kubernetes' timings") {
    v1::ExecApp* exec = p.mutable_spec()->mutable_app()->mutable_exec();
    exec->add_command("sleep");
    exec->mutable_readiness_probe()->mutable_http_get()->mutable_port()->set_number(8080);
    auto e = FromProto(p);
    REQUIRE_MESSAGE(e.ok(), e.error().message);
    const wl::ExecApp& app = std::get<wl::ExecApp>(e->spec.app);
    CHECK(app.restart_policy == wl::RestartPolicy::kAlways);
    CHECK(app.termination_grace_period_seconds == 30);
    REQUIRE(app.readiness_probe.has_value());
    CHECK(app.readiness_probe->kind == wl::Probe::Kind::kHttpGet);
    CHECK(app.readiness_probe->path == "/");
    CHECK(app.readiness_probe->period_seconds == 10);
    CHECK(app.readiness_probe->timeout_seconds == 1);
    CHECK(app.readiness_probe->failure_threshold == 3);
    CHECK(app.readiness_probe->success_threshold == 1);
  }
  SUBCASE("a service port without targetPort targets the same number") {
    v1::Service s;
    s.mutable_metadata()->set_name("web");
    (*s.mutable_spec()->mutable_selector())["app"] = "web";
    s.mutable_spec()->add_ports()->set_port(80);
    auto service = FromProto(s);
    REQUIRE_MESSAGE(service.ok(), service.error().message);
    CHECK(service->ports.at(0).target_port == wl::PortRef{80, ""});
    CHECK(service->ports.at(0).protocol == wl::Protocol::kTCP);
  }
  SUBCASE("a policy without action allows") {
    v1::AuthorizationPolicy policy;
    policy.mutable_metadata()->set_name("p");
    auto model = FromProto(policy);
    REQUIRE_MESSAGE(model.ok(), model.error().message);
    CHECK(model->action == wl::PolicyAction::kAllow);
  }
}

TEST_CASE("ModelConvert: a port above 65535 is reported with its field path") {
  v1::Workload p = MinimalProtoWorkload();
  p.mutable_spec()->add_ports()->set_port(8080);
  p.mutable_spec()->add_ports()->set_port(70000);
  CHECK(ErrorOf(p) == "workload.spec.ports[1].port: 70000 is not a port number (1-65535)");

  v1::AuthorizationPolicy policy;
  policy.mutable_metadata()->set_name("p");
  policy.mutable_spec()->add_rules()->add_to()->add_not_ports(65536);
  CHECK(ErrorOf(policy) ==
        "authorizationPolicy.spec.rules[0].to[0].operation.notPorts[0]: 65536 is not a port "
        "number (1-65535)");
}

TEST_CASE("ModelConvert: every structural problem is reported, one per line") {
  v1::Workload p = MinimalProtoWorkload();
  v1::Port* port = p.mutable_spec()->add_ports();
  port->set_port(99999);
  port->set_protocol(static_cast<v1::Protocol>(7));
  v1::ExecApp* exec = p.mutable_spec()->mutable_app()->mutable_exec();
  exec->add_command("x");
  exec->set_restart_policy(static_cast<v1::RestartPolicy>(9));
  exec->mutable_readiness_probe();  // present, but no handler
  CHECK(ErrorOf(p) ==
        "workload.spec.ports[0].port: 99999 is not a port number (1-65535)\n"
        "workload.spec.ports[0].protocol: unknown protocol 7 (expected TCP or HTTP)\n"
        "workload.spec.app.exec.restartPolicy: unknown restart policy 9 (expected ALWAYS, "
        "ON_FAILURE or NEVER)\n"
        "workload.spec.app.exec.readinessProbe: one of tcpSocket or httpGet is required");
}

TEST_CASE("ModelConvert: a oneof left unset where one is required is an error") {
  SUBCASE("an empty app message") {
    v1::Workload p = MinimalProtoWorkload();
    p.mutable_spec()->mutable_app();
    CHECK(ErrorOf(p) == "workload.spec.app: one of echo, static, forward or exec is required");
  }
  SUBCASE("a probe port with neither number nor name") {
    v1::Workload p = MinimalProtoWorkload();
    v1::ExecApp* exec = p.mutable_spec()->mutable_app()->mutable_exec();
    exec->add_command("x");
    exec->mutable_readiness_probe()->mutable_tcp_socket();
    CHECK(ErrorOf(p) ==
          "workload.spec.app.exec.readinessProbe.tcpSocket.port: a port number or port name is "
          "required");
  }
  SUBCASE("an object without a kind") {
    CHECK(ErrorOf(v1::Object{}) ==
          "object: one of workload, service, authorizationPolicy, namespace, serviceAccount, "
          "peerAuthentication or workloadEntry is required");
  }
}

TEST_CASE("ModelConvert: semantic problems come from validation, rooted at the kind") {
  v1::Workload p = MinimalProtoWorkload();
  p.mutable_metadata()->set_name("Not_A_Name");
  p.mutable_spec()->add_ports()->set_port(80);
  p.mutable_spec()->add_ports()->set_port(80);
  std::string error = ErrorOf(p);
  CHECK(error.find("workload.metadata.name: ") != std::string::npos);
  CHECK(error.find("workload.spec.ports[1].port: duplicate port 80") != std::string::npos);

  v1::Object object;
  object.mutable_service()->mutable_metadata()->set_name("svc");  // no selector, no ports
  error = ErrorOf(object);
  CHECK(error.find("service.spec.selector: ") != std::string::npos);
  CHECK(error.find("service.spec.ports: ") != std::string::npos);

  // FromProtoUnvalidated shows what an agent returned without judging it.
  auto shown = FromProtoUnvalidated(object);
  REQUIRE(shown.ok());
  CHECK(std::get<wl::Service>(*shown).metadata.name == "svc");
  object.mutable_service()->mutable_spec()->add_ports()->set_port(1 << 20);
  CHECK_FALSE(FromProtoUnvalidated(object).ok());
}

TEST_CASE("ModelConvert: kinds map both ways and unknown kinds are errors") {
  for (wl::Kind kind : {wl::Kind::kWorkload, wl::Kind::kService, wl::Kind::kAuthorizationPolicy}) {
    auto back = FromProtoKind(ToProtoKind(kind));
    REQUIRE(back.ok());
    CHECK(*back == kind);
  }
  CHECK(ToProtoKind(wl::Kind::kAuthorizationPolicy) == v1::AUTHORIZATION_POLICY);
  CHECK_FALSE(FromProtoKind(v1::KIND_UNSPECIFIED).ok());
  CHECK_FALSE(FromProtoKind(static_cast<v1::Kind>(42)).ok());
}

}  // namespace
}  // namespace podless::api
