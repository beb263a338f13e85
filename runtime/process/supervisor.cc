#include "runtime/process/supervisor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <utility>

#include "proxy/base/log.h"
#include "proxy/base/netns.h"
#include "runtime/process/supervisor_parts.h"

namespace podless::runtime {

namespace {

constexpr uint32_t kLoopback = 0x7f000001;  // 127.0.0.1
// Pipe reads: one buffer for every pipe, consumed at once by the log write.
char g_read_buffer[64 * 1024];

uint64_t NowMs(uv_loop_t* loop) { return uv_now(loop); }

std::string DottedAddress(uint32_t address) {
  return std::to_string(address >> 24) + "." + std::to_string((address >> 16) & 0xff) + "." +
         std::to_string((address >> 8) & 0xff) + "." + std::to_string(address & 0xff);
}

// Percent-encodes a URL userinfo component (RFC 3986 unreserved kept).
std::string EncodeUserinfo(const std::string& text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string PortEnvName(const std::string& name) {
  std::string out = "PORT_";
  for (char c : name)
    out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string DescribeExit(int64_t exit_status, int term_signal) {
  if (term_signal != 0) {
    const char* name = strsignal(term_signal);
    return "signal " + std::to_string(term_signal) + " (" + (name ? name : "unknown") + ")";
  }
  return "exit code " + std::to_string(exit_status);
}

void Log(const std::string& message, proxy::LogLevel level = proxy::LogLevel::kWarning) {
  proxy::Log(level, "supervisor", message);
}

// The replica and container a log line is about.
std::string Who(const ExecReplicaSpec& spec, const workloads::ExecContainer& container) {
  std::string who = spec.ns + "/" + spec.replica;
  if (!spec.app.containers->more.empty()) who += " container " + container.name;
  return who;
}

}  // namespace

std::string ExpandVariables(const std::string& text,
                            const std::map<std::string, std::string>& vars) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 >= text.size()) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (text[i + 1] == '(') {
      size_t close = text.find(')', i + 2);
      if (close != std::string::npos) {
        std::string name = text.substr(i + 2, close - i - 2);
        auto it = vars.find(name);
        if (it != vars.end()) {
          out += it->second;
        } else {
          out += text.substr(i, close - i + 1);
        }
        i = close;
        continue;
      }
    }
    out += '$';
  }
  return out;
}

