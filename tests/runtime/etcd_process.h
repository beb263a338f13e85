// EtcdProcess: a real single-member etcd (Debian's etcd-server, /usr/bin/etcd)
// for tests, on free loopback ports with a temporary data directory.
//
// Start() launches it and waits (bounded) until /health answers; Stop() kills
// it; Start() again brings it back on the same ports and data, for restart
// tests. The destructor kills it and removes the directory. A missing etcd is
// an error, not a skip: CI installs it (.ci/install-deps).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "workloads/result.h"

namespace podless::testing {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";
inline constexpr char kEtcdctlBinary[] = "/usr/bin/etcdctl";

// A loopback port nothing listens on right now (bound to port 0, then freed).
inline uint16_t FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class EtcdProcess {
 public:
  EtcdProcess() : client_port_(FreeLoopbackPort()), peer_port_(FreeLoopbackPort()) {
    char dir_template[] = "/tmp/podless-etcd-XXXXXX";
    dir_ = mkdtemp(dir_template) != nullptr ? dir_template : "";
    client_url_ = "http://127.0.0.1:" + std::to_string(client_port_);
    peer_url_ = "http://127.0.0.1:" + std::to_string(peer_port_);
  }
  ~EtcdProcess() {
    Stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Launches etcd and waits until it reports healthy (at most 15 s).
  Status Start() {
    if (access(kEtcdBinary, X_OK) != 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       std::string(kEtcdBinary) +
                           " not found: install Debian's etcd-server (see .ci/install-deps)");
    }
    if (dir_.empty()) return MakeError(ErrorCode::kInternal, "cannot create a temp directory");
    if (pid_ > 0) return {};
    const std::vector<std::string> args = {
        kEtcdBinary,
        "--name=default",
        "--data-dir=" + dir_ + "/data",
        "--listen-client-urls=" + client_url_,
        "--advertise-client-urls=" + client_url_,
        "--listen-peer-urls=" + peer_url_,
        "--initial-advertise-peer-urls=" + peer_url_,
        "--initial-cluster=default=" + peer_url_,
        "--log-level=warn",
    };
    pid_ = Spawn(args, {});
    if (pid_ < 0) return MakeError(ErrorCode::kInternal, "cannot fork etcd");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return MakeError(ErrorCode::kUnavailable,
                         "etcd exited during startup; its log:\n" + LogTail());
      }
      if (Healthy()) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Stop();
    return MakeError(ErrorCode::kDeadlineExceeded,
                     "etcd was not healthy within 15 s; its log:\n" + LogTail());
  }

  // Kills etcd at once (SIGKILL works on a paused etcd too).
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Freezes etcd: its sockets stay open but nothing answers.
  void Pause() {
    if (pid_ > 0) kill(pid_, SIGSTOP);
  }
  void Resume() {
    if (pid_ > 0) kill(pid_, SIGCONT);
  }

  // Compacts the key-value history up to `revision` (etcdctl, API v3).
  Status Compact(int64_t revision) {
    const pid_t pid =
        Spawn({kEtcdctlBinary, "--endpoints=" + client_url_, "compact", std::to_string(revision)},
              {"ETCDCTL_API=3"});
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      return MakeError(ErrorCode::kInternal, "etcdctl compact " + std::to_string(revision) +
                                                 " failed; log:\n" + LogTail());
    }
    return {};
  }

  const std::string& client_url() const { return client_url_; }
  std::string LogTail() const {
    std::ifstream in(dir_ + "/etcd.log");
    std::stringstream text;
    text << in.rdbuf();
    const std::string all = text.str();
    return all.size() > 4000 ? all.substr(all.size() - 4000) : all;
  }

 private:
  // fork + exec with stdout/stderr appended to <dir>/etcd.log; the child dies
  // with the test process.
  pid_t Spawn(const std::vector<std::string>& args, const std::vector<std::string>& extra_env) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    for (const std::string& e : extra_env) env_storage.push_back(e);
    std::vector<char*> envp;
    for (std::string& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string log = dir_ + "/etcd.log";
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      const int null_fd = open("/dev/null", O_RDONLY);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    return pid;
  }

  // GET /health answers {"health":"true"} once the member has a leader.
  bool Healthy() const {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(client_port_);
    std::string response;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      const std::string request =
          "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
      if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
        char buffer[1024];
        ssize_t n;
        while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
      }
    }
    close(fd);
    return response.find("\"health\":\"true\"") != std::string::npos;
  }

  uint16_t client_port_;
  uint16_t peer_port_;
  std::string dir_;
  std::string client_url_;
  std::string peer_url_;
  pid_t pid_ = -1;
};

}  // namespace podless::testing
