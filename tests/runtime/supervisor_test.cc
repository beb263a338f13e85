#include "runtime/process/supervisor.h"

#include <doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proxy/base/netns.h"
#include "proxy/base/tcp_stream.h"
#include "tests/testing/run_loop.h"
#include "tests/testing/temp_dir.h"
#include "workloads/manifest_parser.h"

namespace podless::runtime {
namespace {

using podless::testing::RunUntil;

struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-sup") {}
};

SupervisorOptions TestOptions(const TempDir& dir) {
  SupervisorOptions options;
  options.state_dir = dir.path();
  options.backoff_initial_ms = 50;
  options.backoff_max_ms = 200;
  options.grace_period_ms = 5'000;
  return options;
}

ExecReplicaSpec Spec(std::vector<std::string> command, uint32_t address = 0x7f400005) {
  ExecReplicaSpec spec;
  spec.ns = "shop";
  spec.workload = "web";
  spec.replica = "web-0";
  spec.address = address;
  spec.spiffe_id = "spiffe://cluster.local/ns/shop/sa/web";
  spec.app.command = std::move(command);
  spec.ports = {workloads::PortSpec{"http", 8080, workloads::Protocol::kHTTP}};
  return spec;
}

std::string CurrentLog(const Supervisor& supervisor) {
  auto text = ReadLog(supervisor.LogDir("shop", "web-0"), false, -1);
  return text.ok() ? *text : "";
}

bool Alive(pid_t pid) {
  return ::kill(pid, 0) == 0 && IsSameProcess(pid, ReadProcStat(pid)->start_time);
}

TEST_CASE("ExpandVariables: expands defined variables like Kubernetes and keeps the rest") {
  std::map<std::string, std::string> vars{{"PORT", "4000"}, {"NAME", "web"}};
  CHECK(ExpandVariables("--port=$(PORT)", vars) == "--port=4000");
  CHECK(ExpandVariables("$(NAME)-$(PORT)", vars) == "web-4000");
  CHECK(ExpandVariables("$(MISSING)", vars) == "$(MISSING)");
  CHECK(ExpandVariables("$$(PORT)", vars) == "$(PORT)");
  CHECK(ExpandVariables("cost $5 $(", vars) == "cost $5 $(");
}

TEST_CASE("BuildEnvironment: identity, ports, proxy credentials and user variables") {
  ExecReplicaSpec spec = Spec({"true"});
  spec.ports.push_back(workloads::PortSpec{"grpc-api", 9090, workloads::Protocol::kTCP});
  spec.proxy_user = "web-0.shop";
  spec.proxy_password = "p@ss";
  spec.workload_api_socket = "/tmp/wl.sock";
  spec.app.env = {{"GREETING", "hi $(PODLESS_REPLICA) on $(PORT)"}, {"PORT", "override"}};
  std::vector<std::string> env = BuildEnvironment(spec, {41000, 41001});
  auto has = [&env](const std::string& entry) {
    return std::find(env.begin(), env.end(), entry) != env.end();
  };
  CHECK(has("PODLESS_WORKLOAD=web"));
  CHECK(has("PODLESS_NAMESPACE=shop"));
  CHECK(has("PODLESS_REPLICA=web-0"));
  CHECK(has("PODLESS_SPIFFE_ID=spiffe://cluster.local/ns/shop/sa/web"));
  CHECK(has("PODLESS_ADDRESS=127.64.0.5"));
  CHECK(has("PODLESS_LISTEN_ADDRESS=127.0.0.1"));
  CHECK(has("PORT_HTTP=41000"));
  CHECK(has("PORT_GRPC_API=41001"));
  CHECK(has("PORT_9090=41001"));
  CHECK(has("HTTP_PROXY=http://web-0.shop:p%40ss@127.0.0.1:15001"));
  CHECK(has("ALL_PROXY=socks5h://web-0.shop:p%40ss@127.0.0.1:15001"));
  CHECK(has("SPIFFE_ENDPOINT_SOCKET=unix:///tmp/wl.sock"));
  CHECK(has("GREETING=hi web-0 on 41000"));
  CHECK(has("PORT=override"));
  CHECK(!has("PORT=41000"));
}

TEST_CASE("BuildEnvironment: Kubernetes env fieldRefs resolve to the replica's own values") {
  // The parser turns fieldRefs into $(PODLESS_*) references; this is the
  // other half of that contract.
  workloads::ParseResult parsed = workloads::ParseManifests(R"y(apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  containers:
  - name: web
    command: [sh]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: ME, value: "$(POD_NAME).$(POD_NAMESPACE) costs $$5"}
)y",
                                                            "pod.yaml");
  REQUIRE(parsed.errors.empty());
  REQUIRE(parsed.objects.size() == 1);
  ExecReplicaSpec spec = Spec({"sh"});
  spec.app = std::get<workloads::ExecApp>(
      std::get<workloads::Workload>(parsed.objects[0].object).spec.app);
  std::vector<std::string> env = BuildEnvironment(spec, {41000});
  auto has = [&env](const std::string& entry) {
    return std::find(env.begin(), env.end(), entry) != env.end();
  };
  CHECK(has("POD_NAME=web-0"));
  CHECK(has("POD_NAMESPACE=shop"));
  CHECK(has("POD_IP=127.64.0.5"));
  CHECK(has("ME=web-0.shop costs $5"));
}

