#include "api/cli/grpc_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "api/unix_socket_address.h"
#include "proxy/base/tcp_stream.h"
#include "runtime/grpc/protocol.h"
#include "runtime/grpc/sigpipe.h"

namespace podless::api {
namespace {

using Clock = std::chrono::steady_clock;

// The local deadline trails the grpc-timeout we send by this much, so the
// server's DEADLINE_EXCEEDED (with its message) normally arrives first and the
// local one is only the backstop for an unresponsive agent.
constexpr std::chrono::milliseconds kDeadlineGrace{250};

}  // namespace

// One call of RunCalls: what the channel tells it, recorded for the loop
// (the hooks run inside nghttp2's callbacks, where the channel must not be
// called back).
struct GrpcClient::PendingCall final : runtime::GrpcStreamSink {
  PendingCall(size_t index, size_t max_message_size,
              const std::function<bool(size_t, std::string_view)>& on_message)
      : GrpcStreamSink(max_message_size), index(index), on_message(on_message) {}

  void OnGrpcMessage(std::string message) override {
    if (stopped_by_caller || done) return;
    if (!on_message(index, message)) stopped_by_caller = true;
  }
  void OnGrpcClose(Status) override {
    done = true;
    closed = true;
  }

  size_t index;
  const std::function<bool(size_t, std::string_view)>& on_message;
  int32_t stream_id = -1;
  bool stopped_by_caller = false;
  bool done = false;
  bool closed = false;  // the channel no longer reaches it (closed or cancelled)
};

Result<GrpcClientPtr> GrpcClient::Connect(const std::string& socket_path,
                                          std::chrono::milliseconds timeout,
                                          GrpcClientOptions options) {
  auto unavailable = [&](const std::string& reason) {
    return MakeError(ErrorCode::kUnavailable, "cannot connect to " + socket_path + ": " + reason +
                                                  " (is `podless run` running?)");
  };
  auto address = UnixSocketAddress(socket_path);
  if (!address) return address.error();
  const sockaddr_un addr = *address;

  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return unavailable(std::strerror(errno));
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) break;
    const int err = errno;
    // A full accept backlog makes a non-blocking Unix connect fail with
    // EAGAIN: the agent is alive but busy, so retry until the deadline.
    if (err == EAGAIN && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    ::close(fd);
    if (err == EAGAIN) return unavailable("the agent accepts no connections (backlog full)");
    return unavailable(std::strerror(err));
  }

  GrpcClientPtr client(new GrpcClient(socket_path, std::move(options)));
  if (Status started = client->Start(fd); !started.ok()) {
    if (started.error().code == ErrorCode::kUnavailable)
      return unavailable(started.error().message);
    return started.error();
  }
  return client;
}

GrpcClient::GrpcClient(std::string socket_path, GrpcClientOptions options)
    : socket_path_(std::move(socket_path)),
      options_(std::move(options)),
      dispatcher_(loop_.get()),
      deadline_timer_(loop_.get(), [this] { deadline_passed_ = true; }) {}

GrpcClient::~GrpcClient() {
  channel_.reset();
  if (stream_ != nullptr) std::exchange(stream_, nullptr)->Reset();
  // The stream frees itself in its close callback, which must run while the
  // dispatcher it points at is alive.
  uv_run(loop_.get(), UV_RUN_DEFAULT);
}

Status GrpcClient::Start(int fd) {
  // An agent that stops mid-call must give UNAVAILABLE, not a silent death.
  runtime::IgnoreSigpipeUnlessHandled();
  proxy::TcpStream* stream = proxy::TcpStream::Adopt(dispatcher_, fd);
  if (stream == nullptr) {
    return MakeError(ErrorCode::kUnavailable, "the socket cannot join the event loop");
  }
  stream_ = stream;
  stream_->SetHandler(this);
  runtime::GrpcChannelOptions channel_options;
  channel_options.peer = "the agent";
  channel_options.user_agent = "podless-grpc-client/0.1";
  channel_options.metadata = options_.metadata;
  auto channel = runtime::GrpcChannel::Create(std::move(channel_options), *this);
  if (!channel.ok()) return channel.error();
  channel_ = std::move(channel).value();
  return channel_->Flush();  // the preface and our SETTINGS
}

void GrpcClient::MarkBroken(std::string reason) {
  if (broken_) return;
  broken_ = true;
  broken_reason_ = "connection to " + socket_path_ + " failed: " + reason;
}

void GrpcClient::OnData(std::string_view bytes) {
  if (broken_) return;
  if (Status received = channel_->Receive(bytes); !received.ok()) {
    MarkBroken(received.error().message);
  }
}

void GrpcClient::OnEnd() { MarkBroken("the agent closed the connection"); }

void GrpcClient::OnClosed(bool reset) {
  stream_ = nullptr;
  MarkBroken(reset ? "the connection was reset" : "the agent closed the connection");
}

Status GrpcClient::Send(std::string bytes) {
  if (stream_ == nullptr) {
    return MakeError(ErrorCode::kUnavailable,
                     broken_ ? broken_reason_ : "the connection to " + socket_path_ + " is closed");
  }
  stream_->Write(bytes);
  return {};
}

