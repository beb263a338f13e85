// CgroupTree: one cgroup v2 per process replica, under a subtree of the
// agent's own cgroup. A cgroup holds every descendant of the processes put in
// it, whatever they do (a setsid double-fork leaves the process group and the
// session, never the cgroup), so the agent can list and kill a replica's whole
// process tree, and limit its memory, CPU and pids where the controllers are
// delegated to it.
//
//   <mount>/<own>/<name>/<leaf>     e.g. /sys/fs/cgroup/system.slice/
//                                        podless.service/podless-1a2b3c4d/default_2fweb-0
//
// Design decisions:
// - Where. The cgroup2 mount comes from /proc/self/mountinfo (fstype cgroup2:
//   /sys/fs/cgroup on a pure v2 system, /sys/fs/cgroup/unified on a hybrid
//   one), the agent's own cgroup from the "0::" line of /proc/self/cgroup. The
//   subtree is created (or reused, after a restart) at Open; the caller picks
//   its name, unique per agent (e.g. from a hash of the state directory).
// - Controllers and the no-internal-process rule. cgroup v2 lets a non-root
//   cgroup give controllers to its children only while it holds no processes
//   itself, and the agent's own cgroup holds the agent. Open does not move the
//   agent (or any process) out of it: the move takes the whole process, every
//   thread, a side effect its callers (a test binary among them) do not
//   expect; it would not be enough while other processes stay behind (children
//   started before, a service's helpers); and this host could not test it
//   (the agent's cgroup is the root, which the rule exempts). So Open enables
//   "memory", "cpu" and "pids" in the own cgroup's subtree_control only where
//   the kernel allows it as things are, then in the subtree's, and reports
//   every other controller as unsupported with the reason (WhyNot), which the
//   caller logs before falling back to rlimits. In effect limits are enforced
//   when the agent runs in the root cgroup of a hierarchy that has the
//   controllers (a pure v2 host, the agent outside any service's cgroup);
//   elsewhere the replicas' cgroups still track and kill. The next step, if
//   limits are wanted under a service manager: move the agent into a leaf
//   "<own>/agent" at start, before it has children (what systemd's
//   DelegateSubgroup= does), so that <own> holds no process. Each controller
//   is enabled on its own: one that fails does not take the others with it.
// - Leaf names. A replica key ("<namespace>/<replica>") is escaped one-to-one
//   into a directory name: [A-Za-z0-9-] stay, every other byte becomes "_xx"
//   (lower-case hex). No escaped name contains '/' or '.', so none is "." or
//   "..", and none collides with a cgroup interface file ("cgroup.procs",
//   "memory.max": they all have a dot). Leaves() unescapes them back.
// - Kill. cgroup.kill (Linux 5.14+) SIGKILLs every process of the cgroup at
//   once, forks in flight included, and Kill returns once it is written: the
//   processes leave cgroup.procs as they exit, moments later (poll Empty(),
//   then Remove()). On older kernels Kill reads cgroup.procs and SIGKILLs every
//   pid listed, round after round, until the list is empty (a bounded number
//   of rounds, 1 ms apart when a round finds nothing new: ~100 ms at most). A
//   process with SIGKILL pending cannot finish a fork, so once a round lists
//   no new pid nothing can escape, even if a process is slow to die.
// - Out of memory. Where memory is supported, a replica's memory.oom.group is
//   1: the kernel's OOM killer takes the whole replica, as it does a
//   container, rather than leaving it without one of its processes.
// - Blocking. Every call is a few small reads or writes of cgroupfs, which the
//   kernel answers from memory: fine on the agent's loop.
//
//   auto tree = CgroupTree::Open("podless-1a2b3c4d");
//   if (!tree.ok()) { /* log tree.error().message; use process groups */ }
//   Result<std::string> path = tree->CreateReplica("default/web-0", {.pids = 512});
//   // The child joins it before exec, while still privileged: it writes "0"
//   // to <path>/cgroup.procs (SandboxSpec::cgroup = *path, runtime/process/sandbox.h).
//   ...
//   tree->Kill("default/web-0");  // later: Empty(), then Remove()
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/result.h"