TEST_CASE("Supervisor: runs the command with its environment and captures its output") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec =
      Spec({"sh", "-c", "echo \"$(GREETING) port=$PORT\"; echo to-stderr >&2; exec sleep 30"});
  spec.app.env = {{"GREETING", "hello from $(PODLESS_REPLICA)"}};
  std::vector<std::pair<uint32_t, bool>> readiness;
  supervisor.OnReadinessChange(
      [&readiness](uint32_t address, bool ready) { readiness.emplace_back(address, ready); });
  supervisor.Sync({spec});

  auto target = supervisor.Target(spec.address, 8080);
  REQUIRE(target.has_value());
  CHECK(target->address == 0x7f000001);
  CHECK(!supervisor.Target(spec.address, 9999).has_value());
  std::string expected = "hello from web-0 port=" + std::to_string(target->port) + "\n";
  REQUIRE(RunUntil(loop.get(), [&] {
    return CurrentLog(supervisor).find("to-stderr") != std::string::npos &&
           CurrentLog(supervisor).find(expected) != std::string::npos;
  }));
  ReplicaStatus status = supervisor.Status(spec.address);
  CHECK(status.state == "Running");
  CHECK(status.ready);  // no probe: ready once running
  CHECK(status.pid > 0);
  CHECK(readiness == std::vector<std::pair<uint32_t, bool>>{{spec.address, true}});

  bool done = false;
  supervisor.Shutdown([&done] { done = true; });
  REQUIRE(RunUntil(loop.get(), [&] { return done; }));
  CHECK(readiness.back() == std::make_pair(spec.address, false));
}

TEST_CASE("Supervisor: a crashing program is restarted with growing backoff and counted") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = Spec({"sh", "-c", "echo crashing; exit 3"});
  auto start = std::chrono::steady_clock::now();
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.Status(spec.address).restarts >= 3; }));
  auto elapsed = std::chrono::steady_clock::now() - start;
  // Delays 50, 100, 200 ms before restarts 1..3.
  CHECK(elapsed >= std::chrono::milliseconds(350));
  ReplicaStatus status = supervisor.Status(spec.address);
  CHECK(status.last_exit == "exit code 3");
  CHECK(supervisor.restarts_total() >= 3);
  auto previous = ReadLog(supervisor.LogDir("shop", "web-0"), true, -1);
  REQUIRE(previous.ok());
  CHECK(*previous == "crashing\n");
  bool done = false;
  supervisor.Shutdown([&done] { done = true; });
  REQUIRE(RunUntil(loop.get(), [&] { return done; }));
}

TEST_CASE("Supervisor: OnFailure does not restart a program that exits 0") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = Spec({"true"});
  spec.app.restart_policy = workloads::RestartPolicy::kOnFailure;
  supervisor.Sync({spec});
  REQUIRE(
      RunUntil(loop.get(), [&] { return supervisor.Status(spec.address).reason == "Completed"; }));
  RunUntil(
      loop.get(), [] { return false; }, 300);
  CHECK(supervisor.Status(spec.address).restarts == 0);
  CHECK(supervisor.Status(spec.address).state == "Waiting");
}

TEST_CASE("Supervisor: a start failure is reported and retried") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = Spec({"/nonexistent/podless-test-binary"});
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.Status(spec.address).restarts >= 1; }));
  CHECK(supervisor.Status(spec.address).last_exit.find("cannot start /nonexistent") !=
        std::string::npos);
}

