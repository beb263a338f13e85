#include "api/grpc_server.h"

#include <doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "api/cli/grpc_client.h"
#include "podless/v1/runtime.pb.h"
#include "proxy/base/timer.h"
#include "tests/testing/temp_dir.h"

#ifndef PODLESS_SOURCE_ROOT
#error "tests/api/meson.build must define PODLESS_SOURCE_ROOT"
#endif

namespace podless::api {
namespace {

namespace v1 = ::podless::v1;
using namespace std::chrono_literals;

constexpr const char* kGetCaBundle = "/podless.v1.Runtime/GetCaBundle";
constexpr const char* kApply = "/podless.v1.Runtime/Apply";
constexpr const char* kRegister = "/podless.v1.Runtime/Register";
constexpr const char* kGet = "/podless.v1.Runtime/Get";
constexpr const char* kWatch = "/podless.v1.Runtime/Watch";

// Must match tests/api/grpc_interop_client.py.
constexpr const char* kPem = "-----BEGIN CERTIFICATE-----\nTESTBUNDLE\n-----END CERTIFICATE-----\n";
constexpr const char* kApplyError =
    "app.yaml:3:5: spec.replicas: must be between 0 and 1000, got 5000\n"
    "app.yaml:9:1: kind: unknown kind \"Pod\" (100% sure; caf\xc3\xa9)";
constexpr int kFiniteEvents = 5;

// A status message far over any header limit: 3,000 lines, UTF-8 in each,
// about 300 KB (what a manifest with thousands of errors once produced).
std::string HugeErrorMessage() {
  std::string text;
  for (int i = 0; i < 3000; ++i) {
    if (i > 0) text += '\n';
    text += "app.yaml:" + std::to_string(i + 9) + ":13: spec.rules[0].from[0].source.principals[" +
            std::to_string(i) + "]: invalid principal \"caf\xc3\xa9 " + std::to_string(i) +
            "\": must not contain spaces or control characters";
  }
  return text;
}

// What the test handlers record. Atomics are read from the test thread; the
// rest only on the loop thread (through ServerThread::OnLoop).
struct TestState {
  std::atomic<int> watch_cancellations{0};
  std::atomic<int> deadline_cancellations{0};
  std::atomic<int> flood_cancellations{0};
  std::atomic<int> flood_accepted{-1};
  std::atomic<int> ticks{0};
  std::vector<std::shared_ptr<ServerStream>> cancelled_streams;
  std::vector<std::shared_ptr<ServerStream>> held;
  std::vector<std::shared_ptr<ServerStream>> gathered;
  size_t gather_target = 100;
  CallContext last_register_context;
};

v1::WatchEvent Event(const std::string& name, size_t padding = 0) {
  v1::WatchEvent event;
  event.set_type(v1::WatchEvent::ADDED);
  auto* meta = event.mutable_object()->mutable_workload()->mutable_metadata();
  meta->set_name(name);
  if (padding > 0) (*meta->mutable_labels())["padding"] = std::string(padding, 'p');
  return event;
}

// Writes an event every `period_ms` until the call is cancelled.
class Ticker {
 public:
  Ticker(uv_loop_t* loop, TestState& state, std::shared_ptr<ServerStream> stream,
         uint64_t period_ms, size_t padding)
      : state_(state), stream_(std::move(stream)), padding_(padding) {
    timer_ = std::make_unique<proxy::Timer>(loop, [this] {
      if (!stream_) return;
      stream_->Write(Event("tick-" + std::to_string(count_++), padding_).SerializeAsString());
      ++state_.ticks;
    });
    timer_->Start(0, period_ms);
  }
  // Drops the timer and the stream (breaks the stream -> callback -> ticker cycle).
  std::shared_ptr<ServerStream> Stop() {
    timer_.reset();
    return std::move(stream_);
  }

