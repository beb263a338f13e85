// GrpcChannel against the real API server (api/grpc_server.h), both on the
// test's loop: the channel runs over a proxy::TcpStream on a Unix socket, as
// the CLI's client does. The blocking wrapper (api/cli/grpc_client.h) is checked
// where the channel leaves the work to its owner: connecting and the local
// deadline.
#include "runtime/grpc/channel.h"

#include <doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/cli/grpc_client.h"
#include "api/grpc_server.h"
#include "api/unix_socket_address.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/uv_handle.h"
#include "tests/testing/run_loop.h"
#include "tests/testing/temp_dir.h"

namespace podless::runtime {
namespace {

using namespace std::chrono_literals;

constexpr const char* kEcho = "/test.Test/Echo";
constexpr const char* kBig = "/test.Test/Big";
constexpr const char* kCount = "/test.Test/Count";
constexpr const char* kForever = "/test.Test/Forever";

int ConnectUnix(const std::string& path) {
  const sockaddr_un addr = api::UnixSocketAddress(path).value();
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A call's sink that keeps everything it hears.
struct RecordingSink final : GrpcStreamSink {
  explicit RecordingSink(size_t max = kDefaultMaxGrpcMessageSize) : GrpcStreamSink(max) {}
  void OnGrpcMessage(std::string message) override { messages.push_back(std::move(message)); }
  void OnGrpcClose(Status status) override { closed = std::move(status); }
  std::vector<std::string> messages;
  std::optional<Status> closed;
};

// The API server with four test methods, and a channel connected to it.
class Fixture : private proxy::StreamHandler, private GrpcChannel::Output {
 public:
  Fixture() : dispatcher_(loop_.get()), server_(loop_.get()) {
    server_.AddUnaryRaw(kEcho, [](const api::CallContext&, std::string_view request) {
      return Result<std::string>(std::string(request));
    });
    server_.AddUnaryRaw(kBig, [](const api::CallContext&, std::string_view) {
      return Result<std::string>(std::string(4096, 'b'));
    });
    server_.AddServerStreamingRaw(kCount, [](const api::CallContext&, std::string_view,
                                             std::shared_ptr<api::ServerStream> s) {
      for (int i = 0; i < 3; ++i) s->Write("message " + std::to_string(i));
      s->Finish({});
    });
    server_.AddServerStreamingRaw(kForever, [this](const api::CallContext&, std::string_view,
                                                   std::shared_ptr<api::ServerStream> s) {
      s->Write("first");
      s->OnCancel([this] { ++server_cancellations; });
      forever_.push_back(std::move(s));
    });
    REQUIRE(server_.Listen(dir_ / "api.sock").ok());
    const int fd = ConnectUnix(dir_ / "api.sock");
    REQUIRE(fd >= 0);
    stream_ = proxy::TcpStream::Adopt(dispatcher_, fd);
    REQUIRE(stream_ != nullptr);
    stream_->SetHandler(this);
    GrpcChannelOptions options;
    options.peer = "the test server";
    auto channel = GrpcChannel::Create(std::move(options), *this);
    REQUIRE(channel.ok());
    channel_ = std::move(channel).value();
    REQUIRE(channel_->Flush().ok());
  }
  ~Fixture() override {
    channel_.reset();
    if (stream_ != nullptr) stream_->Reset();
    forever_.clear();
    server_.Close();
    uv_run(loop_.get(), UV_RUN_NOWAIT);
  }

  // Starts a unary-style call (one request message, then END_STREAM).
  int32_t Start(const char* path, RecordingSink& sink,
                std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    sink.outgoing = FrameGrpcMessage("hello");
    sink.half_close = true;
    Result<int32_t> id = channel_->StartCall(path, timeout, sink);
    REQUIRE(id.ok());
    REQUIRE(channel_->Flush().ok());
    return *id;
  }
  bool RunUntil(const std::function<bool()>& done) { return testing::RunUntil(loop_.get(), done); }

  GrpcChannel& channel() { return *channel_; }
  int server_cancellations = 0;
  Status io;  // the first error the channel reported while receiving

 private:
  void OnData(std::string_view bytes) override {
    if (Status received = channel_->Receive(bytes); !received.ok() && io.ok()) io = received;
  }
  void OnEnd() override {}
  void OnClosed(bool) override { stream_ = nullptr; }
  Status Send(std::string bytes) override {
    if (stream_ == nullptr) return MakeError(ErrorCode::kUnavailable, "closed");
    stream_->Write(bytes);
    return {};
  }

  testing::TempDir dir_{"grpc-channel"};
  proxy::UvLoop loop_;
  proxy::Dispatcher dispatcher_;
  api::GrpcServer server_;
  proxy::Stream* stream_ = nullptr;
  GrpcChannelPtr channel_;
  std::vector<std::shared_ptr<api::ServerStream>> forever_;
};

TEST_CASE("GrpcChannel: a unary call gets its one message and OK") {
  Fixture f;
  RecordingSink sink;
  f.Start(kEcho, sink, 5s);
  REQUIRE(f.RunUntil([&] { return sink.closed.has_value(); }));
  CHECK(sink.closed->ok());
  CHECK(sink.messages == std::vector<std::string>{"hello"});
  CHECK(f.channel().open_streams() == 0);
  CHECK(f.io.ok());
}

TEST_CASE("GrpcChannel: a server stream delivers its messages in order, then OK") {
  Fixture f;
  RecordingSink sink;
  f.Start(kCount, sink);
  REQUIRE(f.RunUntil([&] { return sink.closed.has_value(); }));
  CHECK(sink.closed->ok());
  CHECK(sink.messages == std::vector<std::string>{"message 0", "message 1", "message 2"});
}

TEST_CASE("GrpcChannel: several calls share the connection") {
  Fixture f;
  RecordingSink a, b, c;
  f.Start(kEcho, a);
  f.Start(kCount, b);
  f.Start(kEcho, c);
  REQUIRE(f.RunUntil([&] { return a.closed && b.closed && c.closed; }));
  CHECK((a.closed->ok() && b.closed->ok() && c.closed->ok()));
  CHECK(b.messages.size() == 3);
}

TEST_CASE("GrpcChannel: the grpc-timeout it sends ends the call with DEADLINE_EXCEEDED") {
  Fixture f;
  RecordingSink sink;
  const auto start = std::chrono::steady_clock::now();
  f.Start(kForever, sink, 200ms);
  REQUIRE(f.RunUntil([&] { return sink.closed.has_value(); }));
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);
  REQUIRE_FALSE(sink.closed->ok());
  CHECK(sink.closed->error().code == ErrorCode::kDeadlineExceeded);
  CHECK(sink.messages == std::vector<std::string>{"first"});
}

TEST_CASE("GrpcChannel: Cancel resets the stream; the server hears it and the sink hears nothing") {
  Fixture f;
  RecordingSink sink;
  const int32_t id = f.Start(kForever, sink);
  REQUIRE(f.RunUntil([&] { return sink.messages.size() == 1; }));
  CHECK(f.channel().Cancel(id).ok());
  REQUIRE(f.RunUntil([&] { return f.server_cancellations == 1; }));
  CHECK_FALSE(sink.closed.has_value());
  // The connection goes on.
  RecordingSink after;
  f.Start(kEcho, after);
  REQUIRE(f.RunUntil([&] { return after.closed.has_value(); }));
  CHECK(after.closed->ok());
}

TEST_CASE("GrpcChannel: a message over the sink's limit is RESOURCE_EXHAUSTED, naming the peer") {
  Fixture f;
  RecordingSink sink(1024);
  f.Start(kBig, sink);
  REQUIRE(f.RunUntil([&] { return sink.closed.has_value(); }));
  REQUIRE_FALSE(sink.closed->ok());
  CHECK(sink.closed->error().code == ErrorCode::kResourceExhausted);
  CHECK(sink.closed->error().message.starts_with("the test server's response: "));
  CHECK(sink.messages.empty());
  // Only that call: the next one on the channel is fine.
  RecordingSink after;
  f.Start(kEcho, after);
  REQUIRE(f.RunUntil([&] { return after.closed.has_value(); }));
  CHECK(after.closed->ok());
}

TEST_CASE("GrpcChannel: an unknown method ends with the server's UNIMPLEMENTED") {
  Fixture f;
  RecordingSink sink;
  f.Start("/test.Test/Nothing", sink);
  REQUIRE(f.RunUntil([&] { return sink.closed.has_value(); }));
  REQUIRE_FALSE(sink.closed->ok());
  CHECK(sink.closed->error().message.starts_with("UNIMPLEMENTED"));
}

TEST_CASE("GrpcChannel: PING is answered") {
  Fixture f;
  CHECK(f.channel().SendPing().ok());
  CHECK(f.channel().ping_outstanding());
  CHECK(f.RunUntil([&] { return !f.channel().ping_outstanding(); }));
}

// The blocking wrapper: what the channel leaves to its owner.

TEST_CASE("GrpcClient: no agent at the socket is UNAVAILABLE with the hint") {
  testing::TempDir dir("grpc-client");
  const std::string path = dir / "missing.sock";
  auto client = api::GrpcClient::Connect(path, 1s);
  REQUIRE_FALSE(client.ok());
  CHECK(client.error().code == ErrorCode::kUnavailable);
  CHECK(client.error().message.starts_with("cannot connect to " + path + ": "));
  CHECK(client.error().message.ends_with(" (is `podless run` running?)"));
}

TEST_CASE("GrpcClient: a server that never answers ends the call with the local deadline") {
  testing::TempDir dir("grpc-client");
  const std::string path = dir / "mute.sock";
  // Listening but never accepting: the connect succeeds through the backlog.
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = api::UnixSocketAddress(path).value();
  REQUIRE(bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(listen(listener, 4) == 0);
  auto client = api::GrpcClient::Connect(path, 1s);
  REQUIRE(client.ok());
  const auto start = std::chrono::steady_clock::now();
  Result<std::string> reply = (*client)->Unary(kEcho, "x", 100ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.error().code == ErrorCode::kDeadlineExceeded);
  CHECK(reply.error().message == std::string("call to ") + kEcho + " timed out after 100 ms");
  CHECK(elapsed >= 100ms);
  CHECK(elapsed < 5s);
  CHECK((*client)->connected());
  ::close(listener);
}

TEST_CASE("GrpcClient: a connection the server drops is UNAVAILABLE, then and for later calls") {
  testing::TempDir dir("grpc-client");
  const std::string path = dir / "drop.sock";
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = api::UnixSocketAddress(path).value();
  REQUIRE(bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(listen(listener, 4) == 0);
  auto client = api::GrpcClient::Connect(path, 1s);
  REQUIRE(client.ok());
  ::close(accept(listener, nullptr, nullptr));
  Result<std::string> reply = (*client)->Unary(kEcho, "x", 5s);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.error().code == ErrorCode::kUnavailable);
  CHECK(reply.error().message.starts_with("connection to " + path + " failed: "));
  CHECK_FALSE((*client)->connected());
  Result<std::string> again = (*client)->Unary(kEcho, "x", 5s);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message == reply.error().message);
  ::close(listener);
}

}  // namespace
}  // namespace podless::runtime