Status GrpcClient::Finalize(PendingCall& call) {
  if (call.stopped_by_caller && !call.response.local_error) {
    last_code_ = runtime::GrpcCode::kOk;
    return {};
  }
  std::string message;
  last_code_ = runtime::FinalCode(call.response, "the agent", &message);
  return runtime::StatusOf(last_code_, std::move(message));
}

std::vector<Status> GrpcClient::RunCalls(
    std::string_view method, const std::vector<std::string_view>& requests,
    const std::function<bool(size_t, std::string_view)>& on_message,
    std::chrono::milliseconds timeout) {
  std::vector<Status> results(requests.size());
  if (broken_) {
    for (Status& r : results) r = MakeError(ErrorCode::kUnavailable, broken_reason_);
    last_code_ = runtime::GrpcCode::kUnavailable;
    return results;
  }

  const std::string path(method);
  std::vector<std::unique_ptr<PendingCall>> calls;
  calls.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto call = std::make_unique<PendingCall>(i, options_.max_receive_message_size, on_message);
    call->outgoing = runtime::FrameGrpcMessage(requests[i]);
    call->half_close = true;
    Result<int32_t> stream_id = channel_->StartCall(path, timeout, *call);
    if (stream_id.ok()) {
      call->stream_id = *stream_id;
    } else {
      call->done = true;
      call->response.local_error =
          MakeError(ErrorCode::kUnavailable, "cannot start the call: " + stream_id.error().message);
    }
    calls.push_back(std::move(call));
  }

  deadline_passed_ = false;
  deadline_timer_.Start(static_cast<uint64_t>((timeout + kDeadlineGrace).count()));
  auto all_done = [&] {
    return std::all_of(calls.begin(), calls.end(), [](const auto& c) { return c->done; });
  };
  Status io = channel_->Flush();
  while (io.ok() && !broken_ && !all_done() && !deadline_passed_) {
    uv_run(loop_.get(), UV_RUN_ONCE);
    // Calls whose caller said stop: reset their streams, outside nghttp2's
    // callbacks.
    for (auto& call : calls) {
      if (!call->stopped_by_caller || call->done) continue;
      call->done = true;
      call->closed = true;
      if (Status cancelled = channel_->Cancel(call->stream_id); !cancelled.ok()) io = cancelled;
    }
  }
  deadline_timer_.Stop();
  if (!io.ok()) MarkBroken(io.error().message);

  for (auto& call : calls) {
    if (call->done) continue;
    call->done = true;
    call->response.local_error = broken_ ? MakeError(ErrorCode::kUnavailable, broken_reason_)
                                         : MakeError(ErrorCode::kDeadlineExceeded,
                                                     "call to " + path + " timed out after " +
                                                         std::to_string(timeout.count()) + " ms");
  }
  // Every stream the channel still knows stops reaching its call, which dies
  // here; a live one is reset so the agent stops too.
  bool cancelled = false;
  for (auto& call : calls) {
    if (call->stream_id <= 0 || call->closed) continue;
    (void)channel_->Cancel(call->stream_id);
    cancelled = true;
  }
  if (cancelled && !broken_) uv_run(loop_.get(), UV_RUN_NOWAIT);  // best effort: tell the agent

  for (auto& call : calls) results[call->index] = Finalize(*call);
  return results;
}

Result<std::string> GrpcClient::Unary(std::string_view method, std::string_view request_bytes,
                                      std::chrono::milliseconds timeout) {
  std::vector<std::string> responses;
  const std::function<bool(size_t, std::string_view)> collect = [&](size_t,
                                                                    std::string_view message) {
    responses.emplace_back(message);
    return true;
  };
  std::vector<Status> status = RunCalls(method, {request_bytes}, collect, timeout);
  if (!status[0].ok()) return status[0].error();
  if (responses.size() != 1) {
    last_code_ = runtime::GrpcCode::kInternal;
    return MakeError(ErrorCode::kInternal, "INTERNAL: " + std::string(method) + " answered with " +
                                               std::to_string(responses.size()) +
                                               " messages; a unary call needs exactly one");
  }
  return std::move(responses.front());
}

Status GrpcClient::ServerStream(std::string_view method, std::string_view request_bytes,
                                const MessageCallback& on_message,
                                std::chrono::milliseconds timeout) {
  const std::function<bool(size_t, std::string_view)> forward =
      [&](size_t, std::string_view message) { return on_message(message); };
  return std::move(RunCalls(method, {request_bytes}, forward, timeout)[0]);
}

std::vector<Status> GrpcClient::ConcurrentStreams(
    std::string_view method, const std::vector<std::string>& requests,
    const std::function<bool(size_t, std::string_view)>& on_message,
    std::chrono::milliseconds timeout) {
  std::vector<std::string_view> views(requests.begin(), requests.end());
  return RunCalls(method, views, on_message, timeout);
}

}  // namespace podless::api
