#include "api/grpc_client.h"

#include "api/unix_socket_address.h"
#include "proxy/nghttp2_nv.h"
#include "runtime/grpc_protocol.h"

#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

namespace podless::api {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunkSize = 64 * 1024;
constexpr size_t kMaxPendingOutput = 256 * 1024;
constexpr int32_t kStreamWindowSize = 1 << 20;
constexpr int32_t kConnectionWindowSize = 16 << 20;
// The local deadline trails the grpc-timeout we send by this much, so the
// server's DEADLINE_EXCEEDED (with its message) normally arrives first and the
// local one is only the backstop for an unresponsive agent.
constexpr std::chrono::milliseconds kDeadlineGrace{250};

}  // namespace

struct GrpcClient::PendingCall {
  PendingCall(size_t index, size_t max_message_size) : index(index), response(max_message_size) {}

  size_t index;
  int32_t stream_id = -1;
  std::string request_frame;
  size_t request_sent = 0;
  runtime::GrpcResponseState response;
  std::vector<std::string> messages;  // scratch for the decoder
  bool stopped_by_caller = false;
  bool done = false;
  const std::function<bool(size_t, std::string_view)>* on_message = nullptr;
};

// nghttp2 callbacks for the client session.
struct ClientCallbacks {
  static GrpcClient::PendingCall* CallOf(nghttp2_session* session, int32_t stream_id) {
    return static_cast<GrpcClient::PendingCall*>(
        nghttp2_session_get_stream_user_data(session, stream_id));
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    GrpcClient::PendingCall* call = CallOf(session, frame->hd.stream_id);
    if (call == nullptr) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      call->response.http_status = 0;
      for (char c : v) call->response.http_status = call->response.http_status * 10 + (c - '0');
    } else if (n == "grpc-status") {
      call->response.grpc_status = runtime::ParseGrpcStatus(v);
    } else if (n == "grpc-message") {
      call->response.grpc_message = runtime::PercentDecodeGrpcMessage(v);
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void*) {
    GrpcClient::PendingCall* call = CallOf(session, stream_id);
    if (call == nullptr || call->stopped_by_caller || call->response.local_error) return 0;
    call->messages.clear();
    Status fed = call->response.decoder.Feed(
        std::string_view(reinterpret_cast<const char*>(data), len), call->messages);
    for (const std::string& message : call->messages) {
      if (!(*call->on_message)(call->index, message)) {
        call->stopped_by_caller = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
        return 0;
      }
    }
    if (!fed.ok()) {
      call->response.local_error = MakeError(fed.error().code, "response: " + fed.error().message);
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    }
    return 0;
  }

  static int OnStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void*) {
    GrpcClient::PendingCall* call = CallOf(session, stream_id);
    if (call == nullptr) return 0;
    call->response.reset_code = error_code;
    call->done = true;
    return 0;
  }

  static ssize_t ReadRequest(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                             size_t length, uint32_t* data_flags, nghttp2_data_source*, void*) {
    // Looked up by stream rather than through the data source: a call that
    // timed out is gone, and its stream (reset) must not reach it.
    GrpcClient::PendingCall* call = CallOf(session, stream_id);
    if (call == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const size_t take = std::min(length, call->request_frame.size() - call->request_sent);
    std::memcpy(buf, call->request_frame.data() + call->request_sent, take);
    call->request_sent += take;
    if (call->request_sent == call->request_frame.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(take);
  }
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

  GrpcClientPtr client(new GrpcClient(fd, socket_path, std::move(options)));
  if (Status started = client->StartSession(); !started.ok()) return started.error();
  return client;
}

GrpcClient::GrpcClient(int fd, std::string socket_path, GrpcClientOptions options)
    : fd_(fd), socket_path_(std::move(socket_path)), options_(std::move(options)) {}

GrpcClient::~GrpcClient() {
  nghttp2_session_del(session_);
  ::close(fd_);
}

Status GrpcClient::StartSession() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    return MakeError(ErrorCode::kResourceExhausted, "cannot allocate nghttp2 callbacks");
  }
  nghttp2_session_callbacks_set_on_header_callback(callbacks, ClientCallbacks::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                            ClientCallbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, ClientCallbacks::OnStreamClose);
  int rv = nghttp2_session_client_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    return MakeError(ErrorCode::kInternal,
                     std::string("cannot create nghttp2 session: ") + nghttp2_strerror(rv));
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindowSize},
  };
  rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  if (rv == 0) {
    rv = nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                               kConnectionWindowSize);
  }
  if (rv != 0) {
    return MakeError(ErrorCode::kInternal,
                     std::string("cannot submit HTTP/2 settings: ") + nghttp2_strerror(rv));
  }
  return FlushOutput();
}

