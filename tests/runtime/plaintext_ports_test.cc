// PlaintextPorts: which sockets serve the plaintext ports (one per replica
// address up to the threshold, then the port on the bind address until it
// is unused) and the retry of sockets another program holds.
#include <doctest/doctest.h>

#include <uv.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/base/metrics.h"
#include "proxy/base/uv_handle.h"
#include "runtime/node/plaintext_ports.h"
#include "tests/proxy/fake_directory.h"  // RunUntil, Ip

namespace podless::runtime {
namespace {

using proxy::PlaintextBinding;
using proxy::PlaintextBindings;
using proxy::testing::Ip;
using proxy::testing::RunUntil;

workloads::ObjectKey Key(const char* name) { return {workloads::Kind::kWorkload, "ns", name}; }

std::vector<workloads::PortSpec> Ports(std::vector<uint16_t> numbers) {
  std::vector<workloads::PortSpec> out;
  for (uint16_t n : numbers) {
    workloads::PortSpec spec;
    spec.name = "p" + std::to_string(n);
    spec.port = n;
    out.push_back(spec);
  }
  return out;
}

// A fake proxy: serves what it is given except the bindings in `taken`.
struct PortsFixture {
  explicit PortsFixture(uint32_t max_address_sockets) {
    PlaintextPorts::Options options;
    options.max_address_sockets = max_address_sockets;
    options.retry_initial_ms = 20;
    options.retry_max_ms = 40;
    ports = std::make_unique<PlaintextPorts>(
        loop.get(), registry, options,
        [this](const PlaintextBindings& wanted) -> Status {
          ++syncs;
          held.clear();
          for (const PlaintextBinding& b : wanted) {
            if (taken.count(b) == 0) held.insert(b);
          }
          if (held.size() == wanted.size()) return {};
          return MakeError(ErrorCode::kUnavailable, "plaintext ports: address already in use");
        },
        [this] { return held; });
  }
  ~PortsFixture() { ports->Close(); }

  // The node's port_users(): port -> workloads declaring it.
  void Declare(uint16_t port, size_t users) {
    if (users == 0) {
      in_use.erase(port);
    } else {
      in_use[port] = users;
    }
  }
  void Sync() { ports->Sync(in_use); }
  // A label-less series' value; -1 when it is missing.
  double Metric(const std::string& name) {
    std::istringstream lines(registry.Render());
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
  }

  proxy::UvLoop loop;
  proxy::Registry registry;
  std::unique_ptr<PlaintextPorts> ports;
  std::map<uint16_t, size_t> in_use;
  PlaintextBindings held;
  PlaintextBindings taken;
  int syncs = 0;
};

TEST_CASE("PlaintextPorts: a socket per replica address; a scaled-away replica's goes") {
  PortsFixture f(8);
  f.ports->Update(Key("web"), Ports({8080}), {Ip("127.64.0.1"), Ip("127.64.0.2")});
  f.Declare(8080, 1);
  CHECK(f.ports->dirty());
  f.Sync();
  CHECK(f.held == PlaintextBindings{{Ip("127.64.0.1"), 8080}, {Ip("127.64.0.2"), 8080}});
  CHECK(!f.ports->dirty());
  f.ports->Update(Key("web"), Ports({8080}), {Ip("127.64.0.1")});
  f.Sync();
  CHECK(f.held == PlaintextBindings{{Ip("127.64.0.1"), 8080}});
  f.ports->Remove(Key("web"));
  f.Declare(8080, 0);
  f.Sync();
  CHECK(f.held.empty());
}

TEST_CASE("PlaintextPorts: past the threshold a port goes to the bind address until unused") {
  PortsFixture f(3);
  f.ports->Update(Key("small"), Ports({9000}), {Ip("127.64.0.1")});
  f.ports->Update(Key("big"), Ports({8080}),
                  {Ip("127.64.0.2"), Ip("127.64.0.3"), Ip("127.64.0.4")});  // 1 + 3 > 3
  f.Declare(9000, 1);
  f.Declare(8080, 1);
  f.Sync();
  CHECK(f.held == PlaintextBindings{{0, 8080}, {Ip("127.64.0.1"), 9000}});
  // Scaled down below the threshold: stays on the bind address (no flapping).
  f.ports->Update(Key("big"), Ports({8080}), {Ip("127.64.0.2")});
  CHECK(!f.ports->dirty());
  // Another workload on the port: nothing to bind.
  f.ports->Update(Key("more"), Ports({8080}), {Ip("127.64.0.9")});
  CHECK(!f.ports->dirty());
  f.Declare(8080, 2);
  f.Sync();
  CHECK(f.held == PlaintextBindings{{0, 8080}, {Ip("127.64.0.1"), 9000}});
  // Unused: it starts again on its replicas' addresses.
  f.ports->Remove(Key("big"));
  f.ports->Remove(Key("more"));
  f.Declare(8080, 0);
  f.Sync();
  CHECK(f.held == PlaintextBindings{{Ip("127.64.0.1"), 9000}});
  f.ports->Update(Key("again"), Ports({8080}), {Ip("127.64.0.5")});
  f.Declare(8080, 1);
  f.Sync();
  CHECK(f.held == PlaintextBindings{{Ip("127.64.0.5"), 8080}, {Ip("127.64.0.1"), 9000}});
  // Threshold 0: every port on the bind address.
  PortsFixture zero(0);
  zero.ports->Update(Key("web"), Ports({8080}), {Ip("127.64.0.1")});
  zero.Declare(8080, 1);
  zero.Sync();
  CHECK(zero.held == PlaintextBindings{{0, 8080}});
}

TEST_CASE("PlaintextPorts: a socket another program holds is retried on a timer until free") {
  PortsFixture f(8);
  f.taken = {{Ip("127.64.0.1"), 8080}};
  f.ports->Update(Key("web"), Ports({8080}), {Ip("127.64.0.1"), Ip("127.64.0.2")});
  f.Declare(8080, 1);
  f.Sync();
  CHECK(f.held == PlaintextBindings{{Ip("127.64.0.2"), 8080}});
  CHECK(f.ports->unbound() == std::vector<std::string>{"127.64.0.1:8080"});
  CHECK(f.Metric("podless_plaintext_ports_unbound") == 1);
  // Retried without any change (20 ms, 40 ms, 40 ms, ...).
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.syncs >= 4; }, 2000));
  CHECK(f.Metric("podless_plaintext_bind_retries_total") >= 3);
  // Freed: served on the next retry, and the retries stop.
  f.taken.clear();
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.held.size() == 2; }, 2000));
  CHECK(f.ports->unbound().empty());
  CHECK(f.Metric("podless_plaintext_ports_unbound") == 0);
  const int syncs = f.syncs;
  RunUntil(
      f.loop.get(), [] { return false; }, 150);
  CHECK(f.syncs == syncs);
}

}  // namespace
}  // namespace podless::runtime