 private:
  TestState& state_;
  std::shared_ptr<ServerStream> stream_;
  size_t padding_;
  int count_ = 0;
  proxy::TimerPtr timer_;
};

void RegisterTestHandlers(GrpcServer& server, TestState& state, uv_loop_t* loop) {
  server.AddUnary<v1::GetCaBundleRequest, v1::CaBundle>(
      kGetCaBundle, [](const CallContext&, const v1::GetCaBundleRequest&) -> Result<v1::CaBundle> {
        v1::CaBundle bundle;
        bundle.set_trust_domain("cluster.local");
        bundle.set_pem(kPem);
        return bundle;
      });
  server.AddUnary<v1::ApplyRequest, v1::ApplyResponse>(
      kApply, [](const CallContext&, const v1::ApplyRequest&) -> Result<v1::ApplyResponse> {
        return MakeError(ErrorCode::kInvalidArgument, kApplyError);
      });
  // Echoes the workload back and records who called.
  server.AddUnary<v1::RegisterRequest, v1::RegisterResponse>(
      kRegister,
      [&state](const CallContext& context,
               const v1::RegisterRequest& request) -> Result<v1::RegisterResponse> {
        state.last_register_context = context;
        v1::RegisterResponse response;
        *response.mutable_workload() = request.workload();
        return response;
      });
  // Get "watch-cancellations": how many "forever" watches saw their cancel
  // callback (for the python client, which cannot look inside the server).
  server.AddUnary<v1::GetRequest, v1::Object>(
      kGet, [&state](const CallContext&, const v1::GetRequest& request) -> Result<v1::Object> {
        if (request.ref().name() != "watch-cancellations") {
          return MakeError(ErrorCode::kNotFound, "workload " + request.ref().name() + " not found");
        }
        v1::Object object;
        object.mutable_workload()->mutable_metadata()->set_name(
            std::to_string(state.watch_cancellations.load()));
        return object;
      });
  // Watch behaves according to the namespace it is asked for.
  server.AddServerStreaming<v1::WatchRequest, v1::WatchEvent>(
      kWatch, [&state, loop](const CallContext&, const v1::WatchRequest& request,
                             ServerStreamWriter<v1::WatchEvent> writer) {
        const std::string& mode = request.namespace_();
        if (mode == "finite") {
          for (int i = 0; i < kFiniteEvents; ++i) writer.Write(Event("w-" + std::to_string(i)));
          v1::WatchEvent synced;
          synced.set_type(v1::WatchEvent::SYNCED);
          writer.Write(synced);
          writer.Finish({});
        } else if (mode == "dropped") {
          // Returns without Finish() and without keeping the stream.
          writer.Write(Event("a"));
          writer.Write(Event("b"));
        } else if (mode == "huge-error") {  // Trailers-Only
          writer.Finish(MakeError(ErrorCode::kInvalidArgument, HugeErrorMessage()));
        } else if (mode == "huge-error-after-one") {  // trailers after DATA
          writer.Write(Event("only"));
          writer.Finish(MakeError(ErrorCode::kInvalidArgument, HugeErrorMessage()));
        } else if (mode == "fail-after-one") {
          writer.Write(Event("only"));
          writer.Finish(MakeError(ErrorCode::kNotFound, "workload shop/gone not found"));
        } else if (mode == "forever" || mode == "firehose") {
          const bool firehose = mode == "firehose";
          auto ticker = std::make_shared<Ticker>(loop, state, writer.raw(), firehose ? 1 : 5,
                                                 firehose ? 64 * 1024 : 0);
          writer.OnCancel([&state, ticker, firehose] {
            state.cancelled_streams.push_back(ticker->Stop());
            if (!firehose) ++state.watch_cancellations;
          });
        } else if (mode == "deadline") {
          state.held.push_back(writer.raw());
          writer.OnCancel([&state] { ++state.deadline_cancellations; });
        } else if (mode == "gather") {
          // Answers nobody until `gather_target` calls are open at once.
          state.gathered.push_back(writer.raw());
          if (state.gathered.size() == state.gather_target) {
            for (size_t i = 0; i < state.gathered.size(); ++i) {
              ServerStreamWriter<v1::WatchEvent> w(state.gathered[i]);
              w.Write(Event("gathered-" + std::to_string(i)));
              w.Finish({});
            }
            state.gathered.clear();
          }
        } else if (mode == "flood") {
          // Writes far more than the per-stream buffer allows, at once.
          writer.OnCancel([&state] { ++state.flood_cancellations; });
          int accepted = 0;
          while (accepted < 10'000 && writer.Write(Event("flood", 64 * 1024))) ++accepted;
          state.flood_accepted = accepted;
        } else {
          writer.Finish(MakeError(ErrorCode::kInvalidArgument, "unknown test mode " + mode));
        }
      });
}

using podless::testing::TempDir;
constexpr const char* kTempDirPrefix = "podless-grpc";

// A GrpcServer with the test handlers, on its own uv loop in its own thread.
class ServerThread {
 public:
  explicit ServerThread(GrpcServerOptions options = {})
      : dir_(kTempDirPrefix), socket_path_(dir_ / "api.sock") {
    std::promise<Status> started;
    thread_ = std::thread([this, options, &started] { Run(options, started); });
    Status status = started.get_future().get();
    if (!status.ok()) {
      thread_.join();
      FAIL("cannot start the test server: " << status.error().message);
    }
  }

  ~ServerThread() {
    Post([this] {
      server_.reset();
      async_.Close();
    });
    thread_.join();
  }

  // Runs `fn` on the loop thread and returns its result.
  template <typename F>
  auto OnLoop(F fn) -> decltype(fn()) {
    std::promise<decltype(fn())> result;
    Post([&] { result.set_value(fn()); });
    return result.get_future().get();
  }

  const std::string& socket_path() const { return socket_path_; }
  const std::string& dir() const { return dir_.path(); }
  TestState& state() { return state_; }
  GrpcServer& server() { return *server_; }  // loop thread only

 private:
  void Run(GrpcServerOptions options, std::promise<Status>& started) {
    proxy::UvLoop loop;
    uv_async_init(loop.get(), async_.get(),
                  [](uv_async_t* async) { static_cast<ServerThread*>(async->data)->RunPosted(); });
    async_->data = this;
    server_ = std::make_unique<GrpcServer>(loop.get(), options);
    RegisterTestHandlers(*server_, state_, loop.get());
    Status status = server_->Listen(socket_path_);
    if (!status.ok()) {
      server_.reset();
      async_.Close();
      started.set_value(status);
      return;
    }
    started.set_value(status);
    uv_run(loop.get(), UV_RUN_DEFAULT);
  }

  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      posted_.push_back(std::move(fn));
    }
    uv_async_send(async_.get());
  }

