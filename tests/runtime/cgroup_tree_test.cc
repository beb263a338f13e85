#include "runtime/process/cgroup_tree.h"

#include <doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/files.h"

namespace podless::runtime {
namespace {

using namespace std::chrono_literals;

// A subtree under the test process's own cgroup with a name no other run
// uses, removed at the end with everything in it (processes killed first).
// When cgroup v2 cannot be used here, ok() is false and why() says why.
class TestTree {
 public:
  TestTree() {
    static int counter = 0;
    auto opened = CgroupTree::Open("podless-test-" + std::to_string(::getpid()) + "-" +
                                   std::to_string(counter++));
    if (opened.ok()) {
      tree_.emplace(std::move(opened).value());
    } else {
      why_ = opened.error().message;
    }
  }
  ~TestTree() {
    if (!tree_) return;
    for (const std::string& leaf : tree_->Leaves()) {
      (void)tree_->Kill(leaf);
      for (int i = 0; i < 5000 && !tree_->Empty(leaf); ++i) std::this_thread::sleep_for(1ms);
      (void)tree_->Remove(leaf);
    }
    // Directories Leaves() does not show (a test's stray ones).
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(tree_->path(), ec)) {
      if (entry.is_directory()) ::rmdir(entry.path().c_str());
    }
    (void)tree_->RemoveTree();
  }
  TestTree(const TestTree&) = delete;
  TestTree& operator=(const TestTree&) = delete;

  bool ok() const { return tree_.has_value(); }
  const std::string& why() const { return why_; }
  CgroupTree& operator*() { return *tree_; }
  CgroupTree* operator->() { return &*tree_; }

 private:
  std::optional<CgroupTree> tree_;
  std::string why_;
};

#define SKIP_WITHOUT_CGROUPS(tree)                                       \
  if (!(tree).ok()) {                                                    \
    MESSAGE("skipped: cgroup v2 cannot be used here: " << (tree).why()); \
    return;                                                              \
  }

// Makes the test process the reaper of its orphaned descendants while alive.
class SubreaperScope {
 public:
  SubreaperScope() {
    ::prctl(PR_GET_CHILD_SUBREAPER, &was_);
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
  ~SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, was_); }

 private:
  int was_ = 0;
};

// Forks a child that joins the cgroup at `dir` (writing "0", itself, to its
// cgroup.procs) and then double-forks, with setsid in between, a grandchild
// that sleeps in its own session; the child and the middle process exit.
// Returns the grandchild's pid (0 if it did not start). The child runs only
// async-signal-safe calls: other tests of this binary start threads.
pid_t StartSetsidGrandchild(const std::string& dir) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  const std::string procs = dir + "/cgroup.procs";
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int fd = ::open(procs.c_str(), O_WRONLY);
    if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(2);
    ::close(fd);
    pid_t middle = ::fork();
    if (middle == 0) {
      ::setsid();
      pid_t grandchild = ::fork();
      if (grandchild == 0) {
        pid_t self = ::getpid();
        if (::write(fds[1], &self, sizeof self) != sizeof self) ::_exit(3);
        for (;;) ::pause();
      }
      ::_exit(grandchild > 0 ? 0 : 4);
    }
    int status = 0;
    if (middle < 0 || ::waitpid(middle, &status, 0) != middle) ::_exit(5);
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 6);
  }
  ::close(fds[1]);
  int status = 0;
  CHECK(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  pid_t grandchild = 0;
  if (::read(fds[0], &grandchild, sizeof grandchild) != sizeof grandchild) grandchild = 0;
  ::close(fds[0]);
  return grandchild;
}

// Reaps `pid` (a child, or an orphan this process is the subreaper of),
// waiting at most 5 s; its wait status, or nullopt.
std::optional<int> Reap(pid_t pid) {
  for (int i = 0; i < 5000; ++i) {
    int status = 0;
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0) return std::nullopt;
    std::this_thread::sleep_for(1ms);
  }
  return std::nullopt;
}

bool WaitEmpty(CgroupTree& tree, const std::string& leaf) {
  for (int i = 0; i < 5000 && !tree.Empty(leaf); ++i) std::this_thread::sleep_for(1ms);
  return tree.Empty(leaf);
}

using podless::testing::ReadFile;