namespace podless::runtime {

// A replica's limits; 0 leaves the resource unlimited.
struct CgroupLimits {
  uint64_t memory_bytes = 0;  // memory.max
  // cpu.max, in thousandths of a CPU per 100 ms period. The kernel's smallest
  // quota is 1 ms per period, so anything under 10 is raised to 10.
  uint32_t cpu_millis = 0;
  uint32_t pids = 0;  // pids.max
};

class CgroupTree {
 public:
  // Creates (or reuses) the subtree <own cgroup>/<name> and enables the
  // controllers it can (see above). `name` is a plain directory name. An error
  // says why cgroup v2 cannot be used (no cgroup2 mount, no "0::" line, not
  // writable, ...); the caller then falls back to process groups.
  static Result<CgroupTree> Open(std::string name);

  // Whether limits of `controller` ("memory", "cpu" or "pids") are enforced in
  // the replicas' cgroups; if not, WhyNot says why ("" when supported).
  bool Supports(std::string_view controller) const;
  std::string WhyNot(std::string_view controller) const;

  // Creates (or reuses) the cgroup of replica `leaf` and sets its limits: each
  // nonzero limit is written, each zero one is reset to "max" where its
  // controller is supported. FAILED_PRECONDITION, naming the controller and why,
  // if a nonzero limit's controller is not supported. Returns the cgroup's
  // absolute path: a process joins it by writing its pid (or "0", itself) to
  // "<path>/cgroup.procs".
  Result<std::string> CreateReplica(const std::string& leaf, const CgroupLimits& limits);

  // Every process in the replica's cgroup (empty if it does not exist).
  std::vector<pid_t> Pids(const std::string& leaf) const;
  // SIGKILLs every process in the replica's cgroup (see Kill above). A cgroup
  // that does not exist has nothing to kill.
  Status Kill(const std::string& leaf);
  // True when the cgroup has no process left, or does not exist.
  bool Empty(const std::string& leaf) const;
  // Removes the replica's cgroup; UNAVAILABLE (EBUSY) while processes remain.
  // A cgroup that does not exist is already removed.
  Status Remove(const std::string& leaf);
  // The replicas whose cgroups exist (e.g. those a previous agent left: kill
  // and remove them at start), as the keys CreateReplica was given.
  std::vector<std::string> Leaves() const;
  // Removes the subtree itself; UNAVAILABLE (EBUSY) while a replica's cgroup
  // remains. For an agent that shuts down with nothing left running, and tests.
  Status RemoveTree();

  // The subtree's absolute path, e.g. /sys/fs/cgroup/unified/podless-1a2b3c4d.
  const std::string& path() const { return path_; }

  // Kill on kernels without cgroup.kill, for tests of that path.
  void UseKillLoopForTesting() { has_cgroup_kill_ = false; }

 private:
  // The controllers CreateReplica can limit, in this order.
  static constexpr std::array<std::string_view, 3> kControllers = {"memory", "cpu", "pids"};

  explicit CgroupTree(std::string path) : path_(std::move(path)) {}

  void EnableControllers(const std::string& own);
  Status KillByListing(const std::string& dir);
  // The absolute path of `leaf`'s cgroup, "" for a leaf whose escaped name
  // is empty or longer than a directory name can be (no cgroup has it).
  std::string LeafPath(const std::string& leaf) const;
  // -1 if `controller` is not one of kControllers.
  static int ControllerIndex(std::string_view controller);

  std::string path_;
  // Per kControllers entry: "" if supported, else why not.
  std::array<std::string, 3> why_not_;
  bool has_cgroup_kill_ = true;
};

// The cgroup directory name for a replica key, and back (unescaping fails,
// returning "", on a name that EscapeCgroupLeaf cannot produce).
std::string EscapeCgroupLeaf(std::string_view leaf);
std::string UnescapeCgroupLeaf(std::string_view name);

}  // namespace podless::runtime