TEST_CASE("Supervisor: removal sends SIGTERM to the process, which may exit gracefully") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  // Written to a file: the replica's log goes with the replica.
  const std::string marker = dir.path() + "/term";
  ExecReplicaSpec spec = Spec({"sh", "-c",
                               "trap 'echo got TERM > " + marker +
                                   "; exit 0' TERM; echo started; while :; do sleep 0.05; done"});
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(),
                   [&] { return CurrentLog(supervisor).find("started") != std::string::npos; }));
  pid_t pid = supervisor.Status(spec.address).pid;
  auto start = std::chrono::steady_clock::now();
  supervisor.Sync({});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.running_count() == 0; }));
  CHECK(std::chrono::steady_clock::now() - start <
        std::chrono::seconds(4));  // before the grace period
  CHECK(!Alive(pid));
  REQUIRE(RunUntil(loop.get(), [&] { return ::access(marker.c_str(), F_OK) == 0; }));
  CHECK(!supervisor.Status(spec.address).known);
  // The replica is gone, and its logs with it.
  REQUIRE(RunUntil(
      loop.get(), [&] { return ::access(supervisor.LogDir("shop", "web-0").c_str(), F_OK) != 0; }));
}

TEST_CASE("Supervisor: a process that ignores SIGTERM is killed after the grace period") {
  TempDir dir;
  proxy::UvLoop loop;
  SupervisorOptions options = TestOptions(dir);
  options.grace_period_ms = 300;
  Supervisor supervisor(loop.get(), options);
  ExecReplicaSpec spec = Spec({"sh", "-c", "trap '' TERM; echo started; sleep 30"});
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(),
                   [&] { return CurrentLog(supervisor).find("started") != std::string::npos; }));
  auto start = std::chrono::steady_clock::now();
  bool done = false;
  supervisor.Shutdown([&done] { done = true; });
  REQUIRE(RunUntil(loop.get(), [&] { return done; }));
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= std::chrono::milliseconds(300));
  CHECK(elapsed < std::chrono::seconds(5));
}

TEST_CASE("Supervisor: a changed spec restarts the process; an unchanged one is left alone") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = Spec({"sleep", "30"});
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.Status(spec.address).pid > 0; }));
  pid_t first = supervisor.Status(spec.address).pid;
  supervisor.Sync({spec});
  CHECK(supervisor.Status(spec.address).pid == first);
  spec.app.env = {{"CHANGED", "1"}};
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] {
    return supervisor.Status(spec.address).pid > 0 &&
           supervisor.Status(spec.address).pid != first && !Alive(first);
  }));
  bool done = false;
  supervisor.Shutdown([&done] { done = true; });
  REQUIRE(RunUntil(loop.get(), [&] { return done; }));
}

TEST_CASE("Supervisor: a child's process tree is attributed to its replica, others are not") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = Spec({"sh", "-c", "sleep 30 & echo grandchild=$!; wait"});
  supervisor.Sync({spec});
  REQUIRE(
      RunUntil(loop.get(), [&] { return CurrentLog(supervisor).find('\n') != std::string::npos; }));
  std::string log = CurrentLog(supervisor);
  pid_t grandchild = static_cast<pid_t>(std::atol(log.c_str() + log.find('=') + 1));
  REQUIRE(grandchild > 0);
  CHECK(supervisor.ReplicaOfPid(supervisor.Status(spec.address).pid) == spec.address);
  CHECK(supervisor.ReplicaOfPid(grandchild) == spec.address);
  CHECK(!supervisor.ReplicaOfPid(::getpid()).has_value());
  CHECK(!supervisor.IsSupervisedPid(1));
  bool done = false;
  supervisor.Shutdown([&done] { done = true; });
  REQUIRE(RunUntil(loop.get(), [&] { return done; }));
  // The whole process group went with it.
  RunUntil(
      loop.get(), [&] { return !Alive(grandchild); }, 2000);
  CHECK(!Alive(grandchild));
}

// Starts `sleep 60` in its own session, as a previous agent would have.
pid_t SpawnDetachedSleep() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    ::execlp("sleep", "sleep", "60", nullptr);
    ::_exit(127);
  }
  return pid;
}

