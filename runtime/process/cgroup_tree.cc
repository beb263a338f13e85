#include "runtime/process/cgroup_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <optional>
#include <set>

namespace podless::runtime {
namespace {

// The period cpu.max quotas are expressed in, and the kernel's smallest quota.
constexpr uint64_t kCpuPeriodMicros = 100000;
constexpr uint64_t kCpuMinQuotaMicros = 1000;
// Kill without cgroup.kill: how many rounds of reading cgroup.procs, and the
// pause when a round finds only processes it already signalled (they are
// exiting).
constexpr int kKillRounds = 100;
constexpr long kKillPauseNanos = 1000000;
constexpr size_t kMaxNameBytes = 255;

Error OsError(ErrorCode code, const std::string& what, int err) {
  return MakeError(code, what + ": " + std::strerror(err));
}

// The whole of a small cgroupfs or procfs file; nullopt (errno set) if it
// cannot be read.
std::optional<std::string> ReadText(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      errno = err;
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// Writes `text` to a cgroupfs file in one write(2), which is how the kernel
// takes a value. Returns 0 or an errno.
int WriteText(const std::string& path, std::string_view text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n;
  do {
    n = ::write(fd, text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  if (::close(fd) != 0 && err == 0) err = errno;
  return err;
}

bool HasWord(std::string_view list, std::string_view word) {
  while (!list.empty()) {
    size_t start = list.find_first_not_of(" \n");
    if (start == std::string_view::npos) return false;
    list.remove_prefix(start);
    size_t end = list.find_first_of(" \n");
    if (list.substr(0, end) == word) return true;
    list.remove_prefix(end == std::string_view::npos ? list.size() : end);
  }
  return false;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountPath(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      int value = 0;
      auto [end, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 4, value, 8);
      if (ec == std::errc() && end == text.data() + i + 4) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  while (!line.empty()) {
    size_t end = line.find(' ');
    if (end != 0) fields.push_back(line.substr(0, end));
    line.remove_prefix(end == std::string_view::npos ? line.size() : end + 1);
  }
  return fields;
}

// True if `path` is `prefix` or below it ("/a" holds "/a/b", not "/ab").
bool PathWithin(std::string_view path, std::string_view prefix) {
  if (prefix == "/") return true;
  return path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
}

// The directory of the calling process's own cgroup v2: its "0::" line of
// /proc/self/cgroup, under the cgroup2 mount of /proc/self/mountinfo that
// shows that part of the hierarchy.
Result<std::string> OwnCgroupDirectory() {
  std::optional<std::string> cgroups = ReadText("/proc/self/cgroup");
  if (!cgroups) return OsError(ErrorCode::kUnavailable, "cannot read /proc/self/cgroup", errno);
  std::string own;
  for (std::string_view rest = *cgroups; !rest.empty();) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    if (line.starts_with("0::")) own = std::string(line.substr(3));
  }
  if (own.empty() || own.front() != '/') {
    return MakeError(ErrorCode::kUnavailable,
                     "/proc/self/cgroup has no cgroup v2 (\"0::\") line: the kernel has no "
                     "unified hierarchy");
  }
  if (own.find("/..") != std::string::npos || own.ends_with(" (deleted)")) {
    return MakeError(ErrorCode::kUnavailable,
                     "the agent's cgroup " + own + " is outside its cgroup namespace or deleted");
  }

  std::optional<std::string> mounts = ReadText("/proc/self/mountinfo");
  if (!mounts) return OsError(ErrorCode::kUnavailable, "cannot read /proc/self/mountinfo", errno);
  std::string seen;  // a cgroup2 mount that does not show `own`, for the error
  for (std::string_view rest = *mounts; !rest.empty();) {
    size_t end = rest.find('\n');
    std::vector<std::string_view> fields = Fields(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    // id parent major:minor root mount-point options [optional...] - fstype ...
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 6 || dash == fields.end() || dash + 1 == fields.end() ||
        dash[1] != "cgroup2") {
      continue;
    }
    std::string root = UnescapeMountPath(fields[3]);
    std::string mount_point = UnescapeMountPath(fields[4]);
    if (!PathWithin(own, root)) {
      seen = mount_point;
      continue;
    }
    std::string below = root == "/" ? own : own.substr(root.size());
    std::string dir = mount_point == "/" ? below : mount_point + (below == "/" ? "" : below);
    if (::access((dir + "/cgroup.procs").c_str(), F_OK) != 0) {
      return OsError(ErrorCode::kUnavailable, "the agent's cgroup " + own + " is not at " + dir,
                     errno);
    }
    return dir;
  }
  if (!seen.empty()) {
    return MakeError(ErrorCode::kUnavailable,
                     "the cgroup2 mount at " + seen + " does not show the agent's cgroup " + own);
  }
  return MakeError(ErrorCode::kUnavailable,
                   "no cgroup2 file system is mounted (/proc/self/mountinfo)");
}

bool ValidTreeName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

bool KeptInLeafName(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

std::vector<pid_t> ReadPids(const std::string& dir) {
  std::vector<pid_t> pids;
  std::optional<std::string> text = ReadText(dir + "/cgroup.procs");
  if (!text) return pids;
  for (std::string_view rest = *text; !rest.empty();) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    pid_t pid = 0;
    auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), pid);
    if (ec == std::errc() && ptr == line.data() + line.size() && pid > 0) pids.push_back(pid);
  }
  return pids;
}

bool Exists(const std::string& dir) {
  struct stat st;
  return ::stat(dir.c_str(), &st) == 0;
}

}  // namespace

std::string EscapeCgroupLeaf(std::string_view leaf) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name;
  for (char c : leaf) {
    if (KeptInLeafName(c)) {
      name += c;
      continue;
    }
    auto byte = static_cast<unsigned char>(c);
    name += '_';
    name += kHex[byte >> 4];
    name += kHex[byte & 0xf];
  }
  return name;
}

std::string UnescapeCgroupLeaf(std::string_view name) {
  std::string leaf;
  for (size_t i = 0; i < name.size(); ++i) {
    if (KeptInLeafName(name[i])) {
      leaf += name[i];
      continue;
    }
    unsigned value = 0;
    if (name[i] != '_' || i + 2 >= name.size()) return {};
    // Only the lower-case form EscapeCgroupLeaf writes, so the mapping stays
    // one-to-one.
    for (char c : name.substr(i + 1, 2)) {
      int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (digit < 0) return {};
      value = value * 16 + static_cast<unsigned>(digit);
    }
    if (KeptInLeafName(static_cast<char>(value))) return {};  // never escaped
    leaf += static_cast<char>(value);
    i += 2;
  }
  return leaf;
}

Result<CgroupTree> CgroupTree::Open(std::string name) {
  if (!ValidTreeName(name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cgroup subtree name \"" + name + "\": use 1 to 255 of [A-Za-z0-9_-]");
  }
  Result<std::string> own = OwnCgroupDirectory();
  if (!own.ok()) return own.error();
  CgroupTree tree(*own + "/" + name);
  if (::mkdir(tree.path_.c_str(), 0755) != 0 && errno != EEXIST) {
    return OsError(ErrorCode::kUnavailable,
                   "cannot create the cgroup " + tree.path_ +
                       " (the agent needs write access to its own cgroup: root, or a cgroup "
                       "delegated to its user)",
                   errno);
  }
  tree.has_cgroup_kill_ = ::access((tree.path_ + "/cgroup.kill").c_str(), F_OK) == 0;
  tree.EnableControllers(*own);
  return tree;
}

void CgroupTree::EnableControllers(const std::string& own) {
  const std::string offered = Trimmed(ReadText(own + "/cgroup.controllers").value_or(""));
  const std::string own_enabled = ReadText(own + "/cgroup.subtree_control").value_or("");
  const std::string tree_enabled = ReadText(path_ + "/cgroup.subtree_control").value_or("");
  for (size_t i = 0; i < kControllers.size(); ++i) {
    const std::string controller(kControllers[i]);
    std::string& why = why_not_[i];
    if (!HasWord(offered, controller)) {
      why = controller + " is not offered to " + own + " by the cgroup v2 hierarchy (its " +
            "cgroup.controllers lists " + (offered.empty() ? "none" : "\"" + offered + "\"") +
            "): on a hybrid or v1 system it is bound to a cgroup v1 hierarchy, else the " +
            "parent cgroup does not delegate it";
      continue;
    }
    if (!HasWord(own_enabled, controller)) {
      if (int err = WriteText(own + "/cgroup.subtree_control", "+" + controller); err != 0) {
        why = err == EBUSY ? controller + " cannot be enabled for the children of " + own +
                                 ": it holds processes (the agent), and cgroup v2 gives a "
                                 "non-root cgroup's children controllers only while it holds "
                                 "none; podless does not move the agent out of its cgroup"
                           : controller + " cannot be enabled in " + own +
                                 "/cgroup.subtree_control: " + std::strerror(err);
        continue;
      }
    }
    if (!HasWord(tree_enabled, controller)) {
      if (int err = WriteText(path_ + "/cgroup.subtree_control", "+" + controller); err != 0) {
        why = controller + " cannot be enabled in " + path_ +
              "/cgroup.subtree_control: " + std::strerror(err);
      }
    }
  }
}

int CgroupTree::ControllerIndex(std::string_view controller) {
  auto found = std::find(kControllers.begin(), kControllers.end(), controller);
  return found == kControllers.end() ? -1 : static_cast<int>(found - kControllers.begin());
}

bool CgroupTree::Supports(std::string_view controller) const {
  int index = ControllerIndex(controller);
  return index >= 0 && why_not_[static_cast<size_t>(index)].empty();
}

std::string CgroupTree::WhyNot(std::string_view controller) const {
  int index = ControllerIndex(controller);
  if (index < 0) return std::string(controller) + " is not a controller podless limits";
  return why_not_[static_cast<size_t>(index)];
}

std::string CgroupTree::LeafPath(const std::string& leaf) const {
  const std::string name = EscapeCgroupLeaf(leaf);
  if (name.empty() || name.size() > kMaxNameBytes) return {};
  return path_ + "/" + name;
}

Result<std::string> CgroupTree::CreateReplica(const std::string& leaf, const CgroupLimits& limits) {
  const std::string dir = LeafPath(leaf);
  if (dir.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "replica cgroup for \"" + leaf + "\": the name is empty or too long");
  }
  // Each limit: its controller, its file, and what to write (0: none).
  const uint64_t cpu_quota =
      std::max<uint64_t>(uint64_t{limits.cpu_millis} * kCpuPeriodMicros / 1000, kCpuMinQuotaMicros);
  const struct {
    std::string_view controller;
    const char* file;
    bool set;
    std::string value;
  } settings[] = {
      {"memory", "memory.max", limits.memory_bytes != 0,
       limits.memory_bytes != 0 ? std::to_string(limits.memory_bytes) : "max"},
      {"cpu", "cpu.max", limits.cpu_millis != 0,
       (limits.cpu_millis != 0 ? std::to_string(cpu_quota) : "max") + " " +
           std::to_string(kCpuPeriodMicros)},
      {"pids", "pids.max", limits.pids != 0,
       limits.pids != 0 ? std::to_string(limits.pids) : "max"},
  };
  for (const auto& setting : settings) {
    if (setting.set && !Supports(setting.controller)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "cannot limit " + std::string(setting.controller) + " for " + leaf + ": " +
                           WhyNot(setting.controller));
    }
  }

  bool created = ::mkdir(dir.c_str(), 0755) == 0;
  if (!created && errno != EEXIST) {
    return OsError(ErrorCode::kUnavailable, "cannot create the cgroup " + dir, errno);
  }
  for (const auto& setting : settings) {
    if (!Supports(setting.controller)) continue;
    if (int err = WriteText(dir + "/" + setting.file, setting.value); err != 0) {
      if (created) ::rmdir(dir.c_str());
      return OsError(ErrorCode::kUnavailable,
                     "cannot write " + setting.value + " to " + dir + "/" + setting.file, err);
    }
  }
  // An out-of-memory kill takes the whole replica, as it does a container: a
  // replica missing one of its processes is in a state nobody tested.
  if (Supports("memory")) WriteText(dir + "/memory.oom.group", "1");
  return dir;
}

