// The sandbox of a process replica: what the agent's child does between
// fork and the workload's exec.
//
// libuv's uv_spawn has no hook between fork and exec, so the supervisor
// spawns the agent's own binary as a launcher (`podless __sandbox FLAGS --
// COMMAND...`, the way runc runs `runc init`). The launcher, still the same
// process (pid, start time and so SO_PEERCRED attestation unchanged), in
// this order:
//   1. joins the replica's cgroup (its whole subtree is tracked there);
//   2. enters the replica's network namespace (descriptor 3);
//   3. sets rlimits (core 0, and the memory/pids fallbacks of the limits);
//   4. enters the private working directory;
//   5. drops privileges: no supplementary groups, the replica's gid and uid
//      (which clears every capability), an empty bounding set; a workload
//      that asked for root keeps uid 0 but no capability;
//   6. sets no_new_privs (no setuid binary gives them back);
//   7. restricts itself with Landlock: signals and abstract Unix sockets
//      scoped to its own domain (ABI 6), and, for an agent that is not root
//      and so cannot give a uid or a namespace, the filesystem and TCP ports
//      (ABI 1 and 4) it may use;
//   8. closes every descriptor above 2 and execs the command (PATH search in
//      the workload's environment).
// A step that fails prints "podless: sandbox: <step>: <reason>" on stderr
// (the replica's log) and exits 127: never a half-built sandbox.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "workloads/result.h"

namespace podless::runtime {

inline constexpr char kSandboxVerb[] = "__sandbox";
inline constexpr int kSandboxNetnsFd = 3;  // where the launcher finds the namespace

struct SandboxSpec {
  std::optional<uid_t> uid;  // none: the agent's (an agent that is not root)
  std::optional<gid_t> gid;
  bool netns = false;           // enter the namespace passed as descriptor 3
  std::string cgroup;           // join this cgroup v2 directory; empty: none
  std::string work_dir;         // chdir here; empty: stay
  uint64_t rlimit_as = 0;       // RLIMIT_AS, bytes; 0: inherited
  uint64_t rlimit_nproc = 0;    // RLIMIT_NPROC; 0: inherited
  uint64_t rlimit_nofile = 0;   // RLIMIT_NOFILE; 0: inherited
  bool landlock_scopes = true;  // scope signals and abstract sockets
  // An agent that is not root: Landlock file and port rules. Empty lists
  // leave that kind of access unrestricted.
  std::vector<std::string> read_paths;   // read and execute beneath
  std::vector<std::string> write_paths;  // read, write, execute beneath
  std::vector<uint16_t> bind_ports;      // with restrict_tcp: the only binds
  std::vector<uint16_t> connect_ports;   // with restrict_tcp: the only connects
  bool restrict_tcp = false;
};

// The launcher's argv: {launcher, "__sandbox", flags..., "--", command...}.
std::vector<std::string> SandboxArgv(const std::string& launcher, const SandboxSpec& spec,
                                     const std::vector<std::string>& command);

// The launcher's side: `args` are what follows "__sandbox". Does not return
// when the command starts; otherwise prints why and returns 127.
int RunSandbox(const std::vector<std::string>& args);

// What Landlock this kernel offers: its ABI version, 0 when none.
int LandlockAbi();

// SIGKILL to every process whose real or saved uid is `uid`: a child takes
// the uid and calls kill(-1), so the kernel walks the process table (a
// double-forked escapee that left its process group is found as well). Root
// only, and only for the uids the agent hands out (UidAllocator: no one else
// runs as them). The supervisor's way to stop escaped children where no
// cgroup contains them.
void KillProcessesOfUid(uid_t uid);

// The path of the running binary (the launcher the supervisor spawns).
std::string SelfExecutable();

}  // namespace podless::runtime