  void RunPosted() {
    std::vector<std::function<void()>> posted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      posted.swap(posted_);
    }
    for (auto& fn : posted) fn();
  }

  TempDir dir_;
  std::string socket_path_;
  TestState state_;
  GrpcServerPtr server_;
  proxy::AsyncHandle async_;
  std::mutex mutex_;
  std::vector<std::function<void()>> posted_;
  std::thread thread_;
};

GrpcClientPtr MustConnect(const std::string& socket_path, GrpcClientOptions options = {}) {
  Result<GrpcClientPtr> client = GrpcClient::Connect(socket_path, 5s, std::move(options));
  REQUIRE_MESSAGE(client.ok(), client.error().message);
  return std::move(*client);
}

// Waits up to `timeout` for `condition`, polling.
template <typename F>
bool Eventually(F condition, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

int RawConnect(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  return fd;
}

// True if the peer closes `fd` within `timeout` (reads and drops any data).
bool ClosedByPeer(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return true;
  }
}

struct ProcessResult {
  int exit_code;
  std::string output;
};

ProcessResult RunInterop(const std::string& socket_path, const std::string& mode = "") {
  const std::string command = std::string("/usr/bin/python3 '") + PODLESS_SOURCE_ROOT +
                              "/tests/api/grpc_interop_client.py' '" + socket_path + "' " + mode +
                              " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  ProcessResult result{-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST_CASE("GrpcServer: the API socket is created with mode 0600") {
  ServerThread server;
  struct stat st = {};
  REQUIRE(lstat(server.socket_path().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 07777) == 0600);
}

TEST_CASE("GrpcServer: unary calls return the typed response; the handler sees peer and metadata") {
  ServerThread server;
  GrpcClientOptions options;
  options.metadata = {{"x-podless-test", "hello"}};
  GrpcClientPtr client = MustConnect(server.socket_path(), options);

  Result<v1::CaBundle> bundle =
      client->Call<v1::GetCaBundleRequest, v1::CaBundle>(kGetCaBundle, {}, 5s);
  REQUIRE_MESSAGE(bundle.ok(), bundle.error().message);
  CHECK(bundle->trust_domain() == "cluster.local");
  CHECK(bundle->pem() == kPem);
  CHECK(client->last_code() == runtime::GrpcCode::kOk);

  v1::RegisterRequest request;
  request.mutable_workload()->mutable_metadata()->set_name("web");
  Result<v1::RegisterResponse> reply =
      client->Call<v1::RegisterRequest, v1::RegisterResponse>(kRegister, request, 5s);
  REQUIRE_MESSAGE(reply.ok(), reply.error().message);
  CHECK(reply->workload().metadata().name() == "web");
  const CallContext context = server.OnLoop([&] { return server.state().last_register_context; });
  CHECK(context.method == kRegister);
  CHECK(context.pid == getpid());
  CHECK(context.uid == getuid());
  CHECK(context.gid == getgid());
  REQUIRE(context.metadata.count("x-podless-test") == 1);
  CHECK(context.metadata.find("x-podless-test")->second == "hello");
  CHECK(context.metadata.count("content-type") == 0);  // protocol headers are not metadata
}