std::vector<std::string> BuildEnvironment(const ExecReplicaSpec& spec,
                                          const std::vector<uint16_t>& private_ports,
                                          const std::string& home,
                                          const std::vector<workloads::EnvVar>* user_env) {
  std::vector<std::pair<std::string, std::string>> env;
  auto set = [&env](const std::string& name, const std::string& value) {
    for (auto& entry : env) {
      if (entry.first == name) {
        entry.second = value;
        return;
      }
    }
    env.emplace_back(name, value);
  };
  for (const char* inherited : {"PATH", "HOME", "LANG", "TZ"}) {
    if (const char* value = std::getenv(inherited)) set(inherited, value);
  }
  if (std::getenv("PATH") == nullptr) set("PATH", "/usr/local/bin:/usr/bin:/bin");
  if (!home.empty()) set("HOME", home);
  set("PODLESS_WORKLOAD", spec.workload);
  set("PODLESS_NAMESPACE", spec.ns);
  set("PODLESS_REPLICA", spec.replica);
  set("PODLESS_ORDINAL", std::to_string(spec.ordinal));
  set("PODLESS_SPIFFE_ID", spec.spiffe_id);
  set("PODLESS_ADDRESS", DottedAddress(spec.address));
  set("PODLESS_LISTEN_ADDRESS", "127.0.0.1");
  for (size_t i = 0; i < spec.ports.size() && i < private_ports.size(); ++i) {
    std::string port = std::to_string(private_ports[i]);
    if (i == 0) set("PORT", port);
    if (!spec.ports[i].name.empty()) set(PortEnvName(spec.ports[i].name), port);
    set("PORT_" + std::to_string(spec.ports[i].port), port);
  }
  if (!spec.proxy_user.empty()) {
    std::string userinfo =
        EncodeUserinfo(spec.proxy_user) + ":" + EncodeUserinfo(spec.proxy_password);
    std::string http = "http://" + userinfo + "@" + spec.outbound_proxy;
    std::string socks = "socks5h://" + userinfo + "@" + spec.outbound_proxy;
    set("HTTP_PROXY", http);
    set("HTTPS_PROXY", http);
    set("ALL_PROXY", socks);
    set("http_proxy", http);
    set("https_proxy", http);
    set("all_proxy", socks);
    set("NO_PROXY", "localhost,127.0.0.1");
    set("no_proxy", "localhost,127.0.0.1");
  }
  if (!spec.workload_api_socket.empty()) {
    // The SPIFFE Workload Endpoint spec's form: unix:// and an absolute path.
    set("SPIFFE_ENDPOINT_SOCKET", "unix://" + spec.workload_api_socket);
  }
  // The user's variables, in order, each expanded with what precedes it.
  std::map<std::string, std::string> vars(env.begin(), env.end());
  for (const auto& var : user_env != nullptr ? *user_env : spec.app.env) {
    std::string value = ExpandVariables(var.value, vars);
    set(var.name, value);
    vars[var.name] = value;
  }
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

std::optional<std::string> ContainerLogDir(const std::string& replica_dir,
                                           const workloads::ExecApp& app,
                                           const std::string& container) {
  const std::vector<workloads::ExecContainer> all = app.AllContainers();
  if (container.empty() || all.size() == 1) {
    if (!container.empty() && container != all.front().name) return std::nullopt;
    return all.size() == 1 ? replica_dir : replica_dir + "/" + all.front().name;
  }
  for (const auto& c : all) {
    if (c.name == container) return replica_dir + "/" + c.name;
  }
  return std::nullopt;
}

void SupervisorLog(const std::string& message) { Log(message); }

Supervisor::Supervisor(uv_loop_t* loop, SupervisorOptions options)
    : loop_(loop),
      dispatcher_(loop),
      options_(std::move(options)),
      table_(options_.state_dir + "/processes") {
  reap_timer_ = std::make_unique<proxy::Timer>(loop_, [this] { Reap(); });
  // Nothing keeps the loop alive just for reaping.
  reap_timer_->Unref();
  // Replicas' output is the agent's alone: no one else may even list whose
  // logs there are.
  if (!options_.state_dir.empty()) {
    if (podless::Status s = MakeDir(options_.state_dir + "/logs", 0700); !s) Log(s.error().message);
  }
  KillOrphans();
}

Supervisor::~Supervisor() {
  // Without Shutdown(), children are killed outright: none must outlive the
  // supervisor unrecorded.
  auto kill_all = [](const Replica& replica) {
    for (const auto& container : replica.containers) {
      if (container->running()) ::kill(-container->run->pid, SIGKILL);
    }
  };
  for (auto& [address, replica] : replicas_) kill_all(*replica);
  for (auto& replica : terminating_) kill_all(*replica);
}

bool Supervisor::UidInUse(uid_t uid, const Replica* except) const {
  auto running = [&](const Replica& r) { return &r != except && r.uid == uid && r.any_running(); };
  for (const auto& [address, replica] : replicas_) {
    if (running(*replica)) return true;
  }
  for (const auto& replica : terminating_) {
    if (running(*replica)) return true;
  }
  return false;
}

void Supervisor::KillOrphans() {
  // A previous agent's replicas: every process of their cgroups, escaped
  // double-forks included.
  if (options_.cgroups != nullptr) {
    for (const std::string& leaf : options_.cgroups->Leaves()) {
      if (!options_.cgroups->Empty(leaf))
        Log("stopping orphan processes a previous agent left in cgroup " + leaf,
            proxy::LogLevel::kInfo);
      if (podless::Status s = options_.cgroups->Kill(leaf); !s) Log(s.error().message);
      (void)options_.cgroups->Remove(leaf);  // busy until the kernel reaps them
    }
  }
  // Without cgroups, a previous agent's escapees are found by the uids it
  // gave its workloads (every one of them is still allocated).
  if (options_.cgroups == nullptr && options_.uids != nullptr && options_.sandbox) {
    for (const auto& [key, uid] : options_.uids->allocations()) KillProcessesOfUid(uid);
  }
  // Every container's process is recorded, so each is found here.
  std::vector<ProcessRecord> records = table_.Load();
  for (const auto& record : records) {
    if (!IsSameProcess(record.pid, record.start_time)) continue;
    Log("stopping orphan pid " + std::to_string(record.pid) + " of " + record.replica +
        " left by a previous agent");
    ::kill(-record.pid, SIGKILL);
    ::kill(record.pid, SIGKILL);
  }
  if (!records.empty()) PersistTable();
}

void Supervisor::PersistTable() {
  std::vector<ProcessRecord> records;
  auto add = [&records](const Replica& replica) {
    const bool several = replica.containers.size() > 1;
    for (const auto& container : replica.containers) {
      if (!container->running()) continue;
      std::string name = replica.spec.ns + "/" + replica.spec.replica;
      if (several) name += "/" + container->spec.name;
      records.push_back(ProcessRecord{container->run->pid, container->run->start_time,
                                      replica.spec.address, name});
    }
  };
  for (const auto& [address, replica] : replicas_) add(*replica);
  for (const auto& replica : terminating_) add(*replica);
  if (podless::Status s = table_.Store(records); !s) Log(s.error().message);
}

uint16_t Supervisor::AllocatePort() {
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(kLoopback);
    socklen_t length = sizeof(address);
    uint16_t port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port = ntohs(address.sin_port);
    }
    ::close(fd);
    if (port != 0 && ports_in_use_.insert(port).second) return port;
  }
  return 0;
}

