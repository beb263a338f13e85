#include "workloads/object_codec.h"

#include <doctest.h>

#include <string>
#include <vector>

namespace podless::workloads {
namespace {

using namespace std::literals;

ObjectMeta Meta(std::string name, std::string ns, Labels labels = {}) {
  ObjectMeta meta;
  meta.name = std::move(name);
  meta.ns = std::move(ns);
  meta.labels = std::move(labels);
  return meta;
}

Workload EchoWorkload() {
  Workload w;
  w.metadata = Meta("web", "shop", {{"app", "web"}, {"tier", "frontend"}});
  w.spec.replicas = 3;
  w.spec.service_account = "web-sa";
  w.spec.ports = {{"http", 8080, Protocol::kHTTP}, {"", 9000, Protocol::kTCP}};
  w.spec.app = EchoApp{};
  return w;
}

Workload StaticWorkload() {
  Workload w;
  w.metadata = Meta("static-site", "default", {{"app", "static"}});
  w.spec.replicas = kMaxReplicas;
  w.spec.ports = {{"http", 65535, Protocol::kHTTP}};
  StaticApp app;
  app.status = 418;
  app.body = std::string(300, 'x') +
             "\n\xff"
             "\x00"
             "binary"s;  // long: multi-byte length varint
  app.headers = {{"content-type", "text/plain"}, {"x-empty", ""}};
  w.spec.app = app;
  return w;
}

Workload ForwardWorkload() {
  Workload w;
  w.metadata = Meta("fwd", "ns-1");
  w.spec.replicas = 0;
  w.spec.ports = {{"tcp", 1, Protocol::kTCP}};
  w.spec.app = ForwardApp{"127.0.0.1:9000"};
  return w;
}

Workload ExecWorkload(bool with_probe) {
  Workload w;
  w.metadata = Meta("py", "jobs", {{"app", "py"}});
  w.spec.replicas = 2;
  w.spec.ports = {{"http", 8000, Protocol::kHTTP}};
  ExecApp app;
  app.command = {"python3", "-m", "http.server", "$(PORT)", ""};
  app.env = {{"A", "1"}, {"EMPTY", ""}, {"UNICODE", "h\xc3\xa9llo"}};
  app.working_dir = "/srv";
  app.restart_policy = RestartPolicy::kOnFailure;
  if (with_probe) {
    Probe probe;
    probe.kind = Probe::Kind::kHttpGet;
    probe.port = PortRef{0, "http"};
    probe.path = "/healthz";
    probe.initial_delay_seconds = 5;
    probe.period_seconds = 0xffffffffu;
    probe.timeout_seconds = 2;
    probe.failure_threshold = 7;
    probe.success_threshold = 0;
    app.readiness_probe = probe;
  }
  app.termination_grace_period_seconds = 0;
  w.spec.app = app;
  return w;
}

Workload SandboxedExecWorkload() {
  Workload w = ExecWorkload(true);
  ExecSandbox sandbox;
  sandbox.security_context = {1000, 0, true};
  sandbox.limits = {uint64_t{15} << 60, 0xffffffffu, 64};
  sandbox.keep_working_dir = true;
  std::get<ExecApp>(w.spec.app).sandbox = sandbox;
  return w;
}

// Two further containers beside the app's own command (version 4).
Workload MultiContainerWorkload() {
  Workload w = SandboxedExecWorkload();
  w.metadata.name = "pair";
  ExecContainers& containers = std::get<ExecApp>(w.spec.app).containers.mutable_value();
  containers.name = "web";
  ExecContainer poller;
  poller.name = "poller";
  poller.command = {"sh", "-c", "curl 127.0.0.1:8000"};
  poller.env = {{"ROLE", "poller"}, {"EMPTY", ""}};
  poller.working_dir = "/tmp";
  Probe probe;
  probe.kind = Probe::Kind::kTcpSocket;
  probe.port = PortRef{9000, ""};
  poller.readiness_probe = probe;
  containers.more.push_back(poller);
  ExecContainer bare;
  bare.name = "bare";
  bare.command = {"true"};
  containers.more.push_back(bare);
  return w;
}

// A Deployment whose one container has a command and no sandbox settings.
Workload AppliedExecWorkload() {
  Workload w = ExecWorkload(false);
  w.metadata.name = "applied";
  AppliedAs as;
  as.api_version = "apps/v1";
  as.kind = "Deployment";
  as.document = "kind: Deployment";
  w.metadata.applied_as = as;
  std::get<ExecApp>(w.spec.app).containers.mutable_value().name = "py";
  return w;
}

Service RichService() {
  Service s;
  s.metadata = Meta("web", "shop", {{"team", "a"}});
  s.selector = {{"app", "web"}, {"tier", "frontend"}};
  s.ports = {{"http", 80, PortRef{0, "http"}, Protocol::kHTTP},
             {"", 9000, PortRef{9001, ""}, Protocol::kTCP}};
  return s;
}

AuthorizationPolicy RichPolicy() {
  AuthorizationPolicy p;
  p.metadata = Meta("deny-some", "shop");
  p.selector = {{"app", "web"}};
  p.action = PolicyAction::kDeny;
  PolicyRule rule;
  rule.from = {PolicySource{{"spiffe://cluster.local/ns/shop/sa/frontend", "*/sa/admin"},
                            {"spiffe://cluster.local/ns/shop/sa/bad"},
                            {"shop", "prod-*"},
                            {"kube-system"}},
               PolicySource{}};
  rule.to = {PolicyOperation{{8080, 65535, 0}, {22}}, PolicyOperation{}};
  p.rules = {rule, PolicyRule{}};
  return p;
}

// Every field version 3 added, each with a value of its own.
AuthorizationPolicy IstioPolicy() {
  AuthorizationPolicy p = RichPolicy();
  p.metadata.name = "istio";
  PolicySource& s = p.rules[0].from[1];
  s.service_accounts = {"shop/web", "batch"};
  s.not_service_accounts = {"kube-system/admin"};
  s.ip_blocks = {"10.0.0.0/8", "127.64.0.5"};
  s.not_ip_blocks = {"10.1.0.0/16"};
  s.remote_ip_blocks = {"192.168.0.0/16"};
  s.not_remote_ip_blocks = {"192.168.1.1"};
  s.request_principals = {"issuer/*"};
  s.not_request_principals = {"*"};
  PolicyOperation& o = p.rules[0].to[1];
  o.hosts = {"web.shop.svc*"};
  o.not_hosts = {"*.internal"};
  o.methods = {"GET", "HEAD"};
  o.not_methods = {"DELETE"};
  o.paths = {"/api/*", "/health"};
  o.not_paths = {"*.php"};
  p.rules[1].when = {PolicyCondition{"request.headers[x-user]", {"alice", "bob"}, {"mallory"}},
                     PolicyCondition{"destination.port", {}, {"22"}}};
  return p;
}

bool UsesVersion3(const Object& object) {
  const auto* p = std::get_if<AuthorizationPolicy>(&object);
  return p != nullptr && p->metadata.name == "istio";
}

std::vector<Object> AllObjects() {
  return {EchoWorkload(),
          StaticWorkload(),
          ForwardWorkload(),
          ExecWorkload(true),
          ExecWorkload(false),
          SandboxedExecWorkload(),
          MultiContainerWorkload(),
          AppliedExecWorkload(),
          Workload{},
          RichService(),
          Service{},
          RichPolicy(),
          AuthorizationPolicy{},
          IstioPolicy()};
}

TEST_CASE("ObjectCodec: every kind, app and field survives a round trip") {
  for (const Object& object : AllObjects()) {
    CAPTURE(KeyOf(object).name);
    const std::string bytes = EncodeObject(object);
    REQUIRE(static_cast<uint8_t>(bytes[0]) >= kOldestObjectFormatVersion);
    REQUIRE(static_cast<uint8_t>(bytes[0]) <= kObjectFormatVersion);
    Result<Object> decoded = DecodeObject(bytes);
    REQUIRE_MESSAGE(decoded.ok(), decoded.error().message);
    CHECK(decoded.value() == object);
    CHECK(KeyOf(decoded.value()) == KeyOf(object));
  }
}

TEST_CASE("ObjectCodec: each sandbox field survives a round trip on its own") {
  std::vector<ExecSandbox> sandboxes(8);
  sandboxes[0].security_context.run_as_user = 0;
  sandboxes[1].security_context.run_as_group = kMaxRunAsId;
  sandboxes[2].security_context.run_as_non_root = false;
  sandboxes[3].security_context.run_as_non_root = true;
  sandboxes[4].limits.memory_bytes = kMinMemoryLimitBytes;
  sandboxes[5].limits.cpu_millis = 1;
  sandboxes[6].limits.pids = 1;
  sandboxes[7].keep_working_dir = true;
  for (size_t i = 0; i < sandboxes.size(); ++i) {
    CAPTURE(i);
    Workload w = ExecWorkload(false);
    std::get<ExecApp>(w.spec.app).sandbox = sandboxes[i];
    const std::string bytes = EncodeObject(w);
    CHECK(bytes[0] == 2);
    Result<Object> decoded = DecodeObject(bytes);
    REQUIRE_MESSAGE(decoded.ok(), decoded.error().message);
    CHECK(decoded.value() == Object(w));
  }
}

TEST_CASE("ObjectCodec: objects without a sandbox keep the version 1 encoding") {
  // Version 1 is what builds before the sandbox fields wrote and read: the
  // state and cluster records of workloads without them stay readable by
  // those builds, and their stored bytes read here as before.
  for (const Object& object : AllObjects()) {
    CAPTURE(KeyOf(object).name);
    const auto* w = std::get_if<Workload>(&object);
    const auto* exec = w != nullptr ? std::get_if<ExecApp>(&w->spec.app) : nullptr;
    const bool sandboxed = exec != nullptr && !exec->sandbox.is_default();
    const bool containers = exec != nullptr && !exec->containers.is_default();
    CHECK(EncodeObject(object)[0] == (containers             ? 4
                                      : UsesVersion3(object) ? 3
                                      : sandboxed            ? 2
                                                             : 1));
  }
  // A sandbox whose every field is at its default is no sandbox.
  Workload w = ExecWorkload(true);
  std::get<ExecApp>(w.spec.app).sandbox.mutable_value().keep_working_dir = false;
  CHECK(EncodeObject(w) == EncodeObject(ExecWorkload(true)));
}

TEST_CASE("ObjectCodec: containers need version 4, and an app without them keeps its encoding") {
  const Workload multi = MultiContainerWorkload();
  const std::string bytes = EncodeObject(multi);
  CHECK(bytes[0] == 4);
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_MESSAGE(decoded.ok(), decoded.error().message);
  const ExecApp& app = std::get<ExecApp>(std::get<Workload>(decoded.value()).spec.app);
  CHECK(app.containers->name == "web");
  REQUIRE(app.containers->more.size() == 2);
  CHECK(app.containers->more[0] == std::get<ExecApp>(multi.spec.app).containers->more[0]);
  CHECK(app.containers->more[1].name == "bare");
  CHECK(decoded.value() == Object(multi));
  // Without containers: the bytes of before (a version 2 sandboxed app).
  Workload single = multi;
  std::get<ExecApp>(single.spec.app).containers.reset();
  Workload before = SandboxedExecWorkload();
  before.metadata.name = "pair";
  CHECK(EncodeObject(single) == EncodeObject(before));
  CHECK(EncodeObject(single)[0] == 2);
  // Truncated anywhere in the containers: an error, never a crash.
  for (size_t cut = 1; cut < bytes.size(); ++cut) {
    CHECK_FALSE(DecodeObject(std::string_view(bytes).substr(0, cut)).ok());
  }
}

TEST_CASE("ObjectCodec: a version 3 exec app without sandbox bytes, as older builds wrote it") {
  // A Deployment whose one container runs a command, with no securityContext
  // or limits: version 3 (appliedAs). This build writes its default sandbox;
  // builds before version 4 left it out. Both load.
  Workload w = AppliedExecWorkload();
  std::get<ExecApp>(w.spec.app).containers.reset();
  const std::string bytes = EncodeObject(w);
  REQUIRE(bytes[0] == 3);
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_MESSAGE(decoded.ok(), decoded.error().message);
  CHECK(decoded.value() == Object(w));
  // The older bytes: the same without the 7 bytes of the default sandbox.
  bool found = false;
  for (size_t i = 1; i + 7 <= bytes.size() && !found; ++i) {
    if (bytes.compare(i, 7, std::string(7, '\0')) != 0) continue;
    const std::string old = bytes.substr(0, i) + bytes.substr(i + 7);
    Result<Object> legacy = DecodeObject(old);
    found = legacy.ok() && legacy.value() == Object(w);
  }
  CHECK(found);
}

TEST_CASE("ObjectCodec: each field of Istio's newer policy attributes needs version 3") {
  // One field at a time: each must survive, and each alone moves the policy
  // to version 3 (a version 1 reader would silently drop it otherwise).
  const AuthorizationPolicy full = IstioPolicy();
  std::vector<AuthorizationPolicy> singles;
  auto with = [&](auto edit) {
    AuthorizationPolicy p = RichPolicy();
    edit(p);
    singles.push_back(p);
  };
  with([](auto& p) { p.rules[0].from[0].service_accounts = {"a"}; });
  with([](auto& p) { p.rules[0].from[0].not_service_accounts = {"a"}; });
  with([](auto& p) { p.rules[0].from[0].ip_blocks = {"1.2.3.4"}; });
  with([](auto& p) { p.rules[0].from[0].not_ip_blocks = {"1.2.3.4"}; });
  with([](auto& p) { p.rules[0].from[0].remote_ip_blocks = {"1.2.3.4"}; });
  with([](auto& p) { p.rules[0].from[0].not_remote_ip_blocks = {"1.2.3.4"}; });
  with([](auto& p) { p.rules[0].from[0].request_principals = {"a"}; });
  with([](auto& p) { p.rules[0].from[0].not_request_principals = {"a"}; });
  with([](auto& p) { p.rules[0].to[0].hosts = {"a"}; });
  with([](auto& p) { p.rules[0].to[0].not_hosts = {"a"}; });
  with([](auto& p) { p.rules[0].to[0].methods = {"GET"}; });
  with([](auto& p) { p.rules[0].to[0].not_methods = {"GET"}; });
  with([](auto& p) { p.rules[0].to[0].paths = {"/"}; });
  with([](auto& p) { p.rules[0].to[0].not_paths = {"/"}; });
  with([](auto& p) { p.rules[1].when = {PolicyCondition{"source.ip", {}, {}}}; });
  for (size_t i = 0; i < singles.size(); ++i) {
    CAPTURE(i);
    const std::string bytes = EncodeObject(singles[i]);
    CHECK(bytes[0] == 3);
    Result<Object> decoded = DecodeObject(bytes);
    REQUIRE_MESSAGE(decoded.ok(), decoded.error().message);
    CHECK(std::get<AuthorizationPolicy>(decoded.value()) == singles[i]);
  }
  // A version 3 policy read as version 1 has trailing bytes: refused, not
  // silently narrowed.
  std::string bytes = EncodeObject(full);
  bytes[0] = 1;
  CHECK_FALSE(DecodeObject(bytes).ok());
}

TEST_CASE(
    "ObjectCodec: a version 1 policy, written before Istio's newer attributes, still decodes") {
  std::string bytes;
  ByteWriter w(&bytes);
  w.PutByte(1);    // version
  w.PutVarint(2);  // Kind::kAuthorizationPolicy
  w.PutString("p");
  w.PutString("shop");
  w.PutVarint(0);  // labels
  w.PutVarint(0);  // selector
  w.PutVarint(1);  // DENY
  w.PutVarint(1);  // one rule
  w.PutVarint(1);  // one source
  w.PutVarint(1);
  w.PutString("cluster.local/ns/shop/sa/web");
  w.PutVarint(0);
  w.PutVarint(0);
  w.PutVarint(0);
  w.PutVarint(1);  // one operation
  w.PutVarint(1);
  w.PutVarint(8080);
  w.PutVarint(0);
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_MESSAGE(decoded.ok(), decoded.error().message);
  const AuthorizationPolicy& p = std::get<AuthorizationPolicy>(decoded.value());
  REQUIRE(p.rules.size() == 1);
  CHECK(p.rules[0].from[0].principals == std::vector<std::string>{"cluster.local/ns/shop/sa/web"});
  CHECK(p.rules[0].from[0].service_accounts.empty());
  CHECK(p.rules[0].to[0].ports == std::vector<uint16_t>{8080});
  CHECK(p.rules[0].when.empty());
  CHECK(EncodeObject(decoded.value()) == bytes);
}

TEST_CASE("ObjectCodec: a version 1 exec workload, written before the sandbox, still decodes") {
  // The bytes a version 1 build wrote for an exec workload, built by hand.
  std::string bytes;
  ByteWriter w(&bytes);
  w.PutByte(1);       // version
  w.PutVarint(0);     // Kind::kWorkload
  w.PutString("py");  // metadata.name
  w.PutString("jobs");
  w.PutVarint(0);  // labels
  w.PutVarint(2);  // replicas
  w.PutString("default");
  w.PutVarint(0);  // ports
  w.PutVarint(3);  // exec
  w.PutVarint(1);  // command
  w.PutString("server");
  w.PutVarint(0);  // env
  w.PutString("/srv");
  w.PutVarint(1);  // RestartPolicy::kOnFailure
  w.PutByte(0);    // no readiness probe
  w.PutVarint(30);
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_MESSAGE(decoded.ok(), decoded.error().message);
  const Workload& workload = std::get<Workload>(decoded.value());
  const ExecApp& exec = std::get<ExecApp>(workload.spec.app);
  CHECK(exec.command == std::vector<std::string>{"server"});
  CHECK(exec.working_dir == "/srv");
  CHECK(exec.restart_policy == RestartPolicy::kOnFailure);
  CHECK(exec.termination_grace_period_seconds == 30u);
  CHECK(exec.sandbox.is_default());
  CHECK(*exec.sandbox == ExecSandbox{});
  CHECK(EncodeObject(decoded.value()) == bytes);  // and is written the same way again

  // Version 2 appends the sandbox; without it the object is truncated.
  bytes[0] = 2;
  decoded = DecodeObject(bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message.find("spec.app.exec.securityContext.runAsUser: truncated") !=
        std::string::npos);
}

TEST_CASE("ObjectCodec: sandbox flags other than 0 and 1 are refused") {
  const std::string good = EncodeObject(SandboxedExecWorkload());
  // The last byte is keepWorkingDir.
  std::string bytes = good;
  bytes.back() = 2;
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message == "object encoding: byte " + std::to_string(good.size() - 1) +
                                       ": spec.app.exec.keepWorkingDir: value 2 is neither 0 "
                                       "nor 1");
}

TEST_CASE("ObjectCodec: AppendObject appends the same bytes EncodeObject returns") {
  std::string out = "prefix";
  for (const Object& object : AllObjects()) {
    const size_t before = out.size();
    REQUIRE(AppendObject(object, &out).ok());
    CHECK(out.substr(before) == EncodeObject(object));
  }
}

TEST_CASE("ObjectCodec: a typical workload encodes in a few dozen bytes") {
  const std::string bytes = EncodeObject(EchoWorkload());
  CHECK(bytes.size() < 64);
}

TEST_CASE("ObjectCodec: every truncation of a valid encoding fails cleanly") {
  for (const Object& object : AllObjects()) {
    const std::string bytes = EncodeObject(object);
    for (size_t length = 0; length < bytes.size(); ++length) {
      CAPTURE(length);
      Result<Object> decoded = DecodeObject(std::string_view(bytes).substr(0, length));
      REQUIRE_FALSE(decoded.ok());
      CHECK(decoded.error().code == ErrorCode::kInvalidArgument);
      CHECK(decoded.error().message.find("object encoding: byte ") == 0);
    }
  }
}

TEST_CASE("ObjectCodec: trailing bytes after an object are refused") {
  const std::string bytes = EncodeObject(RichService()) + "\x00"s;
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message.find("1 trailing bytes") != std::string::npos);
}

