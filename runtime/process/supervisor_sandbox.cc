#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "proxy/base/log.h"
#include "proxy/base/netns.h"
#include "runtime/process/supervisor.h"
#include "runtime/process/supervisor_parts.h"

// The sandbox half of the Supervisor: what a replica's containers share.
namespace podless::runtime {

namespace {

// cgroup and sandbox names: namespaces and replica names are DNS labels, so
// '_' cannot occur in them and the pair is unique.
// A changed replica's successor starts while it stops, so each instance has
// a cgroup of its own: "<ns>_<replica>_<instance>".
std::string CgroupLeaf(const ExecReplicaSpec& spec, uint64_t instance) {
  return spec.ns + "_" + spec.replica + "_" + std::to_string(instance);
}

uint16_t PortOf(const std::string& host_port) {
  size_t colon = host_port.rfind(':');
  return colon == std::string::npos
             ? 0
             : static_cast<uint16_t>(std::strtoul(host_port.c_str() + colon + 1, nullptr, 10));
}

}  // namespace

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

namespace {

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

SandboxSpec Supervisor::SandboxFor(const Replica& replica, const std::string& working_dir) const {
  const workloads::ExecApp& app = replica.spec.app;
  const workloads::ResourceLimits& limits = app.sandbox->limits;
  SandboxSpec sandbox;
  sandbox.uid = replica.uid;
  sandbox.gid = replica.gid;
  sandbox.netns = static_cast<bool>(replica.netns);
  sandbox.cgroup = replica.cgroup;
  // Every container shares the replica's working directory unless it names
  // its own (workingDir).
  sandbox.work_dir = working_dir.empty() ? replica.work_dir : working_dir;
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
    if (!working_dir.empty()) sandbox.write_paths.push_back(working_dir);
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
    if (podless::Status s = options_.cgroups->Kill(leaf); !s) SupervisorLog(s.error().message);
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