void GrpcClient::MarkBroken(std::string reason) {
  if (broken_) return;
  broken_ = true;
  broken_reason_ = "connection to " + socket_path_ + " failed: " + reason;
}

Status GrpcClient::FlushOutput() {
  if (broken_) return MakeError(ErrorCode::kUnavailable, broken_reason_);
  for (;;) {
    while (out_.size() < kMaxPendingOutput) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        MarkBroken(std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(n)));
        return MakeError(ErrorCode::kUnavailable, broken_reason_);
      }
      if (n == 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (out_.empty()) return {};
    const ssize_t sent = send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {};  // poll for POLLOUT
      if (errno == EINTR) continue;
      MarkBroken(std::strerror(errno));
      return MakeError(ErrorCode::kUnavailable, broken_reason_);
    }
    out_.erase(0, static_cast<size_t>(sent));
  }
}

Status GrpcClient::ReadInput() {
  char buffer[kReadChunkSize];
  for (int i = 0; i < 16; ++i) {  // bounded, so writes get their turn
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n == 0) {
      MarkBroken("the agent closed the connection");
      return MakeError(ErrorCode::kUnavailable, broken_reason_);
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
      if (errno == EINTR) continue;
      MarkBroken(std::strerror(errno));
      return MakeError(ErrorCode::kUnavailable, broken_reason_);
    }
    const ssize_t rv =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(buffer), n);
    if (rv < 0) {
      MarkBroken(std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(rv)));
      return MakeError(ErrorCode::kUnavailable, broken_reason_);
    }
  }
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
  const std::string grpc_timeout = runtime::EncodeGrpcTimeout(timeout);
  std::vector<nghttp2_nv> headers = {
      proxy::MakeNv(":method", "POST"),
      proxy::MakeNv(":scheme", "http"),
      proxy::MakeNv(":path", path),
      proxy::MakeNv(":authority", "localhost"),
      proxy::MakeNv("content-type", "application/grpc"),
      proxy::MakeNv("te", "trailers"),
      proxy::MakeNv("grpc-timeout", grpc_timeout),
      proxy::MakeNv("grpc-accept-encoding", "identity"),
      proxy::MakeNv("user-agent", "podless-grpc-client/0.1"),
  };
  for (const auto& [name, value] : options_.metadata) headers.push_back(proxy::MakeNv(name, value));

  std::vector<std::unique_ptr<PendingCall>> calls;
  calls.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto call = std::make_unique<PendingCall>(i, options_.max_receive_message_size);
    call->request_frame = runtime::FrameGrpcMessage(requests[i]);
    call->on_message = &on_message;
    nghttp2_data_provider provider = {};
    provider.read_callback = ClientCallbacks::ReadRequest;
    call->stream_id = nghttp2_submit_request(session_, nullptr, headers.data(), headers.size(),
                                             &provider, call.get());
    if (call->stream_id < 0) {
      call->done = true;
      call->response.local_error =
          MakeError(ErrorCode::kUnavailable,
                    std::string("cannot start the call: ") + nghttp2_strerror(call->stream_id));
    }
    calls.push_back(std::move(call));
  }

  const auto deadline = Clock::now() + timeout + kDeadlineGrace;
  auto all_done = [&] {
    return std::all_of(calls.begin(), calls.end(), [](const auto& c) { return c->done; });
  };
  while (!all_done()) {
    Status io = FlushOutput();
    if (io.ok() && all_done()) break;
    const auto now = Clock::now();
    if (io.ok() && now >= deadline) {
      for (auto& call : calls) {
        if (call->done) continue;
        call->done = true;
        call->response.local_error =
            MakeError(ErrorCode::kDeadlineExceeded, "call to " + path + " timed out after " +
                                                        std::to_string(timeout.count()) + " ms");
        if (call->stream_id > 0) {
          nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
        }
      }
      (void)FlushOutput();  // best effort: tell the agent to stop
      break;
    }
    if (io.ok()) {
      pollfd pfd = {fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      const int ready = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(wait, 1'000'000)));
      if (ready < 0 && errno != EINTR) {
        MarkBroken(std::strerror(errno));
        io = MakeError(ErrorCode::kUnavailable, broken_reason_);
      } else if (ready > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        io = ReadInput();
      }
    }
    if (!io.ok()) {
      for (auto& call : calls) {
        if (call->done) continue;
        call->done = true;
        call->response.local_error = MakeError(ErrorCode::kUnavailable, io.error().message);
      }
      break;
    }
  }

  for (auto& call : calls) {
    if (call->stream_id > 0 && !broken_) {
      nghttp2_session_set_stream_user_data(session_, call->stream_id, nullptr);
    }
    results[call->index] = Finalize(*call);
  }
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
