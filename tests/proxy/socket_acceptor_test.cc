// SocketAcceptor on a Unix socket (the local API sockets use it): under file
// descriptor exhaustion it sheds the pending clients, logs once per episode,
// counts, backs off instead of retrying at every readable event, and accepts
// again once descriptors are free.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "proxy/base/socket_acceptor.h"
#include "proxy/base/uv_handle.h"
#include "tests/proxy/fake_directory.h"

namespace podless::proxy {
namespace {

using testing::RunUntil;

// A bound, listening Unix socket at a fresh path.
struct UnixListener {
  UnixListener() {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr = Address();
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd, 64) == 0);
  }
  sockaddr_un Address() const {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    return addr;
  }
  // A connected client (non-blocking after connect), or -1. `client`: a
  // socket made beforehand (connect needs no new descriptor), or -1.
  int Connect(int client = -1) const {
    if (client < 0) client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client < 0) return -1;
    sockaddr_un addr = Address();
    if (::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(client);
      return -1;
    }
    ::fcntl(client, F_SETFL, ::fcntl(client, F_GETFL) | O_NONBLOCK);
    return client;
  }

  podless::testing::TempDir dir{"podless-acceptor"};  // removed with the socket
  std::string path = dir / "test.sock";
  int fd = -1;  // handed to the acceptor
};

// True once the server closed `fd` (EOF or error), without blocking.
bool ClosedByPeer(int fd) {
  char c;
  ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

TEST_CASE("SocketAcceptor: a Unix socket out of descriptors sheds, backs off, and accepts again") {
  UvLoop loop;
  UnixListener listener;
  std::vector<std::string> logged;
  std::vector<std::string> counted;
  std::vector<int> accepted;
  SocketAcceptor::Options options;
  options.name = "api";
  options.address = listener.path;
  options.log = [&](const std::string& line) { logged.push_back(line); };
  options.count_error = [&](std::string_view error) { counted.emplace_back(error); };
  auto acceptor = SocketAcceptor::Adopt(loop.get(), listener.fd, options,
                                        [&](int fd) { accepted.push_back(fd); });
  REQUIRE(acceptor.ok());

  int first = listener.Connect();
  REQUIRE(first >= 0);
  REQUIRE(RunUntil(loop.get(), [&] { return accepted.size() == 1; }));

  // The client sockets of the exhausted phase, made while there is room.
  std::vector<int> unconnected;
  for (int i = 0; i < 40; ++i) {
    unconnected.push_back(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(unconnected.back() >= 0);
  }
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = 256;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> fillers;
  while (true) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fillers.push_back(fd);
  }
  std::vector<int> clients;
  int victim = listener.Connect(unconnected.back());
  unconnected.pop_back();
  bool shed = victim >= 0 && RunUntil(
                                 loop.get(), [&] { return ClosedByPeer(victim); }, 3000);
  // A client every 25 ms for a second: each makes the socket readable, but
  // the acceptor looks only after its backoff (50 ms doubling to 1 s), so it
  // fails a handful of times, not once per client or per loop turn.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < until && !unconnected.empty()) {
    int client = listener.Connect(unconnected.back());
    unconnected.pop_back();
    if (client >= 0) clients.push_back(client);
    RunUntil(
        loop.get(), [] { return false; }, 25);
  }
  uint64_t errors = (*acceptor)->accept_errors();
  for (int fd : fillers) ::close(fd);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);

  CHECK(shed);
  CHECK(accepted.size() == 1);
  CHECK(errors >= 1);
  CHECK(errors <= 8);
  REQUIRE_FALSE(logged.empty());
  INFO(logged[0]);
  CHECK(logged[0].find("api listener " + listener.path +
                       ": accept failed: Too many open files (EMFILE)") != std::string::npos);
  CHECK(logged[0].find("RLIMIT_NOFILE") != std::string::npos);
  size_t failure_lines = 0;
  for (const std::string& line : logged) {
    failure_lines += line.find("accept failed") != std::string::npos;
  }
  CHECK(failure_lines == 1);  // once per episode (then at most every 10 s)
  REQUIRE(counted.size() == errors);
  CHECK(counted[0] == "EMFILE");

  // Descriptors are back: accepted again, and said so.
  int later = listener.Connect();
  REQUIRE(later >= 0);
  CHECK(RunUntil(
      loop.get(), [&] { return !accepted.empty() && accepted.size() >= 2; }, 3000));
  CHECK(logged.back() == "api listener " + listener.path + ": accepting connections again");

  for (int fd : accepted) ::close(fd);
  for (int fd : clients) ::close(fd);
  for (int fd : unconnected) ::close(fd);
  ::close(first);
  ::close(victim);
  ::close(later);
  (*acceptor)->Close();
}

TEST_CASE("SocketAcceptor: an accept callback may destroy the acceptor") {
  UvLoop loop;
  UnixListener listener;
  SocketAcceptorPtr owned;
  int got = -1;
  SocketAcceptor::Options options;
  options.name = "api";
  options.address = listener.path;
  auto acceptor = SocketAcceptor::Adopt(loop.get(), listener.fd, options, [&](int fd) {
    got = fd;
    owned.reset();
  });
  REQUIRE(acceptor.ok());
  owned = std::move(acceptor).value();
  int a = listener.Connect();
  int b = listener.Connect();
  CHECK(RunUntil(loop.get(), [&] { return got >= 0; }));
  CHECK(owned == nullptr);
  ::close(got);
  ::close(a);
  ::close(b);
}

}  // namespace
}  // namespace podless::proxy