TEST_CASE("Supervisor: orphans recorded by a previous agent are stopped, reused pids spared") {
  TempDir dir;
  pid_t orphan = SpawnDetachedSleep();
  pid_t unrelated = SpawnDetachedSleep();
  REQUIRE(orphan > 0);
  REQUIRE(unrelated > 0);
  std::optional<ProcStat> orphan_stat, unrelated_stat;
  for (int i = 0; i < 100 && !(orphan_stat && unrelated_stat); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    orphan_stat = ReadProcStat(orphan);
    unrelated_stat = ReadProcStat(unrelated);
  }
  REQUIRE(orphan_stat);
  REQUIRE(unrelated_stat);
  ProcessTable table(dir.path() + "/processes");
  REQUIRE(table
              .Store({ProcessRecord{orphan, orphan_stat->start_time, 1, "shop/web-0"},
                      // Same pid, other start time: the pid was reused.
                      ProcessRecord{unrelated, unrelated_stat->start_time + 1, 2, "shop/web-1"}})
              .ok());
  CHECK(table.Load().size() == 2);
  {
    proxy::UvLoop loop;
    Supervisor supervisor(loop.get(), TestOptions(dir));
  }
  int status = 0;
  CHECK(::waitpid(orphan, &status, 0) == orphan);
  CHECK(WIFSIGNALED(status));
  CHECK(::waitpid(unrelated, &status, WNOHANG) == 0);  // still running
  ::kill(unrelated, SIGKILL);
  ::waitpid(unrelated, &status, 0);
  CHECK(table.Load().empty());
}

TEST_CASE("Supervisor: a tcpSocket readiness probe reports ready once the process listens") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = Spec({"python3", "-c",
                               "import socket,time,os\n"
                               "time.sleep(1.5)\n"
                               "s=socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT'])))\n"
                               "s.listen(); time.sleep(30)\n"});
  workloads::Probe probe;
  probe.port.name = "http";
  probe.period_seconds = 1;
  probe.failure_threshold = 1;
  spec.app.readiness_probe = probe;
  std::vector<bool> changes;
  supervisor.OnReadinessChange([&changes](uint32_t, bool ready) { changes.push_back(ready); });
  supervisor.Sync({spec});
  RunUntil(
      loop.get(), [] { return false; }, 800);
  CHECK(!supervisor.Status(spec.address).ready);
  REQUIRE(RunUntil(
      loop.get(), [&] { return supervisor.Status(spec.address).ready; }, 8000));
  CHECK(changes == std::vector<bool>{true});
  bool done = false;
  supervisor.Shutdown([&done] { done = true; });
  REQUIRE(RunUntil(loop.get(), [&] { return done; }));
}

}  // namespace
}  // namespace podless::runtime

namespace podless::runtime {
namespace {

// A root agent's sandboxed supervisor: ten workload uids from `first_uid`,
// processes started through this binary as the launcher (its main() runs
// "__sandbox"), and no cgroups.
struct SandboxedSupervisor {
  TempDir dir;
  proxy::UvLoop loop;
  std::optional<UidAllocator> uids;
  std::unique_ptr<Supervisor> supervisor;

  explicit SandboxedSupervisor(uid_t first_uid) {
    ::chmod(dir.path().c_str(), 0711);
    auto opened = UidAllocator::Open(dir.path() + "/workload-uids", first_uid, first_uid + 9);
    REQUIRE(opened.ok());
    uids.emplace(std::move(*opened));
    SupervisorOptions options = TestOptions(dir);
    options.sandbox = true;
    options.launcher = SelfExecutable();
    options.uids = &*uids;
    supervisor = std::make_unique<Supervisor>(loop.get(), options);
  }
};

TEST_CASE(
    "Supervisor: a sandboxed replica runs as its workload's uid, in its own namespace and "
    "directory") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: the sandbox's uids and network namespaces need root");
    return;
  }
  SandboxedSupervisor sandboxed(61900);
  const TempDir& dir = sandboxed.dir;
  proxy::UvLoop& loop = sandboxed.loop;
  std::optional<UidAllocator>& uids = sandboxed.uids;
  Supervisor& supervisor = *sandboxed.supervisor;
  // Reports what it is, then listens on the declared port in its namespace.
  ExecReplicaSpec spec = Spec({"sh", "-c",
                               "echo id=$(id -u):$(id -g) home=$HOME pwd=$(pwd) "
                               "nnp=$(grep NoNewPrivs /proc/self/status | cut -f2); "
                               "exec python3 -m http.server 8080 --bind 127.0.0.1"});
  supervisor.Sync({spec});
  const std::string workdir = ReplicaWorkDir(dir.path(), "shop", "web-0");
  const std::string expected = "id=61900:61900 home=" + workdir + " pwd=" + workdir + " nnp=1";
  REQUIRE(RunUntil(loop.get(),
                   [&] { return CurrentLog(supervisor).find(expected) != std::string::npos; }));
  CHECK(uids->Find("shop/web") == 61900u);

