#include "runtime/supervisor.h"

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

#include "proxy/log.h"
#include "proxy/netns.h"

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

podless::Status MakeDir(const std::string& path, mode_t mode);

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

// cgroup and sandbox names: namespaces and replica names are DNS labels, so
// '_' cannot occur in them and the pair is unique.
// A changed replica's successor starts while it stops, so each instance has
// a cgroup of its own: "<ns>_<replica>_<instance>".
std::string CgroupLeaf(const ExecReplicaSpec& spec, uint64_t instance) {
  return spec.ns + "_" + spec.replica + "_" + std::to_string(instance);
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
                                          const std::string& home) {
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
  for (const auto& var : spec.app.env) {
    std::string value = ExpandVariables(var.value, vars);
    set(var.name, value);
    vars[var.name] = value;
  }
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

// One process run: the process handle and its two output pipes. A run
// outlives its process until both pipes reached EOF, so the last output of
// a crashing program still reaches the log.
struct Supervisor::Run {
  Supervisor* supervisor = nullptr;
  LogFile* log = nullptr;
  proxy::ProcessHandle process;
  proxy::PipeHandle out;
  proxy::PipeHandle err;
  int open_pipes = 0;
  bool exited = false;
  pid_t pid = 0;
  uint64_t start_time = 0;
};

struct Supervisor::Replica {
  Supervisor* supervisor = nullptr;
  ExecReplicaSpec spec;
  std::vector<uint16_t> private_ports;  // one per spec.ports entry
  LogFile* log = nullptr;
  std::unique_ptr<Run> run;  // null when no process runs
  std::vector<std::unique_ptr<Run>> draining;
  proxy::TimerHandle restart_timer;
  proxy::TimerHandle kill_timer;
  ReadinessProbePtr probe;
  bool ready = false;
  bool stopping = false;
  bool waiting_restart = false;
  uint32_t restarts = 0;
  uint32_t consecutive_crashes = 0;
  uint64_t last_started_ms = 0;
  std::string last_exit;
  std::string reason;
  // The sandbox, made on the first start and kept across restarts.
  bool sandboxed = false;
  proxy::UniqueFd netns;              // its network namespace (root agent)
  proxy::UniqueFd outbound_listener;  // 127.0.0.1:<outbound port> in it
  std::optional<uid_t> uid;
  bool uid_allocated = false;  // the uid is the workload's own (UidAllocator)
  std::optional<gid_t> gid;
  std::string work_dir;
  std::string cgroup;  // the cgroup's directory; empty: none
  std::string cgroup_leaf;
};

Supervisor::Supervisor(uv_loop_t* loop, SupervisorOptions options)
    : loop_(loop), options_(std::move(options)), table_(options_.state_dir + "/processes") {
  uv_timer_init(loop_, reap_timer_.get());
  reap_timer_->data = this;
  // Nothing keeps the loop alive just for reaping.
  uv_unref(reap_timer_.handle());
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
  for (auto& [address, replica] : replicas_) {
    if (replica->run && !replica->run->exited) ::kill(-replica->run->pid, SIGKILL);
  }
  for (auto& replica : terminating_) {
    if (replica->run && !replica->run->exited) ::kill(-replica->run->pid, SIGKILL);
  }
}

bool Supervisor::UidInUse(uid_t uid, const Replica* except) const {
  auto running = [&](const Replica& r) {
    return &r != except && r.uid == uid && r.run && !r.run->exited;
  };
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
    if (replica.run && !replica.run->exited) {
      records.push_back(ProcessRecord{replica.run->pid, replica.run->start_time,
                                      replica.spec.address,
                                      replica.spec.ns + "/" + replica.spec.replica});
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

LogFile* Supervisor::LogFor(const ExecReplicaSpec& spec) {
  std::string dir = LogDir(spec.ns, spec.replica);
  auto it = logs_.find(dir);
  if (it != logs_.end()) return it->second.get();
  auto file = LogFile::Open(dir, options_.log_max_bytes);
  if (!file) {
    Log(file.error().message);
    return nullptr;
  }
  return (logs_[dir] = std::move(*file)).get();
}

LogFile* Supervisor::FindLog(const std::string& ns, const std::string& replica) {
  auto it = logs_.find(LogDir(ns, replica));
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
    replica->log = LogFor(replica->spec);
    uv_timer_init(loop_, replica->restart_timer.get());
    uv_timer_init(loop_, replica->kill_timer.get());
    Replica& ref = *replica;
    replicas_[ref.spec.address] = std::move(replica);
    StartProcess(ref);
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

void Supervisor::StartProcess(Replica& replica) {
  const ExecReplicaSpec& spec = replica.spec;
  replica.waiting_restart = false;
  replica.last_started_ms = NowMs(loop_);
  if (replica.log != nullptr) replica.log->StartRun();

  if (options_.sandbox && !replica.sandboxed) {
    if (podless::Status s = PrepareSandbox(replica); !s) {
      RemoveSandbox(replica);
      return FailStart(replica, std::make_unique<Run>(),
                       "cannot prepare the sandbox: " + s.error().message);
    }
  }
  std::vector<std::string> env = BuildEnvironment(spec, replica.private_ports, replica.work_dir);
  std::map<std::string, std::string> vars;
  for (const auto& entry : env) {
    size_t eq = entry.find('=');
    vars[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  std::vector<std::string> argv;
  for (const auto& arg : spec.app.command) argv.push_back(ExpandVariables(arg, vars));
  if (options_.sandbox) argv = SandboxArgv(options_.launcher, SandboxFor(replica), argv);

  auto run = std::make_unique<Run>();
  run->supervisor = this;
  run->log = replica.log;
  uv_pipe_init(loop_, run->out.get(), 0);
  uv_pipe_init(loop_, run->err.get(), 0);

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
  options.cwd =
      spec.app.working_dir.empty() || options_.sandbox ? nullptr : spec.app.working_dir.c_str();
  options.flags = UV_PROCESS_DETACHED;
  options.stdio_count = replica.netns ? 4 : 3;
  options.stdio = stdio;
  options.exit_cb = [](uv_process_t* process, int64_t exit_status, int term_signal) {
    auto* run = static_cast<Run*>(process->data);
    if (run == nullptr) return;
    run->exited = true;
    // Find the replica this run belongs to (current or terminating).
    Supervisor* self = run->supervisor;
    auto owns = [run](const std::unique_ptr<Replica>& replica) {
      return replica->run.get() == run;
    };
    for (auto& [address, replica] : self->replicas_) {
      if (owns(replica)) return self->OnExit(*replica, exit_status, term_signal);
    }
    for (auto& replica : self->terminating_) {
      if (owns(replica)) return self->OnExit(*replica, exit_status, term_signal);
    }
  };
  run->process->data = run.get();

  int rc = uv_spawn(loop_, run->process.get(), &options);
  if (rc != 0) {
    return FailStart(replica, std::move(run),
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
    uv_read_start(
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
  }
  replica.run = std::move(run);
  replica.reason.clear();
  PersistTable();

  if (!spec.app.readiness_probe) {
    SetReady(replica, true);  // no probe: ready once running, as in Kubernetes
    return;
  }
  const workloads::Probe& probe = *spec.app.readiness_probe;
  uint16_t probe_port = 0;
  for (size_t i = 0; i < spec.ports.size(); ++i) {
    bool match = probe.port.name.empty() ? spec.ports[i].port == probe.port.number
                                         : spec.ports[i].name == probe.port.name;
    if (match) probe_port = replica.private_ports[i];
  }
  if (probe_port == 0 && probe.port.name.empty())
    probe_port = probe.port.number;  // undeclared port
  uint32_t address = spec.address;
  replica.probe = std::make_unique<ReadinessProbe>(
      loop_, probe, probe_port,
      [this, address](bool ready) {
        auto it = replicas_.find(address);
        if (it != replicas_.end()) SetReady(*it->second, ready);
      },
      replica.netns.get());
}

void Supervisor::FailStart(Replica& replica, std::unique_ptr<Run> run, const std::string& message) {
  Log(replica.spec.ns + "/" + replica.spec.replica + ": " + message);
  if (replica.log != nullptr) replica.log->Append("podless: " + message + "\n");
  // The process never ran: treated as a failed run, restarted with backoff.
  replica.run = std::move(run);
  replica.run->exited = true;
  replica.reason = "StartError";
  OnExit(replica, 128, 0);
  replica.last_exit = message;
  replica.reason = "StartError";
}

void Supervisor::SetReady(Replica& replica, bool ready) {
  if (replica.ready == ready) return;
  replica.ready = ready;
  if (on_readiness_) on_readiness_(replica.spec.address, ready);
}

void Supervisor::OnExit(Replica& replica, int64_t exit_status, int term_signal) {
  Run& run = *replica.run;
  run.exited = true;
  // The rest of its process group, and of its cgroup (double-forks that left
  // the group), dies with it.
  if (run.pid > 0) ::kill(-run.pid, SIGKILL);
  if (!replica.cgroup.empty()) {
    if (podless::Status s = options_.cgroups->Kill(replica.cgroup_leaf); !s) Log(s.error().message);
  } else if (replica.uid_allocated && !UidInUse(*replica.uid, &replica)) {
    // No cgroup contains its children: the workload's own uid does. Once no
    // replica of the workload runs, every process of that uid is an escapee.
    KillProcessesOfUid(*replica.uid);
  }
  replica.probe.reset();
  uv_timer_stop(replica.kill_timer.get());
  replica.last_exit = DescribeExit(exit_status, term_signal);
  bool failed = exit_status != 0 || term_signal != 0;
  if (run.open_pipes > 0) {
    replica.draining.push_back(std::move(replica.run));
  } else {
    finished_runs_.push_back(std::move(replica.run));
    ScheduleReap();
  }
  PersistTable();
  if (replica.stopping) {
    SetReady(replica, false);
    ReplicaStopped(replica);
    return;
  }
  SetReady(replica, false);

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
    replica.reason = failed ? "Error" : "Completed";
    return;
  }
  // Backoff: initial, doubled per consecutive crash, capped; a run of at
  // least backoff_reset_ms forgets the earlier crashes.
  if (NowMs(loop_) - replica.last_started_ms >= options_.backoff_reset_ms)
    replica.consecutive_crashes = 0;
  uint64_t delay = options_.backoff_initial_ms;
  for (uint32_t i = 0; i < replica.consecutive_crashes && delay < options_.backoff_max_ms; ++i)
    delay *= 2;
  delay = std::min(delay, options_.backoff_max_ms);
  ++replica.consecutive_crashes;
  replica.waiting_restart = true;
  if (replica.reason.empty()) replica.reason = "CrashLoopBackOff";
  replica.restart_timer->data = &replica;
  uv_timer_start(
      replica.restart_timer.get(),
      [](uv_timer_t* timer) {
        auto* replica = static_cast<Replica*>(timer->data);
        if (replica == nullptr || replica->stopping) return;
        ++replica->restarts;
        ++replica->supervisor->restarts_total_;
        replica->supervisor->StartProcess(*replica);
      },
      delay, 0);
}

void Supervisor::Retire(std::unique_ptr<Replica> replica) {
  Replica& ref = *replica;
  terminating_.push_back(std::move(replica));
  BeginStop(ref);
}

void Supervisor::BeginStop(Replica& replica) {
  if (replica.stopping) return;
  replica.stopping = true;
  replica.waiting_restart = false;
  // Reported at once: a changed replica's successor may already be starting
  // at the same address, and this one's late exit must not mark it unready.
  SetReady(replica, false);
  uv_timer_stop(replica.restart_timer.get());
  replica.probe.reset();
  if (!replica.run || replica.run->exited) {
    SetReady(replica, false);
    ReplicaStopped(replica);
    return;
  }
  pid_t pid = replica.run->pid;
  ::kill(-pid, SIGTERM);
  uint64_t grace_ms = options_.grace_period_ms
                          ? *options_.grace_period_ms
                          : uint64_t{replica.spec.app.termination_grace_period_seconds} * 1000;
  replica.kill_timer->data = &replica;
  uv_timer_start(
      replica.kill_timer.get(),
      [](uv_timer_t* timer) {
        auto* replica = static_cast<Replica*>(timer->data);
        if (replica == nullptr || !replica->run || replica->run->exited) return;
        Log(replica->spec.ns + "/" + replica->spec.replica +
            ": grace period over, sending SIGKILL to process group " +
            std::to_string(replica->run->pid));
        ::kill(-replica->run->pid, SIGKILL);
      },
      grace_ms, 0);
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

void Supervisor::ScheduleReap() {
  uv_timer_start(
      reap_timer_.get(),
      [](uv_timer_t* timer) {
        auto* self = static_cast<Supervisor*>(timer->data);
        if (self == nullptr) return;
        self->reap_.clear();
        self->DropLogs();
        std::erase_if(self->finished_runs_, [](const auto& run) { return run->open_pipes == 0; });
        auto drained = [](const std::unique_ptr<Run>& run) { return run->open_pipes == 0; };
        for (auto& [address, replica] : self->replicas_) std::erase_if(replica->draining, drained);
        for (auto& replica : self->terminating_) std::erase_if(replica->draining, drained);
      },
      0, 0);
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
    logs_.erase(dir);
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
  bool running = replica->run && !replica->run->exited;
  status.state = replica->stopping ? "Terminating" : running ? "Running" : "Waiting";
  status.reason = running ? "" : replica->reason;
  status.ready = replica->ready;
  status.restarts = replica->restarts;
  status.last_exit = replica->last_exit;
  status.pid = running ? replica->run->pid : 0;
  if (running) {
    const uint64_t ran_ms = NowMs(loop_) - replica->last_started_ms;
    status.started_at = static_cast<int64_t>(::time(nullptr)) - static_cast<int64_t>(ran_ms / 1000);
  }
  return status;
}

const ExecReplicaSpec* Supervisor::Spec(uint32_t address) const {
  auto it = replicas_.find(address);
  return it == replicas_.end() ? nullptr : &it->second->spec;
}

std::optional<uint32_t> Supervisor::ReplicaOfPid(pid_t pid) const {
  // pid -> replica of every running process.
  std::map<pid_t, const Replica*> by_pid;
  for (const auto& [address, replica] : replicas_) {
    if (replica->run && !replica->run->exited) by_pid[replica->run->pid] = replica.get();
  }
  if (by_pid.empty()) return std::nullopt;
  // Walk the parent chain; every step compares start times, so a pid that
  // was reused after its process died never matches.
  pid_t current = pid;
  for (int depth = 0; depth < 64 && current > 1; ++depth) {
    auto stat = ReadProcStat(current);
    if (!stat) return std::nullopt;
    auto it = by_pid.find(current);
    if (it != by_pid.end() && it->second->run->start_time == stat->start_time) {
      return it->second->spec.address;
    }
    current = stat->ppid;
  }
  return std::nullopt;
}

size_t Supervisor::running_count() const {
  size_t count = 0;
  for (const auto& [address, replica] : replicas_) count += replica->run && !replica->run->exited;
  for (const auto& replica : terminating_) count += replica->run && !replica->run->exited;
  return count;
}

}  // namespace podless::runtime

namespace podless::runtime {

namespace {

uint16_t PortOf(const std::string& host_port) {
  size_t colon = host_port.rfind(':');
  return colon == std::string::npos
             ? 0
             : static_cast<uint16_t>(std::strtoul(host_port.c_str() + colon + 1, nullptr, 10));
}

// mkdir that accepts an existing directory and makes its mode exact.
podless::Status MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot create " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition, path + " is not a directory");
  }
  if (::chmod(path.c_str(), mode) != 0) {
    return MakeError(ErrorCode::kUnavailable, "cannot chmod " + path + ": " + std::strerror(errno));
  }
  return {};
}

// What a process of an agent that is not root may read: the system, not the
// home directories or the agent's state dir.
const char* const kSystemReadPaths[] = {"/usr",    "/bin", "/sbin", "/lib",  "/lib32", "/lib64",
                                        "/libx32", "/etc", "/opt",  "/proc", "/sys",   "/run"};
const char* const kSystemWritePaths[] = {"/tmp", "/var/tmp", "/dev"};

}  // namespace

std::string ReplicaWorkDir(const std::string& state_dir, const std::string& ns,
                           const std::string& replica) {
  return state_dir + "/sandboxes/" + ns + "/" + replica;
}

podless::Status Supervisor::CheckEnforceable(const workloads::ExecApp& app,
                                             std::vector<std::string>* warnings) const {
  if (!options_.sandbox) return {};
  const workloads::ExecSandbox& sandbox = *app.sandbox;
  const workloads::SecurityContext& context = sandbox.security_context;
  const workloads::ResourceLimits& limits = sandbox.limits;
  const bool root = NetworkNamespaces();
  const std::string agent_uid = std::to_string(::geteuid());
  if (!root && (context.run_as_user || context.run_as_group)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     std::string("exec.securityContext.") +
                         (context.run_as_user ? "runAsUser" : "runAsGroup") +
                         ": the agent runs as uid " + agent_uid +
                         ", not root, and cannot start processes as another user");
  }
  if (!root && context.run_as_non_root.value_or(false) && ::geteuid() == 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "exec.securityContext.runAsNonRoot: the process would run as root");
  }
  auto cgroup_offers = [this](const char* controller) {
    return options_.cgroups != nullptr && options_.cgroups->Supports(controller);
  };
  auto why_not = [this](const char* controller) {
    return options_.cgroups != nullptr ? options_.cgroups->WhyNot(controller)
                                       : std::string("cgroup v2 is not usable by the agent");
  };
  if (limits.cpu_millis != 0 && !cgroup_offers("cpu")) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "exec.resources.limits.cpu: cannot be enforced on this node (" +
                         why_not("cpu") + "; no rlimit bounds a CPU share)");
  }
  if (limits.pids != 0 && !cgroup_offers("pids") && !root) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "exec.resources.limits.pids: cannot be enforced on this node (" +
                         why_not("pids") + "; RLIMIT_NPROC would count every process of uid " +
                         agent_uid + ", the agent's own included)");
  }
  if (limits.memory_bytes != 0 && !cgroup_offers("memory")) {
    warnings->push_back(
        "exec.resources.limits.memory is enforced as RLIMIT_AS (address space, "
        "per process), not a cgroup memory limit: " +
        why_not("memory"));
  }
  if (limits.pids != 0 && !cgroup_offers("pids")) {
    warnings->push_back(
        "exec.resources.limits.pids is enforced as RLIMIT_NPROC of the "
        "workload's uid (all its replicas together): " +
        why_not("pids"));
  }
  if (root && context.run_as_user == 0u) {
    warnings->push_back(
        "exec.securityContext.runAsUser 0: the process runs as root (without "
        "capabilities) and can read the agent's state, its CA key included");
  }
  if (!root) {
    auto warn_if_under = [&](const char* open_path) {
      if (options_.state_dir.rfind(std::string(open_path) + "/", 0) != 0) return;
      warnings->push_back("the agent's state dir " + options_.state_dir + " lies under " +
                          open_path +
                          ", which Landlock leaves open to processes: they can read it (run "
                          "the agent with a --state-dir elsewhere, e.g. under /var/lib)");
    };
    for (const char* path : kSystemReadPaths) warn_if_under(path);
    for (const char* path : kSystemWritePaths) warn_if_under(path);
    warnings->push_back(
        "the agent runs as uid " + agent_uid +
        ", not root: the process shares its uid and network namespace; Landlock ABI " +
        std::to_string(LandlockAbi()) +
        " confines it to the system directories, /tmp, its working directories" +
        (LandlockAbi() >= 4 ? " and its own TCP ports" : "") + " (README, Isolation)");
  }
  return {};
}