TEST_CASE("ObjectCodec: corrupting any byte never crashes, and what decodes re-encodes stably") {
  for (const Object& object : AllObjects()) {
    const std::string bytes = EncodeObject(object);
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (uint8_t value : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
        std::string corrupt = bytes;
        corrupt[i] = static_cast<char>(value);
        Result<Object> decoded = DecodeObject(corrupt);
        if (decoded.ok()) {
          Result<Object> again = DecodeObject(EncodeObject(decoded.value()));
          REQUIRE(again.ok());
          CHECK(again.value() == decoded.value());
        } else {
          CHECK_FALSE(decoded.error().message.empty());
        }
      }
    }
  }
}

// Hand-built inputs: header of a Workload named "a" in namespace "b".
std::string WorkloadPrefix() {
  std::string out;
  ByteWriter w(&out);
  w.PutByte(kObjectFormatVersion);
  w.PutVarint(0);  // Kind::kWorkload
  w.PutString("a");
  w.PutString("b");
  return out;
}

TEST_CASE("ObjectCodec: an unknown format version is named in the error") {
  std::string bytes = EncodeObject(EchoWorkload());
  bytes[0] = 9;
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message ==
        "object encoding: byte 1: format version: unsupported object format version 9 (this "
        "build reads 1 to 4)");
  bytes[0] = 0;
  decoded = DecodeObject(bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message.find("unsupported object format version 0") != std::string::npos);
}