TEST_CASE("GrpcServer: a handler error arrives as its status code and exact multi-line message") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  Result<v1::ApplyResponse> reply =
      client->Call<v1::ApplyRequest, v1::ApplyResponse>(kApply, {}, 5s);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.error().code == ErrorCode::kInvalidArgument);
  CHECK(reply.error().message == kApplyError);
  CHECK(client->last_code() == runtime::GrpcCode::kInvalidArgument);
}

TEST_CASE("GrpcServer: an unknown method is UNIMPLEMENTED and the connection stays usable") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  Result<std::string> reply = client->Unary("/podless.v1.Runtime/NoSuchMethod", "", 5s);
  REQUIRE_FALSE(reply.ok());
  CHECK(client->last_code() == runtime::GrpcCode::kUnimplemented);
  CHECK(reply.error().message == "UNIMPLEMENTED: unknown method /podless.v1.Runtime/NoSuchMethod");
  CHECK(client->Unary(kGetCaBundle, "", 5s).ok());
}

TEST_CASE("GrpcServer: a request that does not parse is INVALID_ARGUMENT naming the type") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  // Field 1, length-delimited, announces 5 bytes but carries 2.
  Result<std::string> reply = client->Unary(kRegister,
                                            std::string("\x0a\x05"
                                                        "ab",
                                                        4),
                                            5s);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.error().code == ErrorCode::kInvalidArgument);
  CHECK(reply.error().message ==
        "cannot parse the request to /podless.v1.Runtime/Register as podless.v1.RegisterRequest");
}

TEST_CASE("GrpcServer: server streaming delivers every message in order, then the status") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());

  SUBCASE("finished with OK") {
    std::vector<v1::WatchEvent> events;
    v1::WatchRequest request;
    request.set_namespace_("finite");
    Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request,
        [&](const v1::WatchEvent& event) {
          events.push_back(event);
          return true;
        },
        5s);
    REQUIRE_MESSAGE(status.ok(), status.error().message);
    REQUIRE(events.size() == kFiniteEvents + 1);
    for (int i = 0; i < kFiniteEvents; ++i) {
      CHECK(events[i].object().workload().metadata().name() == "w-" + std::to_string(i));
    }
    CHECK(events.back().type() == v1::WatchEvent::SYNCED);
  }
  SUBCASE("a handler that drops its stream finishes it with OK") {
    std::vector<std::string> names;
    v1::WatchRequest request;
    request.set_namespace_("dropped");
    Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request,
        [&](const v1::WatchEvent& event) {
          names.push_back(event.object().workload().metadata().name());
          return true;
        },
        5s);
    REQUIRE_MESSAGE(status.ok(), status.error().message);
    CHECK(names == std::vector<std::string>{"a", "b"});
  }
  SUBCASE("an error after a message") {
    int received = 0;
    v1::WatchRequest request;
    request.set_namespace_("fail-after-one");
    Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request,
        [&](const v1::WatchEvent&) {
          ++received;
          return true;
        },
        5s);
    REQUIRE_FALSE(status.ok());
    CHECK(received == 1);
    CHECK(status.error().code == ErrorCode::kNotFound);
    CHECK(status.error().message == "workload shop/gone not found");
  }
}

TEST_CASE("EncodeGrpcStatusMessage: percent-encodes, and cuts long messages at a safe place") {
  CHECK(EncodeGrpcStatusMessage("", 4096) == "");
  CHECK(EncodeGrpcStatusMessage("100% caf\xc3\xa9\nnext", 4096) == "100%25 caf%C3%A9%0Anext");

  // Whole lines when a line end is near, then what was cut.
  std::string text = HugeErrorMessage();
  std::string encoded = EncodeGrpcStatusMessage(text, 4096);
  CHECK(encoded.size() <= 4096);
  CHECK(encoded.size() > 3000);
  std::string decoded = runtime::PercentDecodeGrpcMessage(encoded);
  const std::string marker =
      "\n... (cut to 4096 bytes: the whole message was " + std::to_string(text.size()) + " bytes)";
  REQUIRE(decoded.ends_with(marker));
  const std::string kept = decoded.substr(0, decoded.size() - marker.size());
  CHECK(text.starts_with(kept));
  CHECK(text[kept.size()] == '\n');

  // One long line: never half a UTF-8 character or half an escape.
  for (size_t shift = 0; shift < 6; ++shift) {
    text = std::string(shift, 'a');
    for (int i = 0; i < 2000; ++i) text += "\xc3\xa9";  // é, 6 encoded bytes each
    encoded = EncodeGrpcStatusMessage(text, 1000);
    CHECK(encoded.size() <= 1000);
    decoded = runtime::PercentDecodeGrpcMessage(encoded);
    const size_t cut = decoded.find("\n... (cut to 1000 bytes");
    REQUIRE(cut != std::string::npos);
    CHECK((cut - shift) % 2 == 0);  // whole characters kept
    CHECK(text.starts_with(decoded.substr(0, cut)));
  }
  // A limit too small for the explanation still gives whole escapes.
  encoded = EncodeGrpcStatusMessage("\n\n\n\n\n", 10);
  CHECK(encoded == "%0A%0A%0A");
}