podless::Status Supervisor::PrepareSandbox(Replica& replica) {
  const ExecReplicaSpec& spec = replica.spec;
  const workloads::ExecSandbox& sandbox = *spec.app.sandbox;
  const workloads::SecurityContext& context = sandbox.security_context;
  if (NetworkNamespaces()) {
    if (context.run_as_user) {
      replica.uid = *context.run_as_user;
    } else {
      auto uid = options_.uids->Acquire(spec.ns + "/" + spec.workload);
      if (!uid) return uid.error();
      replica.uid = *uid;
      replica.uid_allocated = true;
    }
    replica.gid = context.run_as_group.value_or(*replica.uid);
  }
  if (context.run_as_non_root.value_or(false) && replica.uid.value_or(::geteuid()) == 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "securityContext.runAsNonRoot: the process would run as root");
  }
  // <state>/sandboxes/<ns>/<replica>: the parents are the agent's and only
  // traversable (0711), the replica's own directory is its uid's alone.
  const std::string root = options_.state_dir + "/sandboxes";
  for (const std::string& dir : {root, root + "/" + spec.ns}) {
    if (podless::Status s = MakeDir(dir, 0711); !s) return s;
  }
  replica.work_dir = ReplicaWorkDir(options_.state_dir, spec.ns, spec.replica);
  if (podless::Status s = MakeDir(replica.work_dir, 0700); !s) return s;
  if (replica.uid && ::lchown(replica.work_dir.c_str(), *replica.uid, *replica.gid) != 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot chown " + replica.work_dir + ": " + std::strerror(errno));
  }
  if (NetworkNamespaces()) {
    auto netns = proxy::CreateNetworkNamespace();
    if (!netns) return netns.error();
    replica.netns = std::move(*netns);
    const uint16_t outbound_port = PortOf(spec.outbound_proxy);
    if (!spec.proxy_user.empty() && outbound_port != 0) {
      auto listener = proxy::ListenInNamespace(replica.netns.get(), outbound_port);
      if (!listener) return listener.error();
      replica.outbound_listener = std::move(*listener);
    }
  }
  if (options_.cgroups != nullptr) {
    CgroupLimits limits;
    const workloads::ResourceLimits& asked = sandbox.limits;
    if (options_.cgroups->Supports("memory")) limits.memory_bytes = asked.memory_bytes;
    if (options_.cgroups->Supports("cpu")) limits.cpu_millis = asked.cpu_millis;
    if (options_.cgroups->Supports("pids")) limits.pids = asked.pids;
    replica.cgroup_leaf = CgroupLeaf(spec, ++sandbox_instances_);
    auto path = options_.cgroups->CreateReplica(replica.cgroup_leaf, limits);
    if (!path) return path.error();
    replica.cgroup = *path;
  }
  replica.sandboxed = true;
  if (replica.outbound_listener && on_listeners_change_) on_listeners_change_();
  return {};
}