TEST_CASE("ObjectCodec: a huge count is refused before anything is allocated") {
  std::string bytes = WorkloadPrefix();
  ByteWriter w(&bytes);
  w.PutVarint(uint64_t{1} << 60);  // labels count
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message.find("metadata.labels: count 1152921504606846976 exceeds") !=
        std::string::npos);
}

TEST_CASE("ObjectCodec: a string longer than the input is refused with its offset") {
  std::string bytes;
  ByteWriter w(&bytes);
  w.PutByte(kObjectFormatVersion);
  w.PutVarint(1);        // Kind::kService
  w.PutVarint(1000000);  // name length
  bytes += "abc";
  Result<Object> decoded = DecodeObject(bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message ==
        "object encoding: byte 2: metadata.name: string length 1000000 exceeds the 3 bytes left");
}

TEST_CASE("ObjectCodec: duplicate or unsorted map keys are refused") {
  for (const auto& keys :
       std::vector<std::pair<std::string, std::string>>{{"k", "k"}, {"z", "a"}}) {
    std::string bytes = WorkloadPrefix();
    ByteWriter w(&bytes);
    w.PutVarint(2);
    w.PutString(keys.first);
    w.PutString("v");
    w.PutString(keys.second);
    w.PutString("v");
    Result<Object> decoded = DecodeObject(bytes);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().message.find("metadata.labels: key \"" + keys.second +
                                       "\" is a duplicate or out of order") != std::string::npos);
  }
}

