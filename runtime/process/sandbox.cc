#include "runtime/process/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace podless::runtime {

namespace {

// Landlock's user API (linux/landlock.h), written out here because the
// headers of the build machines predate ABI 4 (ports) and ABI 6 (scopes).
// A struct larger than the kernel knows is accepted when the extra fields
// are zero, so the fields an older kernel lacks are left at zero.
struct LandlockRulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};
struct __attribute__((packed)) LandlockPathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};
struct LandlockNetPortAttr {
  uint64_t allowed_access;
  uint64_t port;
};
constexpr uint32_t kCreateRulesetVersion = 1;
constexpr int kRulePathBeneath = 1;
constexpr int kRuleNetPort = 2;
constexpr uint64_t kFsExecute = 1 << 0;
constexpr uint64_t kFsReadFile = 1 << 2;
constexpr uint64_t kFsReadDir = 1 << 3;
constexpr uint64_t kNetBindTcp = 1 << 0;
constexpr uint64_t kNetConnectTcp = 1 << 1;
constexpr uint64_t kScopeAbstractUnixSocket = 1 << 0;
constexpr uint64_t kScopeSignal = 1 << 1;

// Every filesystem right the kernel's ABI knows: 13 bits in ABI 1, then
// REFER (2), TRUNCATE (3), IOCTL_DEV (5).
uint64_t FsRights(int abi) {
  uint64_t rights = (1ull << 13) - 1;
  if (abi >= 2) rights |= 1ull << 13;
  if (abi >= 3) rights |= 1ull << 14;
  if (abi >= 5) rights |= 1ull << 15;
  return rights;
}
// The rights that apply to a file (not a directory) beneath-rule.
constexpr uint64_t kFileRights = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15);

int Fail(const std::string& step, int err) {
  std::fprintf(stderr, "podless: sandbox: %s: %s\n", step.c_str(), std::strerror(err));
  return 127;
}

bool ParseNumber(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = value;
  return true;
}

int AddPathRule(int ruleset, const std::string& path, uint64_t rights) {
  int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : errno;  // a missing system dir is no error
  struct stat st {};
  if (::fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) rights &= kFileRights;
  LandlockPathBeneathAttr rule{rights, fd};
  int rc = static_cast<int>(::syscall(SYS_landlock_add_rule, ruleset, kRulePathBeneath, &rule, 0));
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

int ApplyLandlock(const SandboxSpec& spec, std::string* step) {
  const int abi = LandlockAbi();
  const bool restrict_fs = !spec.read_paths.empty() || !spec.write_paths.empty();
  LandlockRulesetAttr attr{};
  if (spec.landlock_scopes && abi >= 6) attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
  if (restrict_fs && abi >= 1) attr.handled_access_fs = FsRights(abi);
  if (spec.restrict_tcp && abi >= 4) attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
  if (attr.scoped == 0 && attr.handled_access_fs == 0 && attr.handled_access_net == 0) return 0;
  *step = "landlock_create_ruleset";
  int ruleset = static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0));
  if (ruleset < 0) return errno;
  int err = 0;
  if (attr.handled_access_fs != 0) {
    for (const auto& path : spec.read_paths) {
      *step = "landlock rule for " + path;
      if (err == 0) err = AddPathRule(ruleset, path, kFsExecute | kFsReadFile | kFsReadDir);
    }
    for (const auto& path : spec.write_paths) {
      *step = "landlock rule for " + path;
      if (err == 0) err = AddPathRule(ruleset, path, attr.handled_access_fs);
    }
  }
  if (attr.handled_access_net != 0) {
    auto add_port = [&](uint16_t port, uint64_t access) {
      LandlockNetPortAttr rule{access, port};
      *step = "landlock rule for port " + std::to_string(port);
      if (err == 0 && ::syscall(SYS_landlock_add_rule, ruleset, kRuleNetPort, &rule, 0) != 0)
        err = errno;
    };
    for (uint16_t port : spec.bind_ports) add_port(port, kNetBindTcp);
    for (uint16_t port : spec.connect_ports) add_port(port, kNetConnectTcp);
  }
  if (err == 0) {
    *step = "landlock_restrict_self";
    if (::syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) err = errno;
  }
  ::close(ruleset);
  return err;
}

