#include "runtime/grpc/channel.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "proxy/base/nghttp2_nv.h"

namespace podless::runtime {
namespace {

constexpr int32_t kStreamWindowSize = 1 << 20;
constexpr int32_t kConnectionWindowSize = 16 << 20;

}  // namespace

// nghttp2 callbacks: free functions that find the call through the stream's
// user data (null once the call was cancelled) and the channel through the
// session's.
struct GrpcChannelCallbacks {
  static GrpcStreamSink* SinkOf(nghttp2_session* session, int32_t stream_id) {
    return static_cast<GrpcStreamSink*>(nghttp2_session_get_stream_user_data(session, stream_id));
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    GrpcStreamSink* sink = SinkOf(session, frame->hd.stream_id);
    if (sink == nullptr) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    GrpcResponseState& response = sink->response;
    if (n == ":status") {
      int status = 0;
      std::from_chars(v.data(), v.data() + v.size(), status);
      response.http_status = status;
    } else if (n == "grpc-status") {
      response.grpc_status = ParseGrpcStatus(v);
    } else if (n == "grpc-message") {
      response.grpc_message = PercentDecodeGrpcMessage(v);
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* user_data) {
    GrpcStreamSink* sink = SinkOf(session, stream_id);
    if (sink == nullptr || sink->response.local_error) return 0;
    std::vector<std::string> messages;
    Status fed = sink->response.decoder.Feed(
        std::string_view(reinterpret_cast<const char*>(data), len), messages);
    for (std::string& message : messages) sink->OnGrpcMessage(std::move(message));
    if (!fed.ok()) {
      const auto* self = static_cast<GrpcChannel*>(user_data);
      sink->response.local_error =
          MakeError(fed.error().code, self->options_.peer + "'s response: " + fed.error().message);
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    }
    return 0;
  }

  static int OnStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    auto* self = static_cast<GrpcChannel*>(user_data);
    if (self->open_streams_ > 0) --self->open_streams_;
    GrpcStreamSink* sink = SinkOf(session, stream_id);
    if (sink == nullptr) return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
    sink->response.reset_code = error_code;
    sink->OnGrpcClose(FinalStatus(sink->response, self->options_.peer));
    return 0;
  }

  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto* self = static_cast<GrpcChannel*>(user_data);
    if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
      self->ping_outstanding_ = false;
    }
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      const auto& goaway = frame->goaway;
      self->goaway_ =
          MakeError(ErrorCode::kUnavailable,
                    self->options_.peer + " closed the connection (GOAWAY " +
                        nghttp2_http2_strerror(goaway.error_code) + ")" +
                        (goaway.opaque_data_len > 0
                             ? ": " + std::string(reinterpret_cast<const char*>(goaway.opaque_data),
                                                  goaway.opaque_data_len)
                             : ""));
    }
    return 0;
  }

  // The request body: framed messages from the sink. An open stream with
  // nothing queued is deferred until GrpcChannel::Resume.
  static ssize_t ReadRequest(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                             size_t length, uint32_t* data_flags, nghttp2_data_source*, void*) {
    GrpcStreamSink* sink = SinkOf(session, stream_id);
    if (sink == nullptr) return NGHTTP2_ERR_DEFERRED;  // cancelled: RST_STREAM follows
    const size_t remaining = sink->outgoing.size() - sink->outgoing_sent;
    const size_t take = std::min(length, remaining);
    std::memcpy(buf, sink->outgoing.data() + sink->outgoing_sent, take);
    sink->outgoing_sent += take;
    if (sink->outgoing_sent == sink->outgoing.size()) {
      sink->outgoing.clear();
      sink->outgoing_sent = 0;
      if (sink->half_close) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (take == 0) {
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(take);
  }
};

Result<GrpcChannelPtr> GrpcChannel::Create(GrpcChannelOptions options, Output& output) {
  GrpcChannelPtr channel(new GrpcChannel(std::move(options), output));
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    return MakeError(ErrorCode::kResourceExhausted, "cannot allocate nghttp2 callbacks");
  }
  using C = GrpcChannelCallbacks;
  nghttp2_session_callbacks_set_on_header_callback(callbacks, C::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, C::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, C::OnStreamClose);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, C::OnFrameRecv);
  int rv = nghttp2_session_client_new(&channel->session_, callbacks, channel.get());
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    return MakeError(ErrorCode::kInternal,
                     std::string("cannot create an nghttp2 session: ") + nghttp2_strerror(rv));
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindowSize},
  };
  rv = nghttp2_submit_settings(channel->session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  if (rv == 0) {
    rv = nghttp2_session_set_local_window_size(channel->session_, NGHTTP2_FLAG_NONE, 0,
                                               kConnectionWindowSize);
  }
  if (rv != 0) {
    return MakeError(ErrorCode::kInternal,
                     std::string("cannot submit HTTP/2 settings: ") + nghttp2_strerror(rv));
  }
  return channel;
}

