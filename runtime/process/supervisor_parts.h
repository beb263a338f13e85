// The supervisor's private parts, shared by supervisor.cc (processes) and
// supervisor_sandbox.cc (the sandbox of a replica). Not for other users.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/process/supervisor.h"

namespace podless::runtime {

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

// One container of a replica: its process, restarts, log and readiness.
struct Supervisor::Container {
  Replica* replica = nullptr;
  workloads::ExecContainer spec;  // name, command, env, workingDir, probe
  LogFile* log = nullptr;
  std::unique_ptr<Run> run;  // null when no process runs
  std::vector<std::unique_ptr<Run>> draining;
  proxy::TimerPtr restart_timer;  // the crash backoff; Supervisor::Restart
  ReadinessProbePtr probe;
  bool ready = false;
  bool waiting_restart = false;
  uint32_t restarts = 0;
  uint32_t consecutive_crashes = 0;
  uint64_t last_started_ms = 0;
  std::string last_exit;
  std::string reason;

  bool running() const { return run && !run->exited; }
};

struct Supervisor::Replica {
  Supervisor* supervisor = nullptr;
  ExecReplicaSpec spec;
  std::vector<uint16_t> private_ports;                 // one per spec.ports entry
  std::vector<std::unique_ptr<Container>> containers;  // the app's own command first
  proxy::TimerPtr kill_timer;  // the grace period; Supervisor::KillRemaining
  bool ready = false;
  bool stopping = false;
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

  bool any_running() const {
    for (const auto& container : containers) {
      if (container->running()) return true;
    }
    return false;
  }
};

// mkdir that accepts an existing directory and makes its mode exact.
podless::Status MakeDir(const std::string& path, mode_t mode);
void SupervisorLog(const std::string& message);

}  // namespace podless::runtime
