#include "api/kube/kube_http2.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <utility>
#include <vector>

#include <vector>

#include "api/kube/request_body.h"
#include "proxy/base/nghttp2_nv.h"

namespace podless::api::kube {

// nghttp2's callbacks: each casts user_data back to its connection.
struct Http2Callbacks {
  static Http2Connection* Self(void* user_data) { return static_cast<Http2Connection*>(user_data); }

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      Self(user_data)->requests_[frame->hd.stream_id];
    }
    return 0;
  }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_len, const uint8_t* value, size_t value_len, uint8_t,
                      void* user_data) {
    auto& requests = Self(user_data)->requests_;
    auto it = requests.find(frame->hd.stream_id);
    if (it == requests.end()) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), name_len);
    const std::string v(reinterpret_cast<const char*>(value), value_len);
    KubeRequest& request = it->second.request;
    if (n == ":method") request.method = v;
    if (n == ":path") request.target = v;
    if (n == "accept") request.accept = request.accept.empty() ? v : request.accept + "," + v;
    if (n == "if-none-match") request.if_none_match = v;
    if (n == "content-type") request.content_type = v;
    return 0;
  }

  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* user_data) {
    Self(user_data)->OnBodyData(stream_id,
                                std::string_view(reinterpret_cast<const char*>(data), len));
    return 0;
  }

  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Http2Connection* self = Self(user_data);
    const bool request_end =
        (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (request_end) {
      self->Respond(frame->hd.stream_id);
    } else if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      // A body follows.
      auto it = self->requests_.find(frame->hd.stream_id);
      if (it == self->requests_.end()) return 0;
      if (!self->accept_bodies_) {
        it->second.early = true;
        self->Respond(frame->hd.stream_id);
        return 0;
      }
      it->second.body_started = uv_now(self->loop_);
      if (!self->body_timer_.IsActive()) self->body_timer_.Start(self->body_timeout_ms_);
    }
    return 0;
  }

  // A response sent before its request ended: the client is told to stop
  // sending (RFC 9113 section 8.1, RST_STREAM NO_ERROR), and the stream is
  // gone rather than open until the client ends it.
  static int OnFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) return 0;
    auto& requests = Self(user_data)->requests_;
    auto it = requests.find(frame->hd.stream_id);
    if (it != requests.end() && it->second.early) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user_data) {
    auto& requests = Self(user_data)->requests_;
    auto it = requests.find(stream_id);
    if (it == requests.end()) return 0;
    // Finished or reset by the client (RST_STREAM): its producer goes.
    if (it->second.stream) it->second.stream->Cancel();
    requests.erase(it);
    return 0;
  }

  static ssize_t ReadStream(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                            uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
    auto& requests = Self(user_data)->requests_;
    auto it = requests.find(stream_id);
    if (it == requests.end() || !it->second.stream) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    ResponseStream& stream = *it->second.stream;
    if (stream.queued() == 0 && !stream.finished()) return NGHTTP2_ERR_DEFERRED;
    const std::string data = stream.Take(length);
    std::memcpy(buf, data.data(), data.size());
    if (stream.finished()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(data.size());
  }

  static ssize_t ReadBody(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
    auto& requests = Self(user_data)->requests_;
    auto it = requests.find(stream_id);
    if (it == requests.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    Http2Connection::Request& r = it->second;
    const size_t n = std::min(length, r.body.size() - r.sent);
    std::memcpy(buf, r.body.data() + r.sent, n);
    r.sent += n;
    if (r.sent == r.body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

Http2Connection::Http2Connection(uv_loop_t* loop, proxy::Stream* stream, uint64_t idle_timeout_ms,
                                 AnswerFunction answer, ClosedFunction closed)
    : stream_(stream),
      answer_(std::move(answer)),
      closed_(std::move(closed)),
      idle_timeout_ms_(idle_timeout_ms),
      idle_timer_(loop, [this] { OnIdle(); }),
      loop_(loop),
      body_limit_(kMaxRequestBodyBytes),
      body_timeout_ms_(30'000),
      body_timer_(loop, [this] { CheckBodyTimeouts(); }) {
  ArmIdleTimer();
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          Http2Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, Http2Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, Http2Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, Http2Callbacks::OnStreamClose);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, Http2Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, Http2Callbacks::OnFrameSend);
  nghttp2_session_server_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  stream_->SetHandler(this);
  Flush();
}

Http2Connection::~Http2Connection() {
  CancelStreams();
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void Http2Connection::Abort() {
  if (stream_ == nullptr) return;
  std::exchange(stream_, nullptr)->Reset();
  Finish();
}

void Http2Connection::SetBodyPolicy(bool accept, size_t limit, uint64_t timeout_ms) {
  accept_bodies_ = accept;
  body_limit_ = limit;
  body_timeout_ms_ = timeout_ms;
}

void Http2Connection::OnBodyData(int32_t stream_id, std::string_view data) {
  auto it = requests_.find(stream_id);
  if (it == requests_.end() || it->second.answered) return;  // refused: dropped
  KubeRequest& request = it->second.request;
  if (request.body.size() + data.size() > body_limit_) {
    request.body.clear();
    RespondEarly(stream_id, StatusResponse(413, "RequestEntityTooLarge",
                                           "the request body is larger than the limit of " +
                                               std::to_string(body_limit_) + " bytes"));
    return;
  }
  request.body.append(data);
}

void Http2Connection::CheckBodyTimeouts() {
  const uint64_t now = uv_now(loop_);
  uint64_t next = 0;  // the earliest deadline still ahead
  std::vector<int32_t> late;
  for (auto& [id, r] : requests_) {
    if (r.answered || r.body_started == 0) continue;
    const uint64_t deadline = r.body_started + body_timeout_ms_;
    if (deadline <= now) {
      late.push_back(id);
    } else if (next == 0 || deadline < next) {
      next = deadline;
    }
  }
  for (int32_t id : late) {
    RespondEarly(id, StatusResponse(408, "Timeout",
                                    "the request body did not arrive within " +
                                        std::to_string(body_timeout_ms_ / 1000) + "s"));
  }
  if (next != 0) body_timer_.Start(next - now);
  Flush();
}

void Http2Connection::RespondEarly(int32_t stream_id, KubeResponse response) {
  auto it = requests_.find(stream_id);
  if (it == requests_.end() || it->second.answered) return;
  Request& r = it->second;
  r.answered = true;
  r.early = true;
  r.request.body.clear();
  r.body = std::move(response.body);
  const std::string status = std::to_string(response.status);
  const std::string length = std::to_string(r.body.size());
  const nghttp2_nv headers[] = {
      proxy::MakeNv(":status", status),
      proxy::MakeNv("content-type", response.content_type),
      proxy::MakeNv("content-length", length),
      proxy::MakeNv("cache-control", "no-cache, private"),
  };
  nghttp2_data_provider provider{};
  provider.read_callback = Http2Callbacks::ReadBody;
  if (nghttp2_submit_response(session_, stream_id, headers, std::size(headers), &provider) != 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_INTERNAL_ERROR);
  }
}

void Http2Connection::ArmIdleTimer() { idle_timer_.Start(idle_timeout_ms_); }

void Http2Connection::OnIdle() {
  // A watch is quiet by nature: a connection with a streamed body open is
  // not idle (its client goes by closing the stream or the connection).
  for (const auto& [id, request] : requests_) {
    if (request.stream) {
      ArmIdleTimer();
      return;
    }
  }
  Abort();
}

void Http2Connection::CancelStreams() {
  for (auto& [id, request] : requests_) {
    if (auto stream = std::exchange(request.stream, nullptr)) stream->Cancel();
  }
}

void Http2Connection::Finish() {
  CancelStreams();
  stream_ = nullptr;
  idle_timer_.Stop();
  if (closed_) std::exchange(closed_, nullptr)(this);
}

void Http2Connection::OnData(std::string_view bytes) {
  if (stream_ == nullptr) return;
  ArmIdleTimer();
  const ssize_t rv = nghttp2_session_mem_recv(
      session_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (rv < 0) {
    Abort();  // a protocol error: nghttp2 queued GOAWAY, but the peer is not worth more
    return;
  }
  Flush();
}

void Http2Connection::OnEnd() {
  if (stream_ != nullptr) stream_->End();
}

void Http2Connection::OnClosed(bool) { Finish(); }

void Http2Connection::Respond(int32_t stream_id) {
  auto it = requests_.find(stream_id);
  if (it == requests_.end() || it->second.answered) return;
  it->second.answered = true;
  it->second.body_started = 0;
  KubeResponse response = answer_(it->second.request);
  it->second.body = std::move(response.body);
  const std::string status = std::to_string(response.status);
  const std::string length = std::to_string(it->second.body.size());
  const bool streamed = response.stream != nullptr;
  std::vector<nghttp2_nv> headers = {
      proxy::MakeNv(":status", status),
      proxy::MakeNv("content-type", response.content_type),
      proxy::MakeNv("cache-control", response.cache_control),
  };
  // A streamed body's length is not known.
  if (!streamed) headers.push_back(proxy::MakeNv("content-length", length));
  // HTTP/2 header names are lower-case; nghttp2 copies names and values.
  for (auto& [name, value] : response.headers) {
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    headers.push_back(proxy::MakeNv(name, value));
  }
  std::vector<std::string> warnings;
  for (const std::string& warning : response.warnings) warnings.push_back(WarningHeader(warning));
  for (const std::string& warning : warnings) headers.push_back(proxy::MakeNv("warning", warning));
  nghttp2_data_provider provider{};
  provider.read_callback = streamed ? Http2Callbacks::ReadStream : Http2Callbacks::ReadBody;
  // No body after HEAD, nor with 304 Not Modified.
  const bool head = it->second.request.method == "HEAD" || response.status == 304;
  if (nghttp2_submit_response(session_, stream_id, headers.data(), headers.size(),
                              head ? nullptr : &provider) != 0) {
    if (streamed) response.stream->Cancel();
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (!streamed) return;
  if (head) {
    response.stream->Cancel();
    return;
  }
  it->second.stream = std::move(response.stream);
  it->second.stream->SetReadable([this, stream_id] {
    nghttp2_session_resume_data(session_, stream_id);
    Flush();
  });
}

void Http2Connection::Flush() {
  // Above the high watermark the transport's client is not reading: leave
  // the bytes in the streams' bounded queues until OnWritable.
  while (stream_ != nullptr && stream_->QueuedBytes() <= proxy::kHighWatermark) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      Abort();
      return;
    }
    if (n == 0) break;
    stream_->Write(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(n)));
  }
  if (stream_ != nullptr && !nghttp2_session_want_read(session_) &&
      !nghttp2_session_want_write(session_)) {
    stream_->End();
  }
}

}  // namespace podless::api::kube