SandboxSpec Supervisor::SandboxFor(const Replica& replica) const {
  const workloads::ExecApp& app = replica.spec.app;
  const workloads::ResourceLimits& limits = app.sandbox->limits;
  SandboxSpec sandbox;
  sandbox.uid = replica.uid;
  sandbox.gid = replica.gid;
  sandbox.netns = static_cast<bool>(replica.netns);
  sandbox.cgroup = replica.cgroup;
  sandbox.work_dir = app.working_dir.empty() ? replica.work_dir : app.working_dir;
  auto cgroup_offers = [this](const char* controller) {
    return options_.cgroups != nullptr && options_.cgroups->Supports(controller);
  };
  if (!cgroup_offers("memory")) sandbox.rlimit_as = limits.memory_bytes;
  if (!cgroup_offers("pids")) sandbox.rlimit_nproc = limits.pids;
  sandbox.rlimit_nofile = options_.rlimit_nofile;
  if (!NetworkNamespaces()) {
    // No uid and no namespace of its own: Landlock keeps it out of the
    // agent's files and off other replicas' ports.
    for (const char* path : kSystemReadPaths) sandbox.read_paths.push_back(path);
    for (const char* path : kSystemWritePaths) sandbox.write_paths.push_back(path);
    sandbox.write_paths.push_back(replica.work_dir);
    if (!app.working_dir.empty()) sandbox.write_paths.push_back(app.working_dir);
    sandbox.restrict_tcp = true;
    sandbox.bind_ports = replica.private_ports;
    if (uint16_t port = PortOf(replica.spec.outbound_proxy); port != 0)
      sandbox.connect_ports.push_back(port);
  }
  return sandbox;
}