TEST_CASE("GrpcServer: a status message over the limit is cut, and the call ends at once") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  const std::string full = HugeErrorMessage();
  for (const char* mode : {"huge-error", "huge-error-after-one"}) {
    INFO(mode);
    v1::WatchRequest request;
    request.set_namespace_(mode);
    int received = 0;
    const auto start = std::chrono::steady_clock::now();
    Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request,
        [&](const v1::WatchEvent&) {
          ++received;
          return true;
        },
        10s);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    REQUIRE_FALSE(status.ok());
    CHECK(received == (std::string(mode) == "huge-error" ? 0 : 1));
    CHECK(status.error().code == ErrorCode::kInvalidArgument);
    const std::string& message = status.error().message;
    CHECK(runtime::PercentEncodeGrpcMessage(message).size() <= kDefaultMaxStatusMessageBytes);
    CHECK(message.starts_with(full.substr(0, full.find('\n'))));
    CHECK(message.ends_with("(cut to 4096 bytes: the whole message was " +
                            std::to_string(full.size()) + " bytes)"));
  }
  CHECK(client->Unary(kGetCaBundle, "", 5s).ok());  // the connection is fine
}

TEST_CASE("GrpcServer: a status that cannot be sent resets the stream rather than hanging") {
  // No cut: the trailers are larger than nghttp2 sends (64 KiB a header block).
  GrpcServerOptions options;
  options.max_status_message_bytes = SIZE_MAX;
  auto logged = std::make_shared<std::atomic<int>>(0);
  options.log = [logged](const std::string& line) {
    if (line.find("resetting the stream") != std::string::npos) ++*logged;
  };
  ServerThread server(options);
  GrpcClientPtr client = MustConnect(server.socket_path());
  for (const char* mode : {"huge-error", "huge-error-after-one"}) {
    INFO(mode);
    v1::WatchRequest request;
    request.set_namespace_(mode);
    const auto start = std::chrono::steady_clock::now();
    Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request, [](const v1::WatchEvent&) { return true; }, 10s);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    REQUIRE_FALSE(status.ok());
    CHECK(client->last_code() == runtime::GrpcCode::kInternal);
    CHECK(status.error().message.find("reset the stream") != std::string::npos);
  }
  CHECK(logged->load() == 2);
  CHECK(client->Unary(kGetCaBundle, "", 5s).ok());
}

TEST_CASE("GrpcServer: a cancel mid-stream fires the cancel callback; later writes fail") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  v1::WatchRequest request;
  request.set_namespace_("forever");
  int received = 0;
  Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
      kWatch, request, [&](const v1::WatchEvent&) { return ++received < 3; }, 10s);
  REQUIRE_MESSAGE(status.ok(), status.error().message);
  CHECK(received == 3);
  REQUIRE(Eventually([&] { return server.state().watch_cancellations == 1; }));
  // (No assertions on the loop thread: a failing REQUIRE would throw there.)
  const bool write_after_cancel = server.OnLoop([&] {
    auto& cancelled = server.state().cancelled_streams;
    return cancelled.size() == 1 && cancelled[0]->cancelled() && !cancelled[0]->Write("late");
  });
  CHECK(write_after_cancel);
  // The connection itself is fine.
  CHECK(client->Unary(kGetCaBundle, "", 5s).ok());
  CHECK(server.OnLoop([&] { return server.server().connection_count(); }) == 1);
}

