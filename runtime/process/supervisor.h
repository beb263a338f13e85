// Supervisor: runs the processes of `exec` workloads, one per replica (one
// per container of a replica with several), the way a kubelet runs
// containers — without a pod or a sidecar.
//
// Design decisions:
// - Where a process listens. Sandboxed by a root agent, in its own network
//   namespace on the declared ports themselves. Otherwise each declared port
//   of the workload gets a private loopback port, allocated once per replica
//   (free at allocation time) and kept across restarts. The process is told PORT (the first
//   declared port's private port, as a number), PORT_<NAME> for named ports
//   (upper case, '-' -> '_'), PORT_<declared number> for every port, and
//   PODLESS_LISTEN_ADDRESS=127.0.0.1. The proxy keeps owning the workload
//   address and forwards the declared port to 127.0.0.1:<private port>
//   (Directory::ExecTarget -> Target()). So the process needs no privileges,
//   and inbound authorization and metrics stay in the proxy.
// - Identity and egress. PODLESS_WORKLOAD, PODLESS_NAMESPACE, PODLESS_REPLICA,
//   PODLESS_SPIFFE_ID, PODLESS_ADDRESS, HTTP_PROXY/HTTPS_PROXY (http://) and
//   ALL_PROXY (socks5h://) with the replica's own proxy credentials (lower
//   case too; NO_PROXY=localhost,127.0.0.1), SPIFFE_ENDPOINT_SOCKET=unix://<absolute path>.
//   The user's `env` comes after these (it may override them) and both the env
//   values and the command accept Kubernetes' `$(VAR)` expansion ($$ escapes,
//   an undefined variable is left as written). Of the agent's own environment
//   only PATH, LANG and TZ are passed on; HOME is the sandbox's working
//   directory (the agent's HOME without a sandbox).
// - Process groups. A child runs detached (setsid: UV_PROCESS_DETACHED), so
//   it leads its own session and process group; stop signals go to the group,
//   and when the main process exits the rest of its group is killed, as a
//   container's processes die with it.
// - Restarts. restartPolicy Always/OnFailure/Never as in Kubernetes, with
//   CrashLoopBackOff's capped exponential backoff (10 s doubling to 5 min;
//   reset after the process ran 10 min), shorter in tests via the options.
// - Stop. SIGTERM to the group, SIGKILL after terminationGracePeriodSeconds.
//   Shutdown() stops every replica this way and calls back when all exited.
// - Orphans. Every child is recorded (pid, start time) in the ProcessTable.
//   After an agent that died without stopping them (kill -9), the new
//   Supervisor kills the recorded process groups that are still the same
//   processes (start time compared, so a reused pid is left alone) before
//   starting anything: an orphan's stdout pipe died with the old agent and a
//   non-parent cannot observe its exit, so it cannot be adopted; it is
//   replaced. Never two processes for one replica.
// - Sandbox (runtime/process/sandbox.h; README "Isolation"). With a root agent
//   every replica runs as its workload's own uid (UidAllocator, or the
//   manifest's securityContext), in a network namespace of its own that
//   holds only loopback, in a private working directory (HOME) under
//   <state_dir>/sandboxes, in a cgroup of its own (CgroupTree) that the
//   whole process subtree cannot leave, with no_new_privs, no capability
//   and Landlock's signal and abstract-socket scopes. Its app listens on the
//   declared port itself (PORT = the declared port): the proxy connects to
//   it inside the namespace, and the outbound entry listens there too, on
//   127.0.0.1:<outbound port>. An agent that is not root cannot give a uid
//   or a namespace: processes run as the agent's uid on private loopback
//   ports as before, confined by Landlock's file and port rules instead.
// - Limits. RLIMIT_CORE is 0 (a crash loop must not fill the disk with
//   cores). resources.limits go to the replica's cgroup where its
//   controllers are delegated, else memory to RLIMIT_AS and pids to
//   RLIMIT_NPROC; a limit that can be neither is refused at apply
//   (CheckEnforceable).
// - Logs. stdout and stderr are read through pipes into the replica's LogFile
//   (runtime/process/log_files.h), rotated, with the previous run kept.
// - Containers. An app with further containers (ExecApp::containers, a
//   Kubernetes pod's containers) runs one process per container in the
//   replica's one sandbox: the same uid, network namespace (they reach each
//   other on 127.0.0.1), cgroup and working directory; the ports belong to
//   the replica. Each container restarts on its own, with its own
//   CrashLoopBackOff backoff (restartPolicy is the app's, as it is the pod's
//   in Kubernetes), its own log (<replica log dir>/<container>/ when there
//   are several; a single container keeps the replica's dir) and its own
//   readiness probe; the replica is ready when every container is (running,
//   and its probe passed if it has one). A container's exit kills its process
//   group; the cgroup (and without one, the workload uid's processes) is
//   killed once no container of the replica runs, since it is shared. Stop
//   sends SIGTERM to every container's group, SIGKILL after the grace period.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "proxy/directory.h"
#include "runtime/process/cgroup_tree.h"
#include "runtime/process/log_files.h"
#include "runtime/process/process_table.h"
#include "runtime/process/readiness_probe.h"
#include "runtime/process/sandbox.h"
#include "runtime/process/uid_allocator.h"
#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::runtime {