void Supervisor::RemoveSandbox(Replica& replica) {
  if (!replica.cgroup.empty()) {
    const std::string leaf = replica.cgroup_leaf;
    if (podless::Status s = options_.cgroups->Kill(leaf); !s) Log(s.error().message);
    // The kernel empties a killed cgroup asynchronously: a leftover is
    // removed by the next agent's start (KillOrphans).
    for (int attempt = 0; attempt < 100 && !options_.cgroups->Empty(leaf); ++attempt)
      ::usleep(1000);
    // Busy while a killed process is still exiting: the next agent's start
    // removes it then (KillOrphans).
    (void)options_.cgroups->Remove(leaf);
    replica.cgroup.clear();
  }
  replica.outbound_listener.reset();
  replica.netns.reset();
  replica.sandboxed = false;
  // A replica that is gone (not replaced by a changed one of the same name)
  // takes its working directory and its logs with it.
  const std::string& ns = replica.spec.ns;
  const std::string& name = replica.spec.replica;
  for (const auto& [address, other] : replicas_) {
    if (other.get() != &replica && other->spec.ns == ns && other->spec.replica == name) return;
  }
  std::error_code ec;
  if (!replica.work_dir.empty() && !replica.spec.app.sandbox->keep_working_dir)
    std::filesystem::remove_all(replica.work_dir, ec);
  if (replica.stopping) dropped_logs_.push_back(LogDir(ns, name));
}

}  // namespace podless::runtime