TEST_CASE("GrpcServer: every call is counted once, when it ends, with the code it ended with") {
  // Written on the loop thread only; read there too (OnLoop).
  auto ended = std::make_shared<std::vector<std::pair<std::string, runtime::GrpcCode>>>();
  GrpcServerOptions options;
  options.on_call_end = [ended](std::string_view method, runtime::GrpcCode code) {
    ended->emplace_back(std::string(method), code);
  };
  ServerThread server(options);
  GrpcClientPtr client = MustConnect(server.socket_path());
  REQUIRE(client->Unary(kGetCaBundle, "", 5s).ok());
  REQUIRE_FALSE(client->Call<v1::ApplyRequest, v1::ApplyResponse>(kApply, {}, 5s).ok());
  CHECK_FALSE(client->Unary("/podless.v1.Runtime/NoSuchMethod", "", 5s).ok());
  // A stream the client stops after three messages: counted when it ends, as
  // CANCELLED, not as OK when it starts.
  v1::WatchRequest request;
  request.set_namespace_("forever");
  int received = 0;
  REQUIRE(client
              ->ServerStream<v1::WatchRequest, v1::WatchEvent>(
                  kWatch, request, [&](const v1::WatchEvent&) { return ++received < 3; }, 10s)
              .ok());
  // A stream the server ends at its deadline: DEADLINE_EXCEEDED, when it ends.
  request.set_namespace_("deadline");
  REQUIRE_FALSE(client
                    ->ServerStream<v1::WatchRequest, v1::WatchEvent>(
                        kWatch, request, [](const v1::WatchEvent&) { return true; }, 300ms)
                    .ok());
  REQUIRE(Eventually([&] { return server.OnLoop([&] { return ended->size(); }) == 4; }));
  const auto calls = server.OnLoop([&] { return *ended; });
  using Call = std::pair<std::string, runtime::GrpcCode>;
  CHECK(calls == std::vector<Call>{{"GetCaBundle", runtime::GrpcCode::kOk},
                                   {"Apply", runtime::GrpcCode::kInvalidArgument},
                                   {"Watch", runtime::GrpcCode::kCancelled},
                                   {"Watch", runtime::GrpcCode::kDeadlineExceeded}});
}

TEST_CASE("GrpcServer: a client that dies mid-stream cancels its stream and frees its connection") {
  ServerThread server;
  ProcessResult python = RunInterop(server.socket_path(), "die-mid-stream");
  REQUIRE_MESSAGE(python.exit_code == 0, python.output);
  REQUIRE(Eventually([&] { return server.state().watch_cancellations == 1; }));
  CHECK(Eventually(
      [&] { return server.OnLoop([&] { return server.server().connection_count(); }) == 0; }));
  const bool write_after_disconnect = server.OnLoop([&] {
    auto& cancelled = server.state().cancelled_streams;
    return cancelled.size() == 1 && !cancelled[0]->Write("late");
  });
  CHECK(write_after_disconnect);
}

TEST_CASE("GrpcServer: a stock python3-grpcio client works with stubs generated from the .proto") {
  ServerThread server;
  ProcessResult python = RunInterop(server.socket_path());
  INFO(python.output);
  CHECK(python.exit_code == 0);
  CHECK(python.output.find("interop:") != std::string::npos);
}

TEST_CASE("GrpcServer: HTTP/2 requests that are not gRPC get 405 or 415") {
  ServerThread server;
  ProcessResult python = RunInterop(server.socket_path(), "not-grpc");
  INFO(python.output);
  CHECK(python.exit_code == 0);
  CHECK(python.output.find("not-grpc: 1 checks passed") != std::string::npos);
  // That connection's misuse does not affect anyone else.
  CHECK(MustConnect(server.socket_path())->Unary(kGetCaBundle, "", 5s).ok());
}

TEST_CASE("GrpcServer: a stream past its grpc-timeout gets DEADLINE_EXCEEDED from the server") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  v1::WatchRequest request;
  request.set_namespace_("deadline");
  const auto start = std::chrono::steady_clock::now();
  Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
      kWatch, request, [](const v1::WatchEvent&) { return true; }, 300ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == ErrorCode::kDeadlineExceeded);
  // The server's message, not the client's backstop timeout.
  CHECK(status.error().message == "deadline of 300 ms exceeded");
  CHECK(elapsed >= 250ms);
  CHECK(Eventually([&] { return server.state().deadline_cancellations == 1; }));
}

TEST_CASE("GrpcServer: garbage bytes close that connection only; a good client works after") {
  ServerThread server;
  GrpcClientPtr before = MustConnect(server.socket_path());
  REQUIRE(before->Unary(kGetCaBundle, "", 5s).ok());

  const int fd = RawConnect(server.socket_path());
  const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x13garbage";
  REQUIRE(send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(garbage.size()));
  CHECK(ClosedByPeer(fd, 5s));
  close(fd);

  CHECK(before->Unary(kGetCaBundle, "", 5s).ok());
  GrpcClientPtr after = MustConnect(server.socket_path());
  CHECK(after->Unary(kGetCaBundle, "", 5s).ok());
}

