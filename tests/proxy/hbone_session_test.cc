// HboneSession over an in-memory transport: streams that went idle hold no
// buffer memory (no queue chunk, no nghttp2 data item) and still carry
// bytes and a clean END_STREAM when they are used again.
#include "proxy/hbone_session.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/base/byte_queue.h"
#include "proxy/memory_pipe.h"
#include "tests/proxy/fake_directory.h"

namespace podless::proxy {
namespace {

using testing::RunUntil;

// Server side: every byte back, END_STREAM for END_STREAM.
class Echo final : public StreamHandler {
 public:
  explicit Echo(Stream* stream) : stream_(stream) {}
  void OnData(std::string_view bytes) override { stream_->Write(bytes); }
  void OnEnd() override { stream_->End(); }
  void OnClosed(bool) override { delete this; }

 private:
  Stream* stream_;
};

// Client side: collects what the server sends.
struct Collector final : StreamHandler {
  void OnData(std::string_view bytes) override { received.append(bytes); }
  void OnEnd() override { ended = true; }
  void OnClosed(bool was_reset) override {
    closed = true;
    reset = was_reset;
    stream = nullptr;
  }
  Stream* stream = nullptr;
  std::string received;
  bool ended = false;
  bool closed = false;
  bool reset = false;
};

struct SessionPair final : HboneSession::Callbacks {
  SessionPair() : dispatcher(loop.get()) {
    auto [a, b] = NewMemoryPipe(dispatcher);
    client = std::make_unique<HboneSession>(dispatcher, HboneSession::Role::kClient, a, "", *this);
    server = std::make_unique<HboneSession>(dispatcher, HboneSession::Role::kServer, b, "", *this);
    REQUIRE(server->Start().ok());
    REQUIRE(client->Start().ok());
  }
  ~SessionPair() override {
    client.reset();
    server.reset();
    RunUntil(
        loop.get(), [] { return false; }, 20);
  }

  // Opens `count` streams and waits until each is open.
  std::vector<std::unique_ptr<Collector>> Open(size_t count) {
    std::vector<std::unique_ptr<Collector>> streams;
    size_t opened = 0;
    for (size_t i = 0; i < count; ++i) {
      streams.push_back(std::make_unique<Collector>());
      Collector* collector = streams.back().get();
      auto stream =
          client->OpenStream("127.0.0.1:7", [&opened, collector](int status, const std::string&) {
            if (status == 200) ++opened;
          });
      REQUIRE(stream.ok());
      collector->stream = stream.value();
    }
    REQUIRE(RunUntil(loop.get(), [&] { return opened == count; }));
    for (auto& c : streams) c->stream->SetHandler(c.get());
    return streams;
  }

  // HboneSession::Callbacks
  void OnConnectRequest(HboneSession&, HboneStream& stream) override {
    stream.Respond(200);
    stream.SetHandler(new Echo(&stream));
  }
  void OnSessionClosed(HboneSession&) override { ++sessions_closed; }

  UvLoop loop;
  Dispatcher dispatcher;
  std::unique_ptr<HboneSession> client;
  std::unique_ptr<HboneSession> server;
  int sessions_closed = 0;
};

TEST_CASE("HboneSession: idle streams hold no buffer chunks and carry bytes when used again") {
  SessionPair pair;
  int64_t chunks_before = ChunkPool::outstanding();
  auto streams = pair.Open(20);
  for (auto& c : streams) c->stream->Write("ping");
  REQUIRE(RunUntil(pair.loop.get(), [&] {
    for (auto& c : streams) {
      if (c->received != "ping") return false;
    }
    return true;
  }));
  RunUntil(
      pair.loop.get(), [] { return false; }, 20);
  // Twenty open streams, both ends, nothing in flight: no chunk held.
  CHECK(ChunkPool::outstanding() == chunks_before);

  // Used again after idling: a payload of many frames, then the end.
  std::string big(200 * 1024 + 17, 'b');
  for (auto& c : streams) {
    c->stream->Write("pong");
    c->stream->Write(big);
    c->stream->End();
  }
  REQUIRE(RunUntil(pair.loop.get(), [&] {
    for (auto& c : streams) {
      if (!c->closed) return false;
    }
    return true;
  }));
  for (auto& c : streams) {
    CHECK(c->received.size() == 4 + 4 + big.size());
    CHECK(c->received.compare(0, 8, "pingpong") == 0);
    CHECK(c->ended);
    CHECK_FALSE(c->reset);
  }
  CHECK(pair.client->active_streams() == 0);
  CHECK(ChunkPool::outstanding() == chunks_before);
}

TEST_CASE("HboneSession: an end requested on an idle stream arrives as END_STREAM alone") {
  SessionPair pair;
  auto streams = pair.Open(1);
  Collector& c = *streams[0];
  c.stream->Write("x");
  REQUIRE(RunUntil(pair.loop.get(), [&] { return c.received == "x"; }));
  RunUntil(
      pair.loop.get(), [] { return false; }, 20);
  c.stream->End();
  REQUIRE(RunUntil(pair.loop.get(), [&] { return c.closed; }));
  CHECK(c.ended);
  CHECK_FALSE(c.reset);
  CHECK(c.received == "x");
}

}  // namespace
}  // namespace podless::proxy