  // The app listens on the declared port inside the replica's namespace, not
  // on the host's loopback.
  auto target = supervisor.Target(spec.address, 8080);
  REQUIRE(target.has_value());
  CHECK(target->port == 8080);
  REQUIRE(target->netns_fd >= 0);
  auto connects = [](int netns_fd) {
    int fd = netns_fd >= 0 ? proxy::SocketInNamespace(netns_fd, AF_INET, SOCK_STREAM).value()
                           : ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address = proxy::MakeSockaddr(0x7f000001, 8080);
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    ::close(fd);
    return ok;
  };
  REQUIRE(RunUntil(loop.get(), [&] { return connects(target->netns_fd); }));
  CHECK(!connects(-1));

  // Removed: the directory goes with it, the uid goes back to the range.
  supervisor.Sync({});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.running_count() == 0; }));
  REQUIRE(RunUntil(loop.get(), [&] { return !std::filesystem::exists(workdir); }));
  CHECK(!uids->Find("shop/web").has_value());
}

// Pids of the processes whose real uid is `uid`.
std::vector<pid_t> ProcessesOfUid(uid_t uid) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream status(entry.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Uid:", 0) == 0) {
        if (std::stoul(line.substr(4)) == uid) out.push_back(std::stoi(name));
        break;
      }
    }
  }
  return out;
}

TEST_CASE("Supervisor: without a cgroup, a setsid escapee dies with its workload's last replica") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: the sandbox's uids need root");
    return;
  }
  SandboxedSupervisor sandboxed(61910);
  proxy::UvLoop& loop = sandboxed.loop;
  Supervisor& supervisor = *sandboxed.supervisor;
  supervisor.Sync({Spec({"sh", "-c",
                         "setsid sh -c 'exec sleep 300' </dev/null >/dev/null 2>&1 & "
                         "echo escaped; exec sleep 300"})});
  REQUIRE(RunUntil(loop.get(),
                   [&] { return CurrentLog(supervisor).find("escaped") != std::string::npos; }));
  const uid_t uid = 61910;
  REQUIRE(RunUntil(loop.get(), [&] { return ProcessesOfUid(uid).size() >= 2; }));

  supervisor.Sync({});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.running_count() == 0; }));
  CHECK(RunUntil(
      loop.get(), [&] { return ProcessesOfUid(uid).empty(); }, 5'000));
}

TEST_CASE("Supervisor: keepWorkingDir leaves a removed replica's working directory") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: the sandbox's uids and network namespaces need root");
    return;
  }
  SandboxedSupervisor sandboxed(61910);
  const TempDir& dir = sandboxed.dir;
  proxy::UvLoop& loop = sandboxed.loop;
  Supervisor& supervisor = *sandboxed.supervisor;
  ExecReplicaSpec spec = Spec({"sh", "-c", "echo kept > result; exec sleep 30"});
  spec.app.sandbox.mutable_value().keep_working_dir = true;
  supervisor.Sync({spec});
  const std::string result = ReplicaWorkDir(dir.path(), "shop", "web-0") + "/result";
  REQUIRE(RunUntil(loop.get(), [&] { return std::filesystem::exists(result); }));
  supervisor.Sync({});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.running_count() == 0; }));
  RunUntil(
      loop.get(), [] { return false; }, 200);
  CHECK(std::filesystem::exists(result));
}

// Two containers "a" and "b" of one replica: the app's own command is a's.
ExecReplicaSpec TwoContainers(std::vector<std::string> a, std::vector<std::string> b) {
  ExecReplicaSpec spec = Spec(std::move(a));
  workloads::ExecContainers& containers = spec.app.containers.mutable_value();
  containers.name = "a";
  workloads::ExecContainer second;
  second.name = "b";
  second.command = std::move(b);
  second.env = {{"WHO", "container-b"}};
  containers.more.push_back(std::move(second));
  return spec;
}

std::string ContainerLog(const Supervisor& supervisor, const std::string& container) {
  auto text = ReadLog(supervisor.LogDir("shop", "web-0") + "/" + container, false, -1);
  return text.ok() ? *text : "";
}