TEST_CASE("GrpcServer: a connection that never sends the preface is closed after the timeout") {
  GrpcServerOptions options;
  options.handshake_timeout_ms = 200;
  ServerThread server(options);
  GrpcClientPtr good = MustConnect(server.socket_path());
  REQUIRE(good->Unary(kGetCaBundle, "", 5s).ok());

  const int fd = RawConnect(server.socket_path());
  const auto start = std::chrono::steady_clock::now();
  CHECK(ClosedByPeer(fd, 5s));
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);
  close(fd);
  // A connection that did complete the preface is not subject to it.
  CHECK(good->Unary(kGetCaBundle, "", 5s).ok());
}

TEST_CASE("GrpcServer: 100 streams are open at once on one connection") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  v1::WatchRequest request;
  request.set_namespace_("gather");
  std::vector<std::string> requests(100, request.SerializeAsString());
  std::vector<int> messages(requests.size(), 0);
  // The server answers none of them until all 100 are open, so this only
  // completes if the streams really run concurrently.
  std::vector<Status> statuses = client->ConcurrentStreams(
      kWatch, requests,
      [&](size_t index, std::string_view) {
        ++messages[index];
        return true;
      },
      20s);
  REQUIRE(statuses.size() == 100);
  for (size_t i = 0; i < statuses.size(); ++i) {
    CAPTURE(i);
    CHECK_MESSAGE(statuses[i].ok(), statuses[i].error().message);
    CHECK(messages[i] == 1);
  }
}

TEST_CASE("GrpcServer: many connections from many threads are served at the same time") {
  ServerThread server;
  constexpr int kThreads = 4;
  constexpr int kClientsPerThread = 10;
  std::atomic<int> ok_calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<GrpcClientPtr> clients;
      for (int c = 0; c < kClientsPerThread; ++c) {
        auto client = GrpcClient::Connect(server.socket_path(), 5s);
        if (client.ok()) clients.push_back(std::move(*client));
      }
      for (int round = 0; round < 3; ++round) {
        for (auto& client : clients) {
          if (client->Unary(kGetCaBundle, "", 10s).ok()) ++ok_calls;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok_calls == kThreads * kClientsPerThread * 3);
  CHECK(Eventually(
      [&] { return server.OnLoop([&] { return server.server().connection_count(); }) == 0; }));
}

TEST_CASE("GrpcServer: a 10 MiB message goes both ways") {
  ServerThread server;
  GrpcClientPtr client = MustConnect(server.socket_path());
  v1::RegisterRequest request;
  auto* meta = request.mutable_workload()->mutable_metadata();
  meta->set_name("big");
  std::string blob(10u << 20, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>('a' + i % 26);
  (*meta->mutable_labels())["blob"] = blob;
  Result<v1::RegisterResponse> reply =
      client->Call<v1::RegisterRequest, v1::RegisterResponse>(kRegister, request, 30s);
  REQUIRE_MESSAGE(reply.ok(), reply.error().message);
  CHECK(reply->workload().metadata().labels().at("blob") == blob);
}

TEST_CASE("GrpcServer: a message over the receive limit is RESOURCE_EXHAUSTED") {
  GrpcServerOptions options;
  options.max_receive_message_size = 1u << 20;
  ServerThread server(options);
  GrpcClientPtr client = MustConnect(server.socket_path());
  v1::RegisterRequest request;
  (*request.mutable_workload()->mutable_metadata()->mutable_labels())["blob"] =
      std::string(2u << 20, 'x');
  Result<v1::RegisterResponse> reply =
      client->Call<v1::RegisterRequest, v1::RegisterResponse>(kRegister, request, 10s);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.error().code == ErrorCode::kResourceExhausted);
  CHECK(reply.error().message.find("exceeds the limit of 1048576 bytes") != std::string::npos);
  // The connection survives the refusal.
  CHECK(client->Unary(kGetCaBundle, "", 5s).ok());
}

TEST_CASE("GrpcServer: a reader that falls hopelessly behind gets RESOURCE_EXHAUSTED") {
  GrpcServerOptions options;
  options.max_buffered_bytes_per_stream = 256 * 1024;
  ServerThread server(options);
  GrpcClientPtr client = MustConnect(server.socket_path());

  SUBCASE("a burst beyond the buffer limit") {
    v1::WatchRequest request;
    request.set_namespace_("flood");
    Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request, [](const v1::WatchEvent&) { return true; }, 10s);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code == ErrorCode::kResourceExhausted);
    // Nothing was sent yet, so the refusal comes as real trailers.
    CHECK(status.error().message.find("the reader of /podless.v1.Runtime/Watch is too slow: ") ==
          0);
    // The handler was stopped long before its 10000 writes, and told so.
    CHECK(server.state().flood_accepted.load() >= 1);
    CHECK(server.state().flood_accepted.load() <= 5);
    CHECK(Eventually([&] { return server.state().flood_cancellations == 1; }));
  }
  SUBCASE("a steady producer and a reader that does not keep up") {
    v1::WatchRequest request;
    request.set_namespace_("firehose");
    int received = 0;
    Status status = client->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request,
        [&](const v1::WatchEvent&) {
          ++received;
          std::this_thread::sleep_for(10ms);
          return received < 2000;  // bounds the test if the cap never triggers
        },
        60s);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code == ErrorCode::kResourceExhausted);
    // Mid-message the server cannot send trailers; it resets the stream with
    // ENHANCE_YOUR_CALM, which gRPC maps to RESOURCE_EXHAUSTED.
    const std::string& message = status.error().message;
    CHECK_MESSAGE((message.find("ENHANCE_YOUR_CALM") != std::string::npos ||
                   message.find("is too slow") != std::string::npos),
                  message);
    CHECK(received < 2000);
  }
  // The connection and the server stay healthy.
  CHECK(client->Unary(kGetCaBundle, "", 5s).ok());
}