std::vector<pid_t> CgroupTree::Pids(const std::string& leaf) const {
  const std::string dir = LeafPath(leaf);
  if (dir.empty()) return {};  // a name CreateReplica refuses: no such cgroup
  return ReadPids(dir);
}

bool CgroupTree::Empty(const std::string& leaf) const { return Pids(leaf).empty(); }

Status CgroupTree::Kill(const std::string& leaf) {
  const std::string dir = LeafPath(leaf);
  if (dir.empty() || !Exists(dir)) return {};
  if (!has_cgroup_kill_) return KillByListing(dir);
  if (int err = WriteText(dir + "/cgroup.kill", "1"); err != 0) {
    // No cgroup.kill after all (an old kernel), or the cgroup was removed.
    if (err == ENOENT) return Exists(dir) ? KillByListing(dir) : Status{};
    return OsError(ErrorCode::kUnavailable, "cannot write 1 to " + dir + "/cgroup.kill", err);
  }
  return {};
}

Status CgroupTree::KillByListing(const std::string& dir) {
  std::set<pid_t> signalled;
  bool new_pids = true;
  for (int round = 0; round < kKillRounds; ++round) {
    std::vector<pid_t> pids = ReadPids(dir);
    if (pids.empty()) return {};
    new_pids = false;
    // Every listed pid, signalled or not: a pid may have been reused inside
    // the cgroup, and signalling a dying process again does no harm.
    for (pid_t pid : pids) {
      ::kill(pid, SIGKILL);
      new_pids |= signalled.insert(pid).second;
    }
    if (!new_pids) {
      // All of them have SIGKILL pending and none can fork: wait for them to
      // leave cgroup.procs.
      timespec pause{0, kKillPauseNanos};
      ::nanosleep(&pause, nullptr);
    }
  }
  // Processes that take long to die (uninterruptible sleep) are signalled all
  // the same; only a cgroup that kept showing new ones is a failure.
  if (!new_pids) return {};
  return MakeError(ErrorCode::kUnavailable, "new processes kept appearing in " + dir + " after " +
                                                std::to_string(kKillRounds) +
                                                " rounds of SIGKILL; call Kill again");
}

Status CgroupTree::Remove(const std::string& leaf) {
  const std::string dir = LeafPath(leaf);
  if (dir.empty() || ::rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
  if (errno == EBUSY) {
    return MakeError(ErrorCode::kUnavailable, "cannot remove the cgroup " + dir +
                                                  ": processes remain in it (Kill it first)");
  }
  return OsError(ErrorCode::kUnavailable, "cannot remove the cgroup " + dir, errno);
}

std::vector<std::string> CgroupTree::Leaves() const {
  std::vector<std::string> leaves;
  DIR* dir = ::opendir(path_.c_str());
  if (dir == nullptr) return leaves;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_type != DT_DIR) continue;
    std::string leaf = UnescapeCgroupLeaf(entry->d_name);  // "." and ".." give ""
    if (!leaf.empty()) leaves.push_back(std::move(leaf));
  }
  ::closedir(dir);
  std::sort(leaves.begin(), leaves.end());
  return leaves;
}

Status CgroupTree::RemoveTree() {
  if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return {};
  if (errno == EBUSY) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot remove the cgroup " + path_ + ": replica cgroups remain in it");
  }
  return OsError(ErrorCode::kUnavailable, "cannot remove the cgroup " + path_, errno);
}

}  // namespace podless::runtime