TEST_CASE("ObjectCodec: out-of-range enums and narrow integers are refused") {
  SUBCASE("protocol") {
    std::string bytes = WorkloadPrefix();
    ByteWriter w(&bytes);
    w.PutVarint(0);     // labels
    w.PutVarint(1);     // replicas
    w.PutString("sa");  // serviceAccount
    w.PutVarint(1);     // one port
    w.PutString("p");
    w.PutVarint(80);
    w.PutVarint(5);  // protocol
    Result<Object> decoded = DecodeObject(bytes);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().message.find("spec.ports.protocol: value 5 out of range (max 1)") !=
          std::string::npos);
  }
  SUBCASE("port above 65535") {
    std::string bytes = WorkloadPrefix();
    ByteWriter w(&bytes);
    w.PutVarint(0);
    w.PutVarint(1);
    w.PutString("sa");
    w.PutVarint(1);
    w.PutString("p");
    w.PutVarint(65536);
    w.PutVarint(0);
    Result<Object> decoded = DecodeObject(bytes);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().message.find("spec.ports.port: value 65536 out of range") !=
          std::string::npos);
  }
  SUBCASE("varint longer than 64 bits") {
    std::string bytes = WorkloadPrefix() + std::string(10, '\xff') + "\x01"s;
    Result<Object> decoded = DecodeObject(bytes);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().message.find("varint overflows 64 bits") != std::string::npos);
  }
}

TEST_CASE("ObjectCodec: AppendObject refuses an out-of-range enum and leaves the output alone") {
  Workload w = EchoWorkload();
  w.spec.ports[1].protocol = static_cast<Protocol>(7);
  std::string out = "keep";
  Status status = AppendObject(w, &out);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message ==
        "cannot encode Workload shop/web: spec.ports.protocol: enum value 7 out of range (max 1)");
  CHECK(out == "keep");
  CHECK_FALSE(DecodeObject(EncodeObject(w)).ok());
}

TEST_CASE("ByteReader: offsets in errors include the base offset of the span") {
  ByteReader reader("\x05"sv, 100);
  std::string s;
  CHECK_FALSE(reader.ReadString(&s, "field"));
  CHECK(reader.error() == "byte 100: field: string length 5 exceeds the 0 bytes left");
  uint8_t b = 0;
  CHECK_FALSE(reader.ReadByte(&b, "later"));  // the first error sticks
  CHECK(reader.error().find("byte 100: field:") == 0);
}

}  // namespace
}  // namespace podless::workloads