// Root without a single capability: empty bounding, ambient, inheritable,
// permitted and effective sets.
int DropCapabilities() {
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capset, &header, data) != 0) return errno;
  return 0;
}

int WriteFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) ? 0 : errno;
  ::close(fd);
  return err;
}

}  // namespace

int LandlockAbi() {
  long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

std::string SelfExecutable() {
  char path[4096];
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  return n <= 0 ? std::string() : std::string(path, static_cast<size_t>(n));
}

std::vector<std::string> SandboxArgv(const std::string& launcher, const SandboxSpec& spec,
                                     const std::vector<std::string>& command) {
  std::vector<std::string> argv{launcher, kSandboxVerb};
  auto flag = [&argv](const char* name, const std::string& value) {
    argv.push_back(name);
    argv.push_back(value);
  };
  if (spec.uid) flag("--uid", std::to_string(*spec.uid));
  if (spec.gid) flag("--gid", std::to_string(*spec.gid));
  if (spec.netns) argv.push_back("--netns");
  if (!spec.cgroup.empty()) flag("--cgroup", spec.cgroup);
  if (!spec.work_dir.empty()) flag("--workdir", spec.work_dir);
  if (spec.rlimit_as != 0) flag("--rlimit-as", std::to_string(spec.rlimit_as));
  if (spec.rlimit_nproc != 0) flag("--rlimit-nproc", std::to_string(spec.rlimit_nproc));
  if (spec.rlimit_nofile != 0) flag("--rlimit-nofile", std::to_string(spec.rlimit_nofile));
  if (!spec.landlock_scopes) argv.push_back("--no-scopes");
  for (const auto& path : spec.read_paths) flag("--read", path);
  for (const auto& path : spec.write_paths) flag("--write", path);
  if (spec.restrict_tcp) argv.push_back("--restrict-tcp");
  for (uint16_t port : spec.bind_ports) flag("--bind", std::to_string(port));
  for (uint16_t port : spec.connect_ports) flag("--connect", std::to_string(port));
  argv.push_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

int RunSandbox(const std::vector<std::string>& args) {
  SandboxSpec spec;
  size_t i = 0;
  for (; i < args.size() && args[i] != "--"; ++i) {
    const std::string& name = args[i];
    bool has_value = i + 1 < args.size();
    uint64_t number = 0;
    auto value = [&]() -> const std::string& { return args[++i]; };
    auto port = [&]() {
      return has_value && ParseNumber(value(), &number) && number > 0 && number <= 65535;
    };
    if (name == "--netns") {
      spec.netns = true;
    } else if (name == "--no-scopes") {
      spec.landlock_scopes = false;
    } else if (name == "--restrict-tcp") {
      spec.restrict_tcp = true;
    } else if (!has_value) {
      return Fail("flag " + name, EINVAL);
    } else if (name == "--uid" || name == "--gid") {
      if (!ParseNumber(value(), &number) || number >= 0xffffffffu) return Fail(name, EINVAL);
      (name == "--uid" ? spec.uid : spec.gid) = static_cast<uint32_t>(number);
    } else if (name == "--cgroup") {
      spec.cgroup = value();
    } else if (name == "--workdir") {
      spec.work_dir = value();
    } else if (name == "--read") {
      spec.read_paths.push_back(value());
    } else if (name == "--write") {
      spec.write_paths.push_back(value());
    } else if (name == "--bind" || name == "--connect") {
      if (!port()) return Fail(name, EINVAL);
      (name == "--bind" ? spec.bind_ports : spec.connect_ports).push_back(number);
    } else if (name == "--rlimit-as" || name == "--rlimit-nproc" || name == "--rlimit-nofile") {
      if (!ParseNumber(value(), &number)) return Fail(name, EINVAL);
      (name == "--rlimit-as"      ? spec.rlimit_as
       : name == "--rlimit-nproc" ? spec.rlimit_nproc
                                  : spec.rlimit_nofile) = number;
    } else {
      return Fail("unknown flag " + name, EINVAL);
    }
  }
  if (i + 1 >= args.size()) return Fail("no command", EINVAL);
  std::vector<char*> argv;
  for (size_t j = i + 1; j < args.size(); ++j) argv.push_back(const_cast<char*>(args[j].c_str()));
  argv.push_back(nullptr);

  // 1. The cgroup, while still privileged.
  if (!spec.cgroup.empty()) {
    if (int err = WriteFile(spec.cgroup + "/cgroup.procs", "0\n"); err != 0)
      return Fail("join cgroup " + spec.cgroup, err);
  }
  // 2. The network namespace.
  if (spec.netns) {
    if (::setns(kSandboxNetnsFd, CLONE_NEWNET) != 0) return Fail("setns", errno);
    ::close(kSandboxNetnsFd);
  }
  // 3. Limits. A crash loop must not fill the disk with cores.
  auto set_limit = [](int resource, uint64_t value) {
    rlimit limit{value, value};
    return ::setrlimit(resource, &limit) == 0 ? 0 : errno;
  };
  if (int err = set_limit(RLIMIT_CORE, 0); err != 0) return Fail("RLIMIT_CORE", err);
  if (spec.rlimit_as != 0) {
    if (int err = set_limit(RLIMIT_AS, spec.rlimit_as); err != 0) return Fail("RLIMIT_AS", err);
  }
  if (spec.rlimit_nproc != 0) {
    if (int err = set_limit(RLIMIT_NPROC, spec.rlimit_nproc); err != 0)
      return Fail("RLIMIT_NPROC", err);
  }
  if (spec.rlimit_nofile != 0) {
    // The soft limit only: a workload that needs more may raise it up to
    // the hard limit, as any process may.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return Fail("RLIMIT_NOFILE", errno);
    files.rlim_cur = std::min<rlim_t>(spec.rlimit_nofile, files.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0) return Fail("RLIMIT_NOFILE", errno);
  }

  // 4. The working directory (as root: it is the replica's own 0700 dir,
  //    which root may enter whoever owns it).
  if (!spec.work_dir.empty() && ::chdir(spec.work_dir.c_str()) != 0)
    return Fail("chdir " + spec.work_dir, errno);
  // 5. The user.
  if (spec.uid) {
    gid_t gid = spec.gid.value_or(*spec.uid);
    // The bounding set first (dropping it needs CAP_SETPCAP), then the ids
    // (they need CAP_SETGID/CAP_SETUID); a uid other than 0 then has no
    // capability left, and uid 0 gives up the rest explicitly.
    for (int cap = 0; cap <= 63; ++cap) ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    if (::setgroups(0, nullptr) != 0) return Fail("setgroups", errno);
    if (::setresgid(gid, gid, gid) != 0) return Fail("setresgid " + std::to_string(gid), errno);
    if (::setresuid(*spec.uid, *spec.uid, *spec.uid) != 0)
      return Fail("setresuid " + std::to_string(*spec.uid), errno);
    if (*spec.uid == 0) {
      if (int err = DropCapabilities(); err != 0) return Fail("drop capabilities", err);
    }
  }
  // 6. No privilege comes back through exec.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Fail("no_new_privs", errno);
  // 7. Landlock.
  std::string step;
  if (int err = ApplyLandlock(spec, &step); err != 0) return Fail(step, err);
  // 8. Nothing of the agent's leaks into the workload.
  ::syscall(SYS_close_range, 3u, ~0u, 0u);
  ::execvp(argv[0], argv.data());
  return Fail("exec " + std::string(argv[0]), errno);
}

void KillProcessesOfUid(uid_t uid) {
  const pid_t child = ::fork();
  if (child == 0) {
    // Only async-signal-safe calls here: the agent has threads.
    if (::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(1);
    // Again while anything is left to signal (a process that forked during
    // the walk); exiting processes still count, hence the bound.
    for (int round = 0; round < 8 && ::kill(-1, SIGKILL) == 0; ++round) {
    }
    ::_exit(0);
  }
  if (child < 0) return;
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace podless::runtime