const ContainerStatus* Find(const ReplicaStatus& status, const std::string& name) {
  for (const ContainerStatus& c : status.containers) {
    if (c.name == name) return &c;
  }
  return nullptr;
}
// It points into `status`: a temporary would leave it dangling.
const ContainerStatus* Find(ReplicaStatus&& status, const std::string& name) = delete;

void StopAll(proxy::UvLoop& loop, Supervisor& supervisor) {
  bool done = false;
  supervisor.Shutdown([&done] { done = true; });
  REQUIRE(RunUntil(loop.get(), [&] { return done; }));
}

TEST_CASE("Supervisor: a replica's containers run side by side, each with its own log") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = TwoContainers({"sh", "-c", "echo a port=$PORT; exec sleep 30"},
                                       {"sh", "-c", "echo b $(WHO) port=$PORT; exec sleep 30"});
  supervisor.Sync({spec});
  auto target = supervisor.Target(spec.address, 8080);
  REQUIRE(target.has_value());
  const std::string port = std::to_string(target->port);
  REQUIRE(RunUntil(loop.get(), [&] {
    return ContainerLog(supervisor, "a") == "a port=" + port + "\n" &&
           ContainerLog(supervisor, "b") == "b container-b port=" + port + "\n";
  }));
  ReplicaStatus status = supervisor.Status(spec.address);
  REQUIRE(status.containers.size() == 2);
  CHECK(status.containers[0].name == "a");
  CHECK(status.containers[1].name == "b");
  CHECK(status.containers[0].state == "Running");
  CHECK(status.containers[1].state == "Running");
  CHECK(status.containers[0].pid > 0);
  CHECK(status.containers[1].pid > 0);
  CHECK(status.containers[0].pid != status.containers[1].pid);
  CHECK(status.state == "Running");
  CHECK(status.ready);
  CHECK(supervisor.running_count() == 2);
  // Both processes belong to the replica.
  CHECK(supervisor.ReplicaOfPid(status.containers[1].pid) == spec.address);
  CHECK(supervisor.FindLog("shop", "web-0", "b") != nullptr);
  CHECK(supervisor.FindLog("shop", "web-0", "c") == nullptr);
  CHECK(supervisor.FindLog("shop", "web-0") == supervisor.FindLog("shop", "web-0", "a"));
  StopAll(loop, supervisor);
}

TEST_CASE("Supervisor: a crashing container restarts alone; the other keeps its process") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec =
      TwoContainers({"sh", "-c", "exec sleep 30"}, {"sh", "-c", "echo crashing; exit 4"});
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] {
    const ReplicaStatus status = supervisor.Status(spec.address);  // Find points into it
    const ContainerStatus* b = Find(status, "b");
    return b != nullptr && b->restarts >= 2;
  }));
  const ReplicaStatus started = supervisor.Status(spec.address);
  pid_t a_pid = Find(started, "a")->pid;
  REQUIRE(a_pid > 0);
  REQUIRE(RunUntil(loop.get(), [&] {
    const ReplicaStatus status = supervisor.Status(spec.address);
    const ContainerStatus* b = Find(status, "b");
    return b != nullptr && b->restarts >= 3;
  }));
  ReplicaStatus status = supervisor.Status(spec.address);
  const ContainerStatus* a = Find(status, "a");
  const ContainerStatus* b = Find(status, "b");
  CHECK(a->pid == a_pid);
  CHECK(Alive(a_pid));
  CHECK(a->restarts == 0);
  CHECK(a->state == "Running");
  CHECK(b->last_exit == "exit code 4");
  // The replica: restarts summed, and not ready while b is down.
  CHECK(status.restarts == b->restarts);
  CHECK(ContainerLog(supervisor, "a").empty());
  StopAll(loop, supervisor);
}

