// Splice's idle timeout: a spliced pair of streams that carries no byte
// either way for the timeout is reset on both sides and counted; bytes in
// either direction keep it open; without a timeout it is never cut.
#include <doctest/doctest.h>

#include <uv.h>

#include <memory>
#include <string>
#include <utility>

#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/memory_pipe.h"
#include "proxy/splice.h"
#include "tests/proxy/fake_directory.h"
#include "tests/proxy/peer_helpers.h"

namespace podless::proxy {
namespace {

using testing::RunUntil;
using testing::StreamProbe;

constexpr uint64_t kIdleMs = 300;

// client <-pipe-> [splice] <-pipe-> backend
struct SpliceFixture {
  explicit SpliceFixture(uint64_t idle_timeout_ms, std::shared_ptr<HttpRequestGate> gate = nullptr)
      : dispatcher(loop.get()) {
    auto [c, inbound] = NewMemoryPipe(dispatcher);
    auto [outbound, b] = NewMemoryPipe(dispatcher);
    client = c;
    backend = b;
    client->SetHandler(&client_probe);
    backend->SetHandler(&backend_probe);
    SpliceOptions options;
    options.dispatcher = &dispatcher;
    options.idle_timeout_ms = idle_timeout_ms;
    options.idle_timeouts = &idle_timeouts;
    options.request_gate = std::move(gate);
    StartSplice(inbound, outbound, options);
  }
  ~SpliceFixture() {
    if (!client_probe.closed) client->Reset();
    if (!backend_probe.closed) backend->Reset();
    RunUntil(
        loop.get(), [] { return false; }, 20);
  }
  // Runs the loop for `ms` unless either end is closed first.
  bool OpenFor(int ms) {
    return !RunUntil(
        loop.get(), [&] { return client_probe.closed || backend_probe.closed; }, ms);
  }

  UvLoop loop;
  Dispatcher dispatcher;
  Counter idle_timeouts;
  StreamProbe client_probe;
  StreamProbe backend_probe;
  Stream* client = nullptr;
  Stream* backend = nullptr;
};

TEST_CASE("Splice: a pair silent for the idle timeout is reset on both sides and counted") {
  SpliceFixture f(kIdleMs);
  f.client->Write("hello");
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.backend_probe.data == "hello"; }, 1000));
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.client_probe.closed && f.backend_probe.closed; }, 5000));
  CHECK(f.client_probe.reset);
  CHECK(f.backend_probe.reset);
  CHECK(f.idle_timeouts.value() == 1);
}

TEST_CASE("Splice: bytes either way keep it open past the idle timeout") {
  SpliceFixture f(kIdleMs);
  // Client to backend, then backend to client, each every sixth of the
  // timeout for longer than the timeout.
  for (int i = 0; i < 10; ++i) {
    f.client->Write("c");
    CHECK(f.OpenFor(kIdleMs / 6));
  }
  for (int i = 0; i < 10; ++i) {
    f.backend->Write("b");
    CHECK(f.OpenFor(kIdleMs / 6));
  }
  CHECK(f.backend_probe.data == std::string(10, 'c'));
  CHECK(f.client_probe.data == std::string(10, 'b'));
  CHECK(f.idle_timeouts.value() == 0);
  // Then silence: cut off.
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.client_probe.closed && f.backend_probe.closed; }, 5000));
  CHECK(f.idle_timeouts.value() == 1);
}

TEST_CASE("Splice: without an idle timeout a silent pair stays open") {
  SpliceFixture f(0);
  CHECK(f.OpenFor(3 * kIdleMs));
  CHECK(f.idle_timeouts.value() == 0);
}

std::shared_ptr<HttpRequestGate> GetOnlyGate() {
  return std::make_shared<HttpRequestGate>(
      [](const Http1Request& request, bool) { return request.method == "GET"; });
}

TEST_CASE(
    "Splice: with a request gate a denied first request is answered 403 and the backend reset") {
  SpliceFixture f(0, GetOnlyGate());
  f.client->Write("POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n\r\n");
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.client_probe.ended && f.backend_probe.closed; }, 2000));
  CHECK(f.client_probe.data.starts_with("HTTP/1.1 403 Forbidden\r\n"));
  CHECK(f.client_probe.data.ends_with("RBAC: access denied"));
  CHECK(f.backend_probe.data.empty());
}

TEST_CASE("Splice: with a request gate a denied later request is answered after the backend ends") {
  SpliceFixture f(0, GetOnlyGate());
  f.client->Write("GET /a HTTP/1.1\r\nHost: w\r\n\r\n");
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.backend_probe.data.starts_with("GET /a"); }, 2000));
  f.client->Write("DELETE /a HTTP/1.1\r\nHost: w\r\n\r\n");
  // The backend gets no DELETE, but its end of input.
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.backend_probe.ended; }, 2000));
  CHECK(f.backend_probe.data.find("DELETE") == std::string::npos);
  CHECK(f.client_probe.data.empty());
  f.backend->Write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  f.backend->End();
  CHECK(RunUntil(
      f.loop.get(), [&] { return f.client_probe.ended; }, 2000));
  CHECK(f.client_probe.data.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(f.client_probe.data.find("okHTTP/1.1 403 Forbidden\r\n") != std::string::npos);
}

}  // namespace
}  // namespace podless::proxy