// Everything the supervisor needs to run one replica's process. Two specs
// that compare equal run the same process; a change restarts it.
struct ExecReplicaSpec {
  std::string ns;
  std::string workload;
  std::string replica;  // "<workload>-<ordinal>"
  uint32_t ordinal = 0;
  uint32_t address = 0;  // the replica's workload address, host byte order
  std::string spiffe_id;
  workloads::ExecApp app;
  std::vector<workloads::PortSpec> ports;
  // Credentials for the outbound entry (HTTP_PROXY etc.); empty: no proxy env.
  std::string proxy_user;
  std::string proxy_password;
  std::string outbound_proxy = "127.0.0.1:15001";
  std::string workload_api_socket;  // empty: no SPIFFE_ENDPOINT_SOCKET
  bool operator==(const ExecReplicaSpec&) const = default;
};

struct SupervisorOptions {
  std::string state_dir;  // logs under <state_dir>/logs, table in <state_dir>/processes
  uint64_t backoff_initial_ms = 10'000;
  uint64_t backoff_max_ms = 300'000;
  uint64_t backoff_reset_ms = 600'000;  // a run this long forgets earlier crashes
  uint64_t log_max_bytes = 10u << 20;
  // Overrides every app's terminationGracePeriodSeconds when set (tests).
  std::optional<uint64_t> grace_period_ms;
  uint64_t rlimit_nofile = 0;  // the soft RLIMIT_NOFILE; 0: inherited
  // The sandbox. Off: processes run as the agent does (the supervisor's own
  // unit tests; the agent always sandboxes).
  bool sandbox = false;
  // The binary that runs RunSandbox for argv[1] == "__sandbox": the agent's
  // own (SelfExecutable()).
  std::string launcher;
  // Root agent: a uid per workload from here, and a network namespace per
  // replica. Null: the agent's uid, no namespace (an agent that is not root).
  UidAllocator* uids = nullptr;
  // Where each replica's cgroup is made; null: none (cgroup v2 unusable).
  CgroupTree* cgroups = nullptr;
};

// One container's process of a replica.
struct ContainerStatus {
  std::string name;
  std::string state;   // "Running", "Waiting", "Terminating"
  std::string reason;  // "CrashLoopBackOff", "Completed", "Error", "StartError"
  bool ready = false;
  uint32_t restarts = 0;
  std::string last_exit;
  pid_t pid = 0;
  int64_t started_at = 0;
};

