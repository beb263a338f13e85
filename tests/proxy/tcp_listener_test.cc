// TcpListener under file descriptor exhaustion: accept() failing with
// EMFILE sheds the pending connections, is logged and counted, pauses
// accepting instead of spinning, and the listener serves again once
// descriptors are free.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/connection_metrics.h"
#include "proxy/tcp_listener.h"
#include "tests/proxy/fake_directory.h"
#include "tests/proxy/peer_helpers.h"

namespace podless::proxy {
namespace {

using testing::Ip;
using testing::MetricValue;
using testing::RawSocket;
using testing::RunUntil;

TEST_CASE("TcpListener: out of descriptors, it sheds, logs, counts, and accepts again later") {
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  Registry registry;
  ProxyMetrics metrics(registry);
  std::vector<std::string> logged;
  std::vector<TcpStream*> accepted;
  struct Holder final : StreamHandler {
    void OnData(std::string_view) override {}
    void OnEnd() override {}
    void OnClosed(bool) override {}
  } holder;
  TcpListener::Options options;
  options.name = "test";
  options.listen.bind = "127.0.0.1";
  options.metrics = &metrics;
  options.log = [&](const std::string& line) { logged.push_back(line); };
  auto listener = TcpListener::Create(dispatcher, options, [&](TcpStream* tcp) {
    tcp->SetHandler(&holder);
    accepted.push_back(tcp);
  });
  REQUIRE(listener.ok());
  uint16_t port = (*listener)->port();

  RawSocket first(Ip("127.0.0.1"), port);
  REQUIRE(RunUntil(loop.get(), [&] { return accepted.size() == 1; }));

  // Use up every descriptor this process may open (RLIMIT_NOFILE lowered
  // for the test), so the next accept fails with EMFILE.
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  RawSocket victim(Ip("127.0.0.1"), port);  // queued before the table fills
  std::vector<int> fillers;
  rlimit low = saved;
  low.rlim_cur = 256;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  while (true) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fillers.push_back(fd);
  }
  bool shed = RunUntil(
      loop.get(), [&] { return victim.PeerClosed(); }, 3000);
  for (int fd : fillers) ::close(fd);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
  CHECK(shed);
  CHECK(accepted.size() == 1);
  CHECK((*listener)->accept_errors() >= 1);
  REQUIRE_FALSE(logged.empty());
  INFO(logged[0]);
  CHECK(logged[0].find("test listener 127.0.0.1:" + std::to_string(port) +
                       ": accept failed: Too many open files (EMFILE)") != std::string::npos);
  CHECK(MetricValue(registry.Render(),
                    "podless_accept_errors_total{listener=\"test\",error=\"EMFILE\"}") >= 1);

  // Descriptors are back: the listener accepts again, and says so.
  RawSocket later(Ip("127.0.0.1"), port);
  CHECK(RunUntil(
      loop.get(), [&] { return accepted.size() == 2; }, 5000));
  CHECK(logged.back().find("accepting connections again") != std::string::npos);
  for (TcpStream* tcp : accepted) tcp->Reset();
  (*listener)->Close();
}

TEST_CASE("TcpListener: a port in use is an error naming the address") {
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  TcpListener::Options options;
  options.name = "test";
  options.listen.bind = "127.0.0.1";
  auto first = TcpListener::Create(dispatcher, options, [](TcpStream* tcp) { tcp->Reset(); });
  REQUIRE(first.ok());
  options.listen.port = (*first)->port();
  auto second = TcpListener::Create(dispatcher, options, [](TcpStream* tcp) { tcp->Reset(); });
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message ==
        "cannot listen on 127.0.0.1:" + std::to_string(options.listen.port) +
            ": address already in use");
  options.listen.bind = "localhost";
  auto named = TcpListener::Create(dispatcher, options, [](TcpStream* tcp) { tcp->Reset(); });
  REQUIRE_FALSE(named.ok());
  CHECK(named.error().message == "bind address \"localhost\" is not IPv4");
}

}  // namespace
}  // namespace podless::proxy