LogFile* Supervisor::LogFor(const std::string& dir) {
  auto it = logs_.find(dir);
  if (it != logs_.end()) return it->second.get();
  auto file = LogFile::Open(dir, options_.log_max_bytes);
  if (!file) {
    Log(file.error().message);
    return nullptr;
  }
  return (logs_[dir] = std::move(*file)).get();
}

LogFile* Supervisor::FindLog(const std::string& ns, const std::string& replica,
                             const std::string& container) {
  const std::string replica_dir = LogDir(ns, replica);
  // The app of the replica of that name decides the layout.
  const ExecReplicaSpec* spec = nullptr;
  for (const auto& [address, r] : replicas_) {
    if (r->spec.ns == ns && r->spec.replica == replica) spec = &r->spec;
  }
  std::optional<std::string> dir = spec != nullptr
                                       ? ContainerLogDir(replica_dir, spec->app, container)
                                       : std::optional<std::string>(replica_dir);
  if (!dir) return nullptr;
  auto it = logs_.find(*dir);
  return it == logs_.end() ? nullptr : it->second.get();
}

void Supervisor::Sync(std::vector<ExecReplicaSpec> desired) {
  if (shutting_down_) return;
  std::set<uint32_t> wanted;
  for (auto& spec : desired) {
    wanted.insert(spec.address);
    auto it = replicas_.find(spec.address);
    if (it != replicas_.end()) {
      if (it->second->spec == spec) continue;
      std::unique_ptr<Replica> old = std::move(it->second);
      replicas_.erase(it);
      Retire(std::move(old));
    }
    auto replica = std::make_unique<Replica>();
    replica->supervisor = this;
    replica->spec = std::move(spec);
    for (size_t i = 0; i < replica->spec.ports.size(); ++i) {
      // In its own network namespace a replica listens on the declared port.
      replica->private_ports.push_back(NetworkNamespaces() ? replica->spec.ports[i].port
                                                           : AllocatePort());
    }
    const std::string replica_dir = LogDir(replica->spec.ns, replica->spec.replica);
    for (workloads::ExecContainer& c : replica->spec.app.AllContainers()) {
      auto container = std::make_unique<Container>();
      container->replica = replica.get();
      container->log = LogFor(*ContainerLogDir(replica_dir, replica->spec.app, c.name));
      container->spec = std::move(c);
      container->restart_timer =
          std::make_unique<proxy::Timer>(loop_, [this, c = container.get()] { Restart(*c); });
      replica->containers.push_back(std::move(container));
    }
    replica->kill_timer =
        std::make_unique<proxy::Timer>(loop_, [this, r = replica.get()] { KillRemaining(*r); });
    Replica& ref = *replica;
    replicas_[ref.spec.address] = std::move(replica);
    StartReplica(ref);
  }
  for (auto it = replicas_.begin(); it != replicas_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    std::unique_ptr<Replica> old = std::move(it->second);
    it = replicas_.erase(it);
    Retire(std::move(old));
  }
  // A deleted workload's uid goes back to the range (handed out again only
  // after every unused one, UidAllocator).
  if (options_.uids != nullptr) {
    std::set<std::string> workloads;
    for (const auto& [address, replica] : replicas_)
      workloads.insert(replica->spec.ns + "/" + replica->spec.workload);
    std::vector<std::string> released;
    for (const auto& [key, uid] : options_.uids->allocations()) {
      if (!workloads.count(key)) released.push_back(key);
    }
    for (const auto& key : released) {
      if (podless::Status s = options_.uids->Release(key); !s) Log(s.error().message);
    }
  }
}

