// EtcdProcess: a real single-member etcd (Debian's etcd-server, /usr/bin/etcd)
// for tests, on free loopback ports with a temporary data directory.
//
// Start() launches it and waits (bounded) until /health answers; Stop() kills
// it; Start() again brings it back on the same ports and data, for restart
// tests. The destructor kills it and removes the directory. A missing etcd is
// an error, not a skip: CI installs it (.ci/install-deps).
//
// EtcdProcess(EtcdProcess::kTls) serves https:// with --client-cert-auth:
// MakeCertificates() (called by Start) writes a test PKI with the openssl CLI
// into the temp dir: a CA, etcd's server certificate for IP:127.0.0.1 only,
// a client certificate, and a second CA that signed nothing etcd has. /health
// is then asked on a cleartext metrics port (--listen-metrics-urls).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "tests/testing/free_port.h"
#include "tests/testing/temp_dir.h"
#include "workloads/result.h"

namespace podless::testing {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";
inline constexpr char kEtcdctlBinary[] = "/usr/bin/etcdctl";

// The files of EtcdProcess's test PKI (paths in its temp dir).
struct EtcdTestPki {
  std::string ca_cert;      // signed the server and client certificates
  std::string server_cert;  // subjectAltName IP:127.0.0.1, serverAuth
  std::string server_key;
  std::string client_cert;    // CN=podless-test, clientAuth
  std::string client_key;     // mode 0600
  std::string other_ca_cert;  // a CA that signed nothing etcd has
  std::string other_ca_key;   // mode 0600 (not the client certificate's key)
};

class EtcdProcess {
 public:
  enum Mode { kPlain, kTls };

  explicit EtcdProcess(Mode mode = kPlain)
      : mode_(mode),
        client_port_(FreePort()),
        peer_port_(FreePort()),
        health_port_(mode == kTls ? FreePort() : client_port_) {
    try {
      temp_dir_.emplace("podless-etcd");
      dir_ = temp_dir_->path();
    } catch (const std::system_error&) {
      // dir_ stays empty: Start() reports it.
    }
    client_url_ = std::string(mode == kTls ? "https" : "http") +
                  "://127.0.0.1:" + std::to_string(client_port_);
    peer_url_ = "http://127.0.0.1:" + std::to_string(peer_port_);
  }
  ~EtcdProcess() {
    Stop();  // temp_dir_ is removed after this
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
    std::vector<std::string> args = {
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
    if (mode_ == kTls) {
      if (Status made = MakeCertificates(); !made.ok()) return made;
      args.insert(args.end(),
                  {
                      "--cert-file=" + pki_.server_cert,
                      "--key-file=" + pki_.server_key,
                      "--trusted-ca-file=" + pki_.ca_cert,
                      "--client-cert-auth",
                      "--listen-metrics-urls=http://127.0.0.1:" + std::to_string(health_port_),
                  });
    }
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

  // Writes the test PKI (once; kTls only needs it, any mode may make it).
  Status MakeCertificates() {
    if (!pki_.ca_cert.empty()) return {};
    const std::string d = dir_ + "/pki/";
    std::filesystem::create_directories(d);
    const std::string ec = "ec_paramgen_curve:prime256v1";
    auto ca = [&](const std::string& name) -> Status {
      return Run({"openssl", "req",
                  "-x509",   "-newkey",
                  "ec",      "-pkeyopt",
                  ec,        "-nodes",
                  "-keyout", d + name + ".key",
                  "-out",    d + name + ".crt",
                  "-days",   "2",
                  "-subj",   "/CN=" + name,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    };
    auto leaf = [&](const std::string& name, const std::string& extensions) -> Status {
      std::ofstream(d + name + ".ext") << extensions;
      if (Status s =
              Run({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", ec, "-nodes", "-keyout",
                   d + name + ".key", "-out", d + name + ".csr", "-subj", "/CN=" + name});
          !s.ok()) {
        return s;
      }
      return Run({"openssl", "x509", "-req", "-in", d + name + ".csr", "-CA", d + "ca.crt",
                  "-CAkey", d + "ca.key", "-CAcreateserial", "-days", "2", "-extfile",
                  d + name + ".ext", "-out", d + name + ".crt"});
    };
    const std::string common = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n";
    for (Status s : {ca("ca"), ca("other-ca"),
                     leaf("server", common + "extendedKeyUsage=serverAuth\n"
                                             "subjectAltName=IP:127.0.0.1\n"),
                     leaf("podless-test", common + "extendedKeyUsage=clientAuth\n")}) {
      if (!s.ok()) return s;
    }
    chmod((d + "podless-test.key").c_str(), 0600);
    chmod((d + "other-ca.key").c_str(), 0600);
    pki_ = EtcdTestPki{.ca_cert = d + "ca.crt",
                       .server_cert = d + "server.crt",
                       .server_key = d + "server.key",
                       .client_cert = d + "podless-test.crt",
                       .client_key = d + "podless-test.key",
                       .other_ca_cert = d + "other-ca.crt",
                       .other_ca_key = d + "other-ca.key"};
    return {};
  }
  const EtcdTestPki& pki() const { return pki_; }

  // Compacts the key-value history up to `revision` (etcdctl, API v3).
  Status Compact(int64_t revision) {
    std::vector<std::string> args = {kEtcdctlBinary, "--endpoints=" + client_url_};
    if (mode_ == kTls) {
      args.insert(args.end(), {"--cacert=" + pki_.ca_cert, "--cert=" + pki_.client_cert,
                               "--key=" + pki_.client_key});
    }
    args.insert(args.end(), {"compact", std::to_string(revision)});
    const pid_t pid = Spawn(args, {"ETCDCTL_API=3"});
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
  // Runs a command to completion (its output goes to the log).
  Status Run(const std::vector<std::string>& args) {
    const pid_t pid = Spawn(args, {});
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      return MakeError(ErrorCode::kInternal,
                       args[0] + " " + args[1] + " failed; log:\n" + LogTail());
    }
    return {};
  }

  // fork + exec with stdout/stderr appended to <dir>/etcd.log; the child dies
  // with the test process. A bare program name is looked up in PATH.
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
      execvpe(argv[0], argv.data(), envp.data());
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
    addr.sin_port = htons(health_port_);
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

  Mode mode_;
  uint16_t client_port_;
  uint16_t peer_port_;
  uint16_t health_port_;  // the client port, or the cleartext metrics port with TLS
  EtcdTestPki pki_;
  std::optional<TempDir> temp_dir_;
  std::string dir_;  // temp_dir_'s path, empty when it could not be made
  std::string client_url_;
  std::string peer_url_;
  pid_t pid_ = -1;
};

}  // namespace podless::testing