// The whole scenario: a setsid double-fork stays in the replica's cgroup, is
// listed, and dies with Kill; the cgroup is then removable.
void CheckKillTakesTheSetsidGrandchild(CgroupTree& tree) {
  SubreaperScope subreaper;
  const std::string leaf = "default/escape-0";
  auto dir = tree.CreateReplica(leaf, {});
  REQUIRE(dir.ok());

  pid_t grandchild = StartSetsidGrandchild(*dir);
  REQUIRE(grandchild > 0);
  // The middle process's session: out of our session and process group.
  CHECK(::getsid(grandchild) != ::getsid(0));
  CHECK(::getpgid(grandchild) != ::getpgid(0));
  std::vector<pid_t> pids = tree.Pids(leaf);
  CHECK(std::find(pids.begin(), pids.end(), grandchild) != pids.end());
  CHECK_FALSE(tree.Empty(leaf));
  auto busy = tree.Remove(leaf);
  REQUIRE_FALSE(busy.ok());
  CHECK(busy.error().code == ErrorCode::kUnavailable);

  REQUIRE(tree.Kill(leaf).ok());
  std::optional<int> status = Reap(grandchild);
  REQUIRE(status.has_value());
  CHECK(WIFSIGNALED(*status));
  CHECK(WTERMSIG(*status) == SIGKILL);
  errno = 0;
  CHECK(::kill(grandchild, 0) == -1);
  CHECK(errno == ESRCH);
  CHECK(WaitEmpty(tree, leaf));
  CHECK(tree.Remove(leaf).ok());
  CHECK(tree.Leaves().empty());
}

TEST_CASE("CgroupTree: a setsid double-fork stays in the replica's cgroup and dies with Kill") {
  TestTree tree;
  SKIP_WITHOUT_CGROUPS(tree);
  CheckKillTakesTheSetsidGrandchild(*tree);
}

TEST_CASE("CgroupTree: without cgroup.kill, Kill signals every listed process until none is left") {
  TestTree tree;
  SKIP_WITHOUT_CGROUPS(tree);
  tree->UseKillLoopForTesting();
  CheckKillTakesTheSetsidGrandchild(*tree);
}

TEST_CASE("CgroupTree: Leaves lists the replica cgroups that exist, also to a later agent") {
  TestTree tree;
  SKIP_WITHOUT_CGROUPS(tree);
  const std::vector<std::string> keys = {"../escape", "default/db_1", "default/web-0", "x.y"};
  for (const std::string& key : keys) {
    auto dir = tree->CreateReplica(key, {});
    REQUIRE(dir.ok());
    // Sanitized: one directory directly under the subtree, whatever the key.
    CHECK(std::filesystem::path(*dir).parent_path() == tree->path());
    CHECK(std::filesystem::is_directory(*dir));
    auto again = tree->CreateReplica(key, {});  // reused
    REQUIRE(again.ok());
    CHECK(*again == *dir);
  }
  // A directory CreateReplica cannot have made is not a replica.
  REQUIRE(::mkdir((tree->path() + "/not_valid").c_str(), 0755) == 0);
  CHECK(tree->Leaves() == keys);

  // The agent restarts: the same subtree, opened again, shows the same leaves.
  auto reopened = CgroupTree::Open(std::filesystem::path(tree->path()).filename().string());
  REQUIRE(reopened.ok());
  CHECK(reopened->path() == tree->path());
  CHECK(reopened->Leaves() == keys);

  CHECK(tree->Remove("default/web-0").ok());
  CHECK(tree->Remove("default/web-0").ok());  // already gone
  CHECK(tree->Kill("default/web-0").ok());    // nothing to kill
  CHECK(tree->Empty("default/web-0"));
  CHECK(tree->Pids("default/web-0").empty());
  CHECK(tree->Leaves() == std::vector<std::string>{"../escape", "default/db_1", "x.y"});

  // A key with no cgroup name (empty, or over 255 bytes escaped) never
  // reaches the subtree itself.
  CHECK(tree->CreateReplica("", {}).error().code == ErrorCode::kInvalidArgument);
  CHECK(tree->CreateReplica(std::string(100, '/'), {}).error().code == ErrorCode::kInvalidArgument);
  CHECK(tree->Remove("").ok());
  CHECK(tree->Kill("").ok());
  CHECK(std::filesystem::is_directory(tree->path()));
}