// What `get`/`describe` show of a replica's process.
struct ReplicaStatus {
  bool known = false;  // the supervisor runs (or ran) this address
  // "Running", "Waiting" (backoff or not restarted), "Terminating".
  std::string state;
  std::string reason;  // "CrashLoopBackOff", "Completed", "Error", "StartError"
  bool ready = false;
  uint32_t restarts = 0;
  std::string last_exit;   // "exit code 1", "signal 9 (Killed)", or a start error
  pid_t pid = 0;           // 0 when not running
  int64_t started_at = 0;  // unix seconds the current process started; 0 when not running
  // Every container, the app's own command first. The fields above sum them
  // up: restarts summed, state Running when all run, else the first
  // container's that does not (with its reason and last exit); pid and
  // started_at are the first container's.
  std::vector<ContainerStatus> containers;
};

class Supervisor;
using SupervisorPtr = std::unique_ptr<Supervisor>;

class Supervisor {
 public:
  // Stops the orphans a previous agent left (see above). Nothing starts
  // before the first Sync().
  Supervisor(uv_loop_t* loop, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Makes the running set equal `desired` (keyed by address): starts new
  // replicas, stops removed ones, restarts changed ones. Ignored after
  // Shutdown().
  void Sync(std::vector<ExecReplicaSpec> desired);

  // Where the process of the replica at `address` serves declared `port`:
  // 127.0.0.1 (host byte order), the port, and the replica's network
  // namespace when it has one. nullopt: not an exec replica or no such port.
  std::optional<proxy::ProcessTarget> Target(uint32_t address, uint16_t port) const;
  ReplicaStatus Status(uint32_t address) const;

  // Called whenever a replica becomes ready or stops being ready (including
  // when it is stopped).
  void OnReadinessChange(std::function<void(uint32_t address, bool ready)> callback) {
    on_readiness_ = std::move(callback);
  }

  // Called when a replica's outbound listener appears after Sync() returned
  // (a sandbox made on a retried start): OutboundListeners() changed.
  void OnListenersChange(std::function<void()> callback) {
    on_listeners_change_ = std::move(callback);
  }

  // The replica whose process tree `pid` belongs to (its own process or a
  // descendant, checked by parent chain and start times), if any.
  std::optional<uint32_t> ReplicaOfPid(pid_t pid) const;
  bool IsSupervisedPid(pid_t pid) const { return ReplicaOfPid(pid).has_value(); }
  // Whether this supervisor can run `app` as asked: an error names the field
  // it cannot honour (a limit no cgroup or rlimit can enforce, another user
  // for an agent that is not root). `warnings` gets what the sandbox cannot
  // give here (apply shows them).
  podless::Status CheckEnforceable(const workloads::ExecApp& app,
                                   std::vector<std::string>* warnings) const;
  // The outbound entry's listeners inside the replicas' network namespaces,
  // by replica address (the proxy adopts a copy of each).
  std::map<uint32_t, int> OutboundListeners() const;
  // The spec of the replica running at `address`, or null.
  const ExecReplicaSpec* Spec(uint32_t address) const;

  // The live log of a replica's container this supervisor ran, or null
  // (read the files with ReadLog() then). `container` empty: the first one.
  LogFile* FindLog(const std::string& ns, const std::string& replica,
                   const std::string& container = "");
  std::string LogDir(const std::string& ns, const std::string& replica) const {
    return ReplicaLogDir(options_.state_dir, ns, replica);
  }

  // Stops every process (SIGTERM, SIGKILL after the grace period) and calls
  // `done` once all have exited.
  void Shutdown(std::function<void()> done);

  size_t running_count() const;
  uint64_t restarts_total() const { return restarts_total_; }

 private:
  struct Replica;
  struct Container;
  struct Run;
  friend struct Replica;
  friend struct Container;
  friend struct Run;

  // Starts every container of a new replica.
  void StartReplica(Replica& replica);
  void StartProcess(Container& container);
  // A start that failed before the process ran (`run` is its empty run).
  void FailStart(Container& container, std::unique_ptr<Run> run, const std::string& message);
  // A root agent's sandbox: a uid per workload, a namespace per replica.
  bool NetworkNamespaces() const { return options_.sandbox && options_.uids != nullptr; }
  podless::Status PrepareSandbox(Replica& replica);
  SandboxSpec SandboxFor(const Replica& replica, const std::string& working_dir) const;
  void RemoveSandbox(Replica& replica);
  // Deletes the logs of replicas that are gone, once no run writes them.
  void DropLogs();
  void OnExit(Container& container, int64_t exit_status, int term_signal);
  // The crash backoff is over: start the container again.
  void Restart(Container& container);
  void BeginStop(Replica& replica);
  // The grace period is over: SIGKILL what still runs.
  void KillRemaining(Replica& replica);
  // A container's readiness changed: the replica's is every container's.
  void SetContainerReady(Container& container, bool ready);
  void SetReady(Replica& replica, bool ready);
  void Retire(std::unique_ptr<Replica> replica);
  void ReplicaStopped(Replica& replica);
  void ScheduleReap();
  // Frees what ended on earlier turns (replicas, runs whose pipes drained).
  void Reap();
  void PersistTable();
  void KillOrphans();
  // A replica other than `except` of uid `uid` has a running process.
  bool UidInUse(uid_t uid, const Replica* except) const;
  uint16_t AllocatePort();
  LogFile* LogFor(const std::string& dir);

  uv_loop_t* loop_;
  // The readiness probes' connections (proxy::TcpConnector, TcpStream).
  proxy::Dispatcher dispatcher_;
  SupervisorOptions options_;
  ProcessTable table_;
  std::map<uint32_t, std::unique_ptr<Replica>> replicas_;  // by address
  std::vector<std::unique_ptr<Replica>> terminating_;
  std::vector<std::unique_ptr<Replica>> reap_;
  std::vector<std::unique_ptr<Run>> finished_runs_;
  std::map<std::string, LogFilePtr> logs_;  // by log dir
  std::set<uint16_t> ports_in_use_;
  std::function<void(uint32_t, bool)> on_readiness_;
  std::function<void()> shutdown_done_;
  std::function<void()> on_listeners_change_;
  std::vector<std::string> dropped_logs_;
  bool shutting_down_ = false;
  uint64_t restarts_total_ = 0;
  uint64_t sandbox_instances_ = 0;  // names the replicas' cgroups
  proxy::TimerPtr reap_timer_;      // Reap on the next turn
};

// Kubernetes' $(VAR) expansion: "$(NAME)" becomes the value of NAME if it is
// defined, "$$" becomes "$", anything else is kept as written.
std::string ExpandVariables(const std::string& text,
                            const std::map<std::string, std::string>& vars);

// The environment (NAME=value, in order) a replica's process starts with,
// given its private ports (one per spec.ports entry, same order).
// `home`: HOME (the sandbox's working directory); empty: the agent's.
// `env`: the container's own variables; null: the app's (its first container).
std::vector<std::string> BuildEnvironment(const ExecReplicaSpec& spec,
                                          const std::vector<uint16_t>& private_ports,
                                          const std::string& home = "",
                                          const std::vector<workloads::EnvVar>* env = nullptr);

// Where a container's log lives: the replica's log dir itself for an app
// with one container (the layout podless always had), else
// <replica dir>/<container>. nullopt: the app has no such container.
std::optional<std::string> ContainerLogDir(const std::string& replica_dir,
                                           const workloads::ExecApp& app,
                                           const std::string& container);

// <state_dir>/sandboxes/<ns>/<replica>: a sandboxed replica's working directory.
std::string ReplicaWorkDir(const std::string& state_dir, const std::string& ns,
                           const std::string& replica);

}  // namespace podless::runtime