GrpcChannel::GrpcChannel(GrpcChannelOptions options, Output& output)
    : options_(std::move(options)), output_(output) {}

GrpcChannel::~GrpcChannel() { nghttp2_session_del(session_); }

Status GrpcChannel::Unavailable(std::string reason) const {
  return MakeError(ErrorCode::kUnavailable, std::move(reason));
}

Status GrpcChannel::Receive(std::string_view bytes) {
  const ssize_t rv = nghttp2_session_mem_recv(
      session_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (rv < 0) {
    return Unavailable("HTTP/2 error in " + options_.peer +
                       "'s data: " + nghttp2_strerror(static_cast<int>(rv)));
  }
  if (goaway_ && goaway_ends_channel_) return *goaway_;
  return Flush();
}

Status GrpcChannel::Flush() {
  std::string out;
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) return Unavailable(std::string("HTTP/2 error: ") + nghttp2_strerror(int(n)));
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (!out.empty()) {
    if (Status sent = output_.Send(std::move(out)); !sent.ok()) return sent;
  }
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
    return Unavailable("the HTTP/2 session with " + options_.peer + " ended");
  }
  return {};
}

Result<int32_t> GrpcChannel::StartCall(std::string_view path,
                                       std::optional<std::chrono::milliseconds> grpc_timeout,
                                       GrpcStreamSink& sink) {
  std::vector<nghttp2_nv> headers = {
      proxy::MakeNv(":method", "POST"),
      proxy::MakeNv(":scheme", options_.scheme),
      proxy::MakeNv(":path", path),
      proxy::MakeNv(":authority", options_.authority),
      proxy::MakeNv("content-type", "application/grpc"),
      proxy::MakeNv("te", "trailers"),
      proxy::MakeNv("grpc-accept-encoding", "identity"),
      proxy::MakeNv("user-agent", options_.user_agent),
  };
  std::string timeout_text;
  if (grpc_timeout) {
    timeout_text = EncodeGrpcTimeout(*grpc_timeout);
    headers.push_back(proxy::MakeNv("grpc-timeout", timeout_text));
  }
  for (const auto& [name, value] : options_.metadata) headers.push_back(proxy::MakeNv(name, value));
  nghttp2_data_provider provider = {};
  provider.read_callback = GrpcChannelCallbacks::ReadRequest;
  const int32_t stream_id =
      nghttp2_submit_request(session_, nullptr, headers.data(), headers.size(), &provider, &sink);
  if (stream_id < 0) {
    return MakeError(ErrorCode::kUnavailable, "cannot start " + std::string(path) + " on " +
                                                  options_.peer +
                                                  "'s connection: " + nghttp2_strerror(stream_id));
  }
  ++open_streams_;
  return stream_id;
}

Status GrpcChannel::Resume(int32_t stream_id) {
  // Fails harmlessly when the stream is not deferred (still sending).
  nghttp2_session_resume_data(session_, stream_id);
  return Flush();
}

void GrpcChannel::Forget(int32_t stream_id) {
  nghttp2_session_set_stream_user_data(session_, stream_id, nullptr);
}

Status GrpcChannel::Cancel(int32_t stream_id) {
  Forget(stream_id);
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
  return Flush();
}

Status GrpcChannel::SendPing() {
  if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr) != 0) {
    return Unavailable("cannot queue an HTTP/2 PING");
  }
  ping_outstanding_ = true;
  return Flush();
}

}  // namespace podless::runtime