TEST_CASE("CgroupTree: a limit whose controller is not delegated is refused, naming it") {
  TestTree tree;
  SKIP_WITHOUT_CGROUPS(tree);
  int refused = 0;
  for (std::string controller : {"memory", "cpu", "pids"}) {
    CgroupLimits limits;
    if (controller == "memory") limits.memory_bytes = 64 << 20;
    if (controller == "cpu") limits.cpu_millis = 500;
    if (controller == "pids") limits.pids = 64;
    auto dir = tree->CreateReplica("ns/limited", limits);
    if (tree->Supports(controller)) {
      CHECK(dir.ok());
      CHECK(tree->WhyNot(controller).empty());
      continue;
    }
    ++refused;
    REQUIRE_FALSE(dir.ok());
    CHECK(dir.error().code == ErrorCode::kFailedPrecondition);
    CHECK(dir.error().message.find(controller) != std::string::npos);
    CHECK(tree->WhyNot(controller).find(controller) != std::string::npos);
    MESSAGE(controller << " unsupported: " << tree->WhyNot(controller));
  }
  if (refused == 3) CHECK(tree->Leaves().empty());  // nothing half made
  CHECK_FALSE(tree->Supports("hugetlb"));           // not one podless limits
  CHECK_FALSE(tree->WhyNot("hugetlb").empty());
}

TEST_CASE("CgroupTree: limits are written to the files of the supported controllers") {
  TestTree tree;
  SKIP_WITHOUT_CGROUPS(tree);
  CgroupLimits limits;
  if (tree->Supports("memory")) limits.memory_bytes = 64 << 20;
  if (tree->Supports("cpu")) limits.cpu_millis = 5;  // under the kernel's minimum quota
  if (tree->Supports("pids")) limits.pids = 64;
  if (limits.memory_bytes == 0 && limits.cpu_millis == 0 && limits.pids == 0) {
    MESSAGE("skipped: no controller is delegated here (" << tree->WhyNot("pids") << ")");
    return;
  }
  auto dir = tree->CreateReplica("ns/limited", limits);
  REQUIRE(dir.ok());
  if (limits.memory_bytes != 0) CHECK(ReadFile(*dir + "/memory.max") == "67108864\n");
  if (limits.cpu_millis != 0) CHECK(ReadFile(*dir + "/cpu.max") == "1000 100000\n");
  if (limits.pids != 0) CHECK(ReadFile(*dir + "/pids.max") == "64\n");
  // Created again without limits: reset to none.
  REQUIRE(tree->CreateReplica("ns/limited", {}).ok());
  if (limits.memory_bytes != 0) CHECK(ReadFile(*dir + "/memory.max") == "max\n");
  if (limits.pids != 0) CHECK(ReadFile(*dir + "/pids.max") == "max\n");
}

TEST_CASE("CgroupTree: Open refuses a subtree name that is not a plain directory name") {
  for (const char* name : {"", ".", "..", "a/b", "a.b", "podless test"}) {
    auto tree = CgroupTree::Open(name);
    REQUIRE_FALSE(tree.ok());
    CHECK(tree.error().code == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("EscapeCgroupLeaf: a one-to-one map to safe directory names") {
  CHECK(EscapeCgroupLeaf("default/web-0") == "default_2fweb-0");
  CHECK(EscapeCgroupLeaf("..") == "_2e_2e");
  CHECK(EscapeCgroupLeaf("a_b") == "a_5fb");
  CHECK(EscapeCgroupLeaf("cgroup.procs") == "cgroup_2eprocs");
  for (std::string key : {"default/web-0", "../..", "a_2fb", "x y\n", "\xff\x01"}) {
    std::string name = EscapeCgroupLeaf(key);
    CHECK(name.find_first_of("/.") == std::string::npos);
    CHECK(UnescapeCgroupLeaf(name) == key);
  }
  CHECK(UnescapeCgroupLeaf("_2F").empty());  // upper case is not what Escape writes
  CHECK(UnescapeCgroupLeaf("_2d").empty());  // '-' is never escaped
  CHECK(UnescapeCgroupLeaf("abc_").empty());
  CHECK(UnescapeCgroupLeaf("abc_2").empty());
  CHECK(UnescapeCgroupLeaf(".").empty());
}

}  // namespace
}  // namespace podless::runtime