TEST_CASE("GrpcServer: Close() ends open streams, closes connections and removes the socket") {
  ServerThread server;
  std::promise<Status> stream_status;
  std::thread watcher([&] {
    Result<GrpcClientPtr> client = GrpcClient::Connect(server.socket_path(), 5s);
    if (!client.ok()) {
      stream_status.set_value(client.error());
      return;
    }
    v1::WatchRequest request;
    request.set_namespace_("forever");
    stream_status.set_value((*client)->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kWatch, request, [](const v1::WatchEvent&) { return true; }, 20s));
  });
  REQUIRE(Eventually([&] { return server.state().ticks > 2; }));
  server.OnLoop([&] {
    server.server().Close();
    return 0;
  });
  Status status = stream_status.get_future().get();
  watcher.join();
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == ErrorCode::kUnavailable);
  CHECK(server.state().watch_cancellations == 1);
  CHECK_FALSE(std::filesystem::exists(server.socket_path()));
}

TEST_CASE("GrpcClient: a missing agent is UNAVAILABLE with a hint") {
  const TempDir dir(kTempDirPrefix);
  const std::string path = dir / "api.sock";
  Result<GrpcClientPtr> client = GrpcClient::Connect(path, 1s);
  REQUIRE_FALSE(client.ok());
  CHECK(client.error().code == ErrorCode::kUnavailable);
  CHECK(client.error().message ==
        "cannot connect to " + path + ": No such file or directory (is `podless run` running?)");
}

TEST_CASE("GrpcServer: Listen replaces a stale socket but refuses a live one or a regular file") {
  ServerThread live;
  proxy::UvLoop loop;
  {
    GrpcServer second(loop.get());
    Status status = second.Listen(live.socket_path());
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code == ErrorCode::kAlreadyExists);
  }
  // The live server was not disturbed.
  CHECK(MustConnect(live.socket_path())->Unary(kGetCaBundle, "", 5s).ok());

  const std::string stale = live.dir() + "/stale.sock";
  {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    close(fd);  // the file stays, nobody listens: a crashed agent's leftover
  }
  {
    GrpcServer replacement(loop.get());
    Status status = replacement.Listen(stale);
    CHECK_MESSAGE(status.ok(), status.error().message);
    replacement.Close();
    CHECK_FALSE(std::filesystem::exists(stale));
    // A closed server can listen again.
    status = replacement.Listen(stale);
    CHECK_MESSAGE(status.ok(), status.error().message);
  }

  const std::string regular = live.dir() + "/notes.txt";
  {
    std::FILE* f = std::fopen(regular.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
  }
  {
    GrpcServer refused(loop.get());
    Status status = refused.Listen(regular);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().message ==
          regular + " exists and is not a socket; refusing to replace it");
    CHECK(std::filesystem::exists(regular));
  }
}

}  // namespace
}  // namespace podless::api