void Supervisor::StartReplica(Replica& replica) {
  // A start may fail at once (and schedule a restart): iterate by index over
  // containers that stay in place.
  for (size_t i = 0; i < replica.containers.size() && !replica.stopping; ++i)
    StartProcess(*replica.containers[i]);
}

void Supervisor::StartProcess(Container& container) {
  Replica& replica = *container.replica;
  const ExecReplicaSpec& spec = replica.spec;
  container.waiting_restart = false;
  container.last_started_ms = NowMs(loop_);
  if (container.log != nullptr) container.log->StartRun();

  if (options_.sandbox && !replica.sandboxed) {
    if (podless::Status s = PrepareSandbox(replica); !s) {
      RemoveSandbox(replica);
      return FailStart(container, std::make_unique<Run>(),
                       "cannot prepare the sandbox: " + s.error().message);
    }
  }
  std::vector<std::string> env =
      BuildEnvironment(spec, replica.private_ports, replica.work_dir, &container.spec.env);
  std::map<std::string, std::string> vars;
  for (const auto& entry : env) {
    size_t eq = entry.find('=');
    vars[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  std::vector<std::string> argv;
  for (const auto& arg : container.spec.command) argv.push_back(ExpandVariables(arg, vars));
  if (options_.sandbox)
    argv = SandboxArgv(options_.launcher, SandboxFor(replica, container.spec.working_dir), argv);

  auto run = std::make_unique<Run>();
  run->supervisor = this;
  run->log = container.log;
  // uv_pipe_init without IPC always returns 0.
  (void)uv_pipe_init(loop_, run->out.get(), 0);
  (void)uv_pipe_init(loop_, run->err.get(), 0);

  std::vector<char*> args;
  for (auto& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  uv_stdio_container_t stdio[4];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = run->out.stream();
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = run->err.stream();
  // The launcher finds the network namespace at descriptor 3 (kSandboxNetnsFd).
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = replica.netns.get();

  uv_process_options_t options{};
  options.file = args.empty() || args[0] == nullptr ? "" : args[0];
  options.args = args.data();
  options.env = envp.data();
  // A sandboxed process enters its working directory in the launcher, after
  // its namespace and cgroup.
  const std::string& working_dir = container.spec.working_dir;
  options.cwd = working_dir.empty() || options_.sandbox ? nullptr : working_dir.c_str();
  options.flags = UV_PROCESS_DETACHED;
  options.stdio_count = replica.netns ? 4 : 3;
  options.stdio = stdio;
  options.exit_cb = [](uv_process_t* process, int64_t exit_status, int term_signal) {
    auto* run = static_cast<Run*>(process->data);
    if (run == nullptr) return;
    run->exited = true;
    // Find the container this run belongs to (of a current or terminating
    // replica).
    Supervisor* self = run->supervisor;
    auto find = [&](Replica& replica) {
      for (auto& container : replica.containers) {
        if (container->run.get() == run) {
          self->OnExit(*container, exit_status, term_signal);
          return true;
        }
      }
      return false;
    };
    for (auto& [address, replica] : self->replicas_) {
      if (find(*replica)) return;
    }
    for (auto& replica : self->terminating_) {
      if (find(*replica)) return;
    }
  };
  run->process->data = run.get();

  int rc = uv_spawn(loop_, run->process.get(), &options);
  if (rc != 0) {
    return FailStart(container, std::move(run),
                     "cannot start " + (argv.empty() ? std::string("(no command)") : argv[0]) +
                         ": " + uv_strerror(rc));
  }
  run->pid = run->process->pid;
  if (auto stat = ReadProcStat(run->pid)) run->start_time = stat->start_time;

  if (!options_.sandbox) {  // the launcher sets them itself
    rlimit no_core{0, 0};
    ::prlimit(run->pid, RLIMIT_CORE, &no_core, nullptr);
    rlimit files{};
    if (options_.rlimit_nofile != 0 && ::prlimit(run->pid, RLIMIT_NOFILE, nullptr, &files) == 0) {
      files.rlim_cur = std::min<rlim_t>(options_.rlimit_nofile, files.rlim_max);  // soft only
      ::prlimit(run->pid, RLIMIT_NOFILE, &files, nullptr);
    }
  }

  for (proxy::PipeHandle* pipe : {&run->out, &run->err}) {
    (*pipe)->data = run.get();
    ++run->open_pipes;
    int read = uv_read_start(
        pipe->stream(),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          *buf = uv_buf_init(g_read_buffer, sizeof(g_read_buffer));
        },
        [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
          auto* run = static_cast<Run*>(stream->data);
          if (run == nullptr) return;
          if (nread > 0) {
            if (run->log != nullptr)
              run->log->Append(std::string_view(buf->base, static_cast<size_t>(nread)));
            return;
          }
          if (nread == 0) return;
          // EOF or an error: this pipe is done.
          uv_read_stop(stream);
          stream->data = nullptr;
          if (--run->open_pipes == 0 && run->exited) run->supervisor->ScheduleReap();
        });
    if (read != 0) {
      // The process runs on; only its output on this pipe is lost.
      Log(Who(replica.spec, container.spec) +
          ": cannot read the process's output: " + uv_strerror(read));
      (*pipe)->data = nullptr;
      --run->open_pipes;
    }
  }
  container.run = std::move(run);
  container.reason.clear();
  PersistTable();

  if (!container.spec.readiness_probe) {
    SetContainerReady(container, true);  // no probe: ready once running, as in Kubernetes
    return;
  }
  const workloads::Probe& probe = *container.spec.readiness_probe;
  uint16_t probe_port = 0;
  for (size_t i = 0; i < spec.ports.size(); ++i) {
    bool match = probe.port.name.empty() ? spec.ports[i].port == probe.port.number
                                         : spec.ports[i].name == probe.port.name;
    if (match) probe_port = replica.private_ports[i];
  }
  if (probe_port == 0 && probe.port.name.empty())
    probe_port = probe.port.number;  // undeclared port
  Container* target = &container;
  container.probe = std::make_unique<ReadinessProbe>(
      dispatcher_, probe, probe_port,
      // The probe is the container's own and dies with its run or the
      // container: `target` outlives every call.
      [this, target](bool ready) { SetContainerReady(*target, ready); }, replica.netns.get());
}

void Supervisor::FailStart(Container& container, std::unique_ptr<Run> run,
                           const std::string& message) {
  Log(Who(container.replica->spec, container.spec) + ": " + message);
  if (container.log != nullptr) container.log->Append("podless: " + message + "\n");
  // The process never ran: treated as a failed run, restarted with backoff.
  container.run = std::move(run);
  container.run->exited = true;
  container.reason = "StartError";
  OnExit(container, 128, 0);
  container.last_exit = message;
  container.reason = "StartError";
}

void Supervisor::SetContainerReady(Container& container, bool ready) {
  container.ready = ready;
  Replica& replica = *container.replica;
  bool all = !replica.stopping;
  for (const auto& c : replica.containers) all = all && c->ready;
  SetReady(replica, all);
}

void Supervisor::SetReady(Replica& replica, bool ready) {
  if (replica.ready == ready) return;
  replica.ready = ready;
  if (on_readiness_) on_readiness_(replica.spec.address, ready);
}

void Supervisor::OnExit(Container& container, int64_t exit_status, int term_signal) {
  Replica& replica = *container.replica;
  Run& run = *container.run;
  run.exited = true;
  // The rest of its process group dies with it, as a container's processes
  // do. The cgroup and the workload's uid are the replica's, shared by its
  // containers: what escaped the group (double-forks) is killed once no
  // container of the replica runs.
  if (run.pid > 0) ::kill(-run.pid, SIGKILL);
  if (!replica.any_running()) {
    if (!replica.cgroup.empty()) {
      if (podless::Status s = options_.cgroups->Kill(replica.cgroup_leaf); !s)
        Log(s.error().message);
    } else if (replica.uid_allocated && !UidInUse(*replica.uid, &replica)) {
      // No cgroup contains its children: the workload's own uid does. Once no
      // replica of the workload runs, every process of that uid is an escapee.
      KillProcessesOfUid(*replica.uid);
    }
  }
  container.probe.reset();
  container.last_exit = DescribeExit(exit_status, term_signal);
  bool failed = exit_status != 0 || term_signal != 0;
  if (run.open_pipes > 0) {
    container.draining.push_back(std::move(container.run));
  } else {
    finished_runs_.push_back(std::move(container.run));
    ScheduleReap();
  }
  PersistTable();
  if (replica.stopping) {
    container.ready = false;
    if (!replica.any_running()) {
      replica.kill_timer->Stop();
      SetReady(replica, false);
      ReplicaStopped(replica);
    }
    return;
  }
  SetContainerReady(container, false);

  bool restart = false;
  switch (replica.spec.app.restart_policy) {
    case workloads::RestartPolicy::kAlways:
      restart = true;
      break;
    case workloads::RestartPolicy::kOnFailure:
      restart = failed;
      break;
    case workloads::RestartPolicy::kNever:
      restart = false;
      break;
  }
  if (!restart) {
    container.reason = failed ? "Error" : "Completed";
    return;
  }
  // Backoff: initial, doubled per consecutive crash, capped; a run of at
  // least backoff_reset_ms forgets the earlier crashes. Per container, as
  // kubelet keeps it.
  if (NowMs(loop_) - container.last_started_ms >= options_.backoff_reset_ms)
    container.consecutive_crashes = 0;
  uint64_t delay = options_.backoff_initial_ms;
  for (uint32_t i = 0; i < container.consecutive_crashes && delay < options_.backoff_max_ms; ++i)
    delay *= 2;
  delay = std::min(delay, options_.backoff_max_ms);
  ++container.consecutive_crashes;
  container.waiting_restart = true;
  if (container.reason.empty()) container.reason = "CrashLoopBackOff";
  container.restart_timer->Start(delay);
}

void Supervisor::Restart(Container& container) {
  if (container.replica->stopping) return;
  ++container.restarts;
  ++restarts_total_;
  StartProcess(container);
}

void Supervisor::Retire(std::unique_ptr<Replica> replica) {
  Replica& ref = *replica;
  terminating_.push_back(std::move(replica));
  BeginStop(ref);
}

void Supervisor::BeginStop(Replica& replica) {
  if (replica.stopping) return;
  replica.stopping = true;
  // Reported at once: a changed replica's successor may already be starting
  // at the same address, and this one's late exit must not mark it unready.
  SetReady(replica, false);
  for (auto& container : replica.containers) {
    container->waiting_restart = false;
    container->ready = false;
    container->restart_timer->Stop();
    container->probe.reset();
  }
  if (!replica.any_running()) {
    ReplicaStopped(replica);
    return;
  }
  for (auto& container : replica.containers) {
    if (container->running()) ::kill(-container->run->pid, SIGTERM);
  }
  uint64_t grace_ms = options_.grace_period_ms
                          ? *options_.grace_period_ms
                          : uint64_t{replica.spec.app.termination_grace_period_seconds} * 1000;
  replica.kill_timer->Start(grace_ms);
}

void Supervisor::KillRemaining(Replica& replica) {
  for (auto& container : replica.containers) {
    if (!container->running()) continue;
    Log(Who(replica.spec, container->spec) +
        ": grace period over, sending SIGKILL to process group " +
        std::to_string(container->run->pid));
    ::kill(-container->run->pid, SIGKILL);
  }
}

void Supervisor::ReplicaStopped(Replica& replica) {
  for (uint16_t port : replica.private_ports) ports_in_use_.erase(port);
  replica.private_ports.clear();
  RemoveSandbox(replica);
  for (auto it = terminating_.begin(); it != terminating_.end(); ++it) {
    if (it->get() == &replica) {
      // Freed on a later loop turn: we may be inside one of its callbacks.
      reap_.push_back(std::move(*it));
      terminating_.erase(it);
      ScheduleReap();
      break;
    }
  }
  if (shutting_down_ && terminating_.empty() && shutdown_done_) {
    auto done = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    done();
  }
}

void Supervisor::ScheduleReap() { reap_timer_->Start(0); }

void Supervisor::Reap() {
  reap_.clear();
  DropLogs();
  std::erase_if(finished_runs_, [](const auto& run) { return run->open_pipes == 0; });
  auto drained = [](const std::unique_ptr<Run>& run) { return run->open_pipes == 0; };
  auto drain = [&](Replica& replica) {
    for (auto& container : replica.containers) std::erase_if(container->draining, drained);
  };
  for (auto& [address, replica] : replicas_) drain(*replica);
  for (auto& replica : terminating_) drain(*replica);
}

void Supervisor::DropLogs() {
  for (const std::string& dir : std::exchange(dropped_logs_, {})) {
    bool used = false;
    auto uses = [&](const Replica& replica) {
      used = used || LogDir(replica.spec.ns, replica.spec.replica) == dir;
    };
    for (const auto& [address, replica] : replicas_) uses(*replica);
    for (const auto& replica : terminating_) uses(*replica);
    if (used) continue;
    // The replica's log, or its containers' logs under it.
    std::erase_if(logs_, [&dir](const auto& entry) {
      return entry.first == dir || entry.first.rfind(dir + "/", 0) == 0;
    });
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
}

void Supervisor::Shutdown(std::function<void()> done) {
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  while (!replicas_.empty()) {
    std::unique_ptr<Replica> replica = std::move(replicas_.begin()->second);
    replicas_.erase(replicas_.begin());
    terminating_.push_back(std::move(replica));
  }
  // BeginStop may finish a replica at once (and erase it from terminating_).
  std::vector<Replica*> stopping;
  for (auto& replica : terminating_) stopping.push_back(replica.get());
  for (Replica* replica : stopping) BeginStop(*replica);
  if (terminating_.empty() && shutdown_done_) {
    auto callback = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    callback();
  }
}

std::optional<proxy::ProcessTarget> Supervisor::Target(uint32_t address, uint16_t port) const {
  auto it = replicas_.find(address);
  if (it == replicas_.end()) return std::nullopt;
  const Replica& replica = *it->second;
  for (size_t i = 0; i < replica.spec.ports.size() && i < replica.private_ports.size(); ++i) {
    if (replica.spec.ports[i].port == port)
      return proxy::ProcessTarget{kLoopback, replica.private_ports[i], replica.netns.get()};
  }
  return std::nullopt;
}

std::map<uint32_t, int> Supervisor::OutboundListeners() const {
  std::map<uint32_t, int> listeners;
  for (const auto& [address, replica] : replicas_) {
    if (replica->outbound_listener) listeners[address] = replica->outbound_listener.get();
  }
  return listeners;
}

ReplicaStatus Supervisor::Status(uint32_t address) const {
  ReplicaStatus status;
  const Replica* replica = nullptr;
  if (auto it = replicas_.find(address); it != replicas_.end()) replica = it->second.get();
  for (const auto& candidate : terminating_) {
    if (replica == nullptr && candidate->spec.address == address) replica = candidate.get();
  }
  if (replica == nullptr) return status;
  status.known = true;
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  for (const auto& c : replica->containers) {
    ContainerStatus& out = status.containers.emplace_back();
    const bool running = c->running();
    out.name = c->spec.name;
    out.state = replica->stopping ? "Terminating" : running ? "Running" : "Waiting";
    out.reason = running ? "" : c->reason;
    out.ready = c->ready;
    out.restarts = c->restarts;
    out.last_exit = c->last_exit;
    out.pid = running ? c->run->pid : 0;
    if (running) {
      const uint64_t ran_ms = NowMs(loop_) - c->last_started_ms;
      out.started_at = now - static_cast<int64_t>(ran_ms / 1000);
    }
  }
  // The replica as a whole: the first container that does not run speaks
  // for it (as a pod's phase follows its containers).
  const ContainerStatus* speaker = &status.containers.front();
  for (const ContainerStatus& c : status.containers) {
    status.restarts += c.restarts;
    if (c.state != "Running" && speaker->state == "Running") speaker = &c;
  }
  status.state = speaker->state;
  status.reason = speaker->reason;
  status.last_exit = speaker->last_exit;
  if (status.last_exit.empty()) {
    for (const ContainerStatus& c : status.containers) {
      if (status.last_exit.empty()) status.last_exit = c.last_exit;
    }
  }
  status.ready = replica->ready;
  status.pid = status.containers.front().pid;
  status.started_at = status.containers.front().started_at;
  return status;
}

const ExecReplicaSpec* Supervisor::Spec(uint32_t address) const {
  auto it = replicas_.find(address);
  return it == replicas_.end() ? nullptr : &it->second->spec;
}

std::optional<uint32_t> Supervisor::ReplicaOfPid(pid_t pid) const {
  // pid -> (start time, replica) of every running process, every container's.
  std::map<pid_t, std::pair<uint64_t, uint32_t>> by_pid;
  for (const auto& [address, replica] : replicas_) {
    for (const auto& container : replica->containers) {
      if (container->running())
        by_pid[container->run->pid] = {container->run->start_time, replica->spec.address};
    }
  }
  if (by_pid.empty()) return std::nullopt;
  // Walk the parent chain; every step compares start times, so a pid that
  // was reused after its process died never matches.
  pid_t current = pid;
  for (int depth = 0; depth < 64 && current > 1; ++depth) {
    auto stat = ReadProcStat(current);
    if (!stat) return std::nullopt;
    auto it = by_pid.find(current);
    if (it != by_pid.end() && it->second.first == stat->start_time) return it->second.second;
    current = stat->ppid;
  }
  return std::nullopt;
}

size_t Supervisor::running_count() const {
  // Processes: every running container of every replica.
  size_t count = 0;
  auto add = [&count](const Replica& replica) {
    for (const auto& container : replica.containers) count += container->running();
  };
  for (const auto& [address, replica] : replicas_) add(*replica);
  for (const auto& replica : terminating_) add(*replica);
  return count;
}

}  // namespace podless::runtime