TEST_CASE("Supervisor: stopping a replica ends every container's process") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec =
      TwoContainers({"sh", "-c", "echo up; exec sleep 30"},
                    {"sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"});
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] {
    return ContainerLog(supervisor, "a") == "up\n" && ContainerLog(supervisor, "b") == "up\n";
  }));
  ReplicaStatus status = supervisor.Status(spec.address);
  pid_t a = status.containers[0].pid;
  pid_t b = status.containers[1].pid;
  supervisor.Sync({});
  // a exits on SIGTERM; b ignores it and is killed after the grace period.
  REQUIRE(RunUntil(loop.get(), [&] { return !Alive(a); }));
  CHECK(supervisor.Status(spec.address).known);  // b still runs
  REQUIRE(RunUntil(
      loop.get(), [&] { return supervisor.running_count() == 0; }, 10'000));
  CHECK(!Alive(b));
  CHECK(!supervisor.Status(spec.address).known);
}

TEST_CASE("Supervisor: a replica is ready only when every container is") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  // b listens on the replica's port after a while; its probe checks it. a
  // has no probe (ready once running).
  const std::string ready_flag = dir.path() + "/listen";
  ExecReplicaSpec spec = TwoContainers(
      {"sh", "-c", "exec sleep 30"},
      {"sh", "-c",
       "while [ ! -e " + ready_flag +
           " ]; do sleep 0.05; done; exec /usr/bin/python3 -c 'import os, socket, time; "
           "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
           "s.bind((\"127.0.0.1\", int(os.environ[\"PORT\"]))); s.listen(); time.sleep(30)'"});
  workloads::Probe probe;
  probe.kind = workloads::Probe::Kind::kTcpSocket;
  probe.port.name = "http";
  probe.period_seconds = 1;
  spec.app.containers.mutable_value().more[0].readiness_probe = probe;
  std::vector<bool> changes;
  supervisor.OnReadinessChange([&changes](uint32_t, bool ready) { changes.push_back(ready); });
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] {
    ReplicaStatus s = supervisor.Status(spec.address);
    return s.containers.size() == 2 && s.containers[0].ready && s.containers[1].state == "Running";
  }));
  RunUntil(
      loop.get(), [] { return false; }, 1'500);  // b's probe fails meanwhile
  CHECK_FALSE(supervisor.Status(spec.address).ready);
  CHECK_FALSE(supervisor.Status(spec.address).containers[1].ready);
  CHECK(changes.empty());
  { std::ofstream(ready_flag) << "go"; }
  REQUIRE(RunUntil(
      loop.get(), [&] { return supervisor.Status(spec.address).ready; }, 10'000));
  CHECK(supervisor.Status(spec.address).containers[1].ready);
  CHECK(changes == std::vector<bool>{true});
  StopAll(loop, supervisor);
  CHECK(changes == std::vector<bool>{true, false});
}

TEST_CASE("Supervisor: every container's process is recorded for the orphan sweep") {
  TempDir dir;
  proxy::UvLoop loop;
  Supervisor supervisor(loop.get(), TestOptions(dir));
  ExecReplicaSpec spec = TwoContainers({"sleep", "30"}, {"sleep", "30"});
  supervisor.Sync({spec});
  REQUIRE(RunUntil(loop.get(), [&] { return supervisor.running_count() == 2; }));
  ReplicaStatus status = supervisor.Status(spec.address);
  // What the next agent reads after a kill -9 of this one: both processes.
  std::vector<ProcessRecord> records = ProcessTable(dir.path() + "/processes").Load();
  REQUIRE(records.size() == 2);
  std::map<std::string, pid_t> by_name;
  for (const ProcessRecord& r : records) {
    CHECK(r.address == spec.address);
    CHECK(IsSameProcess(r.pid, r.start_time));
    by_name[r.replica] = r.pid;
  }
  CHECK(by_name["shop/web-0/a"] == status.containers[0].pid);
  CHECK(by_name["shop/web-0/b"] == status.containers[1].pid);
  StopAll(loop, supervisor);
  CHECK(ProcessTable(dir.path() + "/processes").Load().empty());
}

TEST_CASE("ContainerLogDir: one container keeps the replica's dir, several get one each") {
  workloads::ExecApp single;
  single.command = {"true"};
  CHECK(ContainerLogDir("/logs/web-0", single, "") == "/logs/web-0");
  CHECK(ContainerLogDir("/logs/web-0", single, "main") == "/logs/web-0");
  CHECK(!ContainerLogDir("/logs/web-0", single, "other").has_value());
  ExecReplicaSpec spec = TwoContainers({"true"}, {"true"});
  CHECK(ContainerLogDir("/logs/web-0", spec.app, "") == "/logs/web-0/a");
  CHECK(ContainerLogDir("/logs/web-0", spec.app, "b") == "/logs/web-0/b");
  CHECK(!ContainerLogDir("/logs/web-0", spec.app, "c").has_value());
}

}  // namespace
}  // namespace podless::runtime
