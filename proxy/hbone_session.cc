#include "proxy/hbone_session.h"

#include "proxy/base/nghttp2_nv.h"

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace podless::proxy {

// nghttp2's callbacks: cast user_data back and call a method.
struct HboneCallbacks {
  static HboneStream* StreamOf(nghttp2_session* session, int32_t stream_id) {
    return static_cast<HboneStream*>(nghttp2_session_get_stream_user_data(session, stream_id));
  }

  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    auto* self = static_cast<HboneSession*>(user_data);
    if (self->closed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (self->role_ != HboneSession::Role::kServer || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      return 0;
    }
    // Not make_unique: the constructor is private to the session.
    HboneStreamPtr owned(new HboneStream(*self));
    HboneStream* stream = owned.get();
    stream->id_ = frame->hd.stream_id;
    self->streams_[stream->id_] = std::move(owned);
    nghttp2_session_set_stream_user_data(session, stream->id_, stream);
    self->ArmTimer();
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                      void* user_data) {
    auto* self = static_cast<HboneSession*>(user_data);
    if (self->closed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    HboneStream* stream = StreamOf(session, frame->hd.stream_id);
    if (stream == nullptr) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (self->role_ == HboneSession::Role::kServer) {
      if (n == ":method")
        stream->method_connect_ = v == "CONNECT";
      else if (n == ":authority")
        stream->authority_ = v;
      else if (n == ":protocol")
        stream->has_protocol_ = true;
    } else if (n == ":status") {
      int status = 0;
      for (char c : v) status = status * 10 + (c - '0');
      stream->status_ = status;
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    auto* self = static_cast<HboneSession*>(user_data);
    if (self->closed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type == NGHTTP2_SETTINGS && !self->preface_received_) {
      // nghttp2 has checked the client magic; its first SETTINGS completes
      // the preface.
      self->preface_received_ = true;
      if (self->timer_) self->timer_->Stop();
      self->ArmTimer();
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    HboneStream* stream = StreamOf(session, frame->hd.stream_id);
    if (stream == nullptr) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (self->role_ == HboneSession::Role::kServer &&
          frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (!stream->method_connect_ || stream->has_protocol_) {
          // nghttp2 already refuses malformed CONNECTs; this is any other method.
          stream->Respond(!stream->method_connect_ ? 405 : 501);
          return 0;
        }
        self->callbacks_.OnConnectRequest(*self, *stream);
        if (self->closed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
      } else if (self->role_ == HboneSession::Role::kClient &&
                 frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        if (stream->status_ >= 100 && stream->status_ < 200) return 0;
        auto on_response = std::move(stream->on_response_);
        stream->on_response_ = nullptr;
        if (stream->status_ == 200) {
          stream->open_ = true;
          stream->SubmitData();
          if (on_response) on_response(200, "");
        } else {
          stream->detached_ = true;
          nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream->id_, NGHTTP2_CANCEL);
          if (on_response) on_response(stream->status_, "");
        }
        if (self->closed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) stream->OnPeerEnd();
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* user_data) {
    auto* self = static_cast<HboneSession*>(user_data);
    if (self->closed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    HboneStream* stream = StreamOf(session, stream_id);
    if (stream == nullptr) {
      nghttp2_session_consume_connection(session, len);
      return 0;
    }
    stream->OnBody(data, len);
    return 0;
  }

  static int OnInvalidFrameRecv(nghttp2_session*, const nghttp2_frame* frame, int,
                                void* user_data) {
    auto* self = static_cast<HboneSession*>(user_data);
    // A request over our SETTINGS_MAX_CONCURRENT_STREAMS: nghttp2 refuses
    // it (REFUSED_STREAM, or GOAWAY once the SETTINGS were acknowledged).
    if (!self->closed_ && self->role_ == HboneSession::Role::kServer &&
        frame->hd.type == NGHTTP2_HEADERS &&
        self->streams_.size() >= self->limits_.max_concurrent_streams) {
      self->callbacks_.OnStreamRefused(*self);
    }
    return 0;
  }

  static int OnStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    auto* self = static_cast<HboneSession*>(user_data);
    HboneStream* stream = StreamOf(session, stream_id);
    if (stream == nullptr || self->closed_) return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
    self->StreamClosed(stream, error_code);
    return 0;
  }

  static int OnFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    auto* self = static_cast<HboneSession*>(user_data);
    if (self->closed_) return 0;
    if (frame->hd.type == NGHTTP2_DATA) {
      // nghttp2 detached the finished data item before this call, so a
      // submission that found it still attached can be made now.
      HboneStream* stream = StreamOf(session, frame->hd.stream_id);
      if (stream != nullptr && stream->data_retry_) {
        stream->data_retry_ = false;
        stream->SubmitData();
      }
      return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    HboneStream* stream = StreamOf(session, frame->hd.stream_id);
    if (stream != nullptr && stream->refused_) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream->id_, NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  // DATA frames sized so that header + payload fill exactly one 16 KiB TLS
  // record: the default (16 KiB payloads) makes every frame a full record
  // plus a 9-byte one, twice the records to seal, send and open.
  static ssize_t DataLength(nghttp2_session*, uint8_t, int32_t, int32_t, int32_t,
                            uint32_t remote_max_frame_size, void*) {
    constexpr size_t kTlsRecord = 16 << 10;
    constexpr size_t kFrameHeader = 9;
    return static_cast<ssize_t>(std::min<size_t>(kTlsRecord - kFrameHeader, remote_max_frame_size));
  }

  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void*) {
    return static_cast<HboneStream*>(source->ptr)->ReadBody(buf, length, data_flags);
  }
};

// --- HboneStream ------------------------------------------------------------

HboneStream::~HboneStream() = default;

void HboneStream::Respond(int status) {
  if (id_ < 0 || session_.closed_) return;
  char status_text[4] = {static_cast<char>('0' + status / 100 % 10),
                         static_cast<char>('0' + status / 10 % 10),
                         static_cast<char>('0' + status % 10), 0};
  nghttp2_nv nva[] = {MakeNv(":status", std::string_view(status_text, 3))};
  if (status == 200) {
    open_ = true;
    // HEADERS without END_STREAM; the body goes in data items submitted
    // while there are bytes to send (SubmitData).
    nghttp2_submit_headers(session_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, nva, 1, nullptr);
  } else {
    detached_ = true;
    handler_ = nullptr;
    refused_ = true;
    // END_STREAM with the status; once it is sent, RST_STREAM(NO_ERROR)
    // frees the stream without waiting for the client's END_STREAM (RFC
    // 9113 section 8.1). Submitting the reset now would overtake the HEADERS.
    nghttp2_submit_response(session_.session_, id_, nva, 1, nullptr);
  }
  session_.RequestPump();
}

void HboneStream::SetHandler(StreamHandler* handler) {
  handler_ = handler;
  session_.dispatcher_.Schedule(this);
}

void HboneStream::Write(std::string_view bytes) {
  if (detached_ || end_requested_ || bytes.empty() || session_.closed_) return;
  if (out_.empty()) pending_since_ms_ = uv_now(session_.dispatcher_.loop());
  out_.Append(bytes);
  if (out_.size() > kHighWatermark) above_high_ = true;
  SubmitData();
  session_.RequestPump();
}

void HboneStream::End() {
  if (detached_ || end_requested_ || session_.closed_) return;
  end_requested_ = true;
  SubmitData();
  session_.RequestPump();
}

void HboneStream::Reset() {
  if (detached_) return;
  detached_ = true;
  handler_ = nullptr;
  if (session_.closed_) return;
  nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
  session_.RequestPump();
}

void HboneStream::SetReadPaused(bool paused) {
  read_paused_ = paused;
  if (!paused) session_.dispatcher_.Schedule(this);
}

void HboneStream::SubmitData() {
  if (!open_ || data_submitted_ || end_submitted_ || nghttp2_closed_ || session_.closed_) return;
  if (out_.empty() && !end_requested_) return;
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &HboneCallbacks::ReadBody;
  int rc = nghttp2_submit_data(session_.session_, NGHTTP2_FLAG_END_STREAM, id_, &provider);
  if (rc == 0) {
    data_submitted_ = true;
  } else if (rc == NGHTTP2_ERR_DATA_EXIST) {
    // The previous item read its last bytes but its frame is not sent yet;
    // OnFrameSend submits again once nghttp2 has let go of it.
    data_retry_ = true;
  }
}

ssize_t HboneStream::ReadBody(uint8_t* buf, size_t length, uint32_t* data_flags) {
  size_t n = out_.Read(buf, length);
  if (n > 0) {
    last_sent_ms_ = uv_now(session_.dispatcher_.loop());
    session_.last_sent_ms_ = last_sent_ms_;
  }
  if (out_.empty()) {
    // The item ends with the queue: an idle stream keeps no nghttp2 data
    // item (about 150 bytes each) while waiting for its next Write.
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    data_submitted_ = false;
    if (end_requested_ || detached_) {
      end_submitted_ = true;  // this frame carries END_STREAM
    } else {
      *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  return static_cast<ssize_t>(n);
}

void HboneStream::OnBody(const uint8_t* data, size_t len) {
  std::string_view bytes(reinterpret_cast<const char*>(data), len);
  if (detached_) {
    nghttp2_session_consume(session_.session_, id_, len);
    return;
  }
  if (read_paused_ || handler_ == nullptr || !in_.empty()) {
    // Held, and the window stays closed by these bytes until delivered.
    in_.Append(bytes);
    return;
  }
  handler_->OnData(bytes);
  if (!session_.closed_) nghttp2_session_consume(session_.session_, id_, len);
}

void HboneStream::OnPeerEnd() {
  peer_ended_ = true;
  session_.dispatcher_.Schedule(this);
}

void HboneStream::Deliver() {
  if (session_.closed_) return;
  size_t consumed = 0;
  while (!read_paused_ && handler_ != nullptr && !detached_ && !in_.empty()) {
    std::string_view front = in_.Front();
    size_t n = front.size();
    handler_->OnData(front);
    in_.Drain(n);
    consumed += n;
  }
  if (consumed > 0 && !session_.closed_ && !nghttp2_closed_) {
    nghttp2_session_consume(session_.session_, id_, consumed);
    session_.RequestPump();
  }
  if (detached_ || handler_ == nullptr || read_paused_ || !in_.empty()) return;
  if (peer_ended_ && !peer_end_delivered_) {
    peer_end_delivered_ = true;
    handler_->OnEnd();
  }
  if (nghttp2_closed_ && !detached_ && handler_ != nullptr) {
    // Closed cleanly by nghttp2 while bytes were still held for the handler.
    session_.FinishStream(this, false);
  }
}

// --- HboneSession -----------------------------------------------------------

HboneSession::HboneSession(Dispatcher& dispatcher, Role role, Stream* transport,
                           std::string peer_identity, Callbacks& callbacks)
    : dispatcher_(dispatcher),
      role_(role),
      transport_(transport),
      peer_identity_(std::move(peer_identity)),
      callbacks_(callbacks) {}

HboneSession::~HboneSession() {
  if (!closed_) {
    // Destroyed while open (shutdown): end the streams, tell no owner.
    closed_ = true;
    auto streams = std::move(streams_);
    streams_.clear();
    for (auto& [id, stream] : streams) {
      StreamHandler* handler = stream->detached_ ? nullptr : stream->handler_;
      stream.reset();
      if (handler != nullptr) handler->OnClosed(true);
    }
    if (transport_ != nullptr) transport_->Reset();
  }
  if (session_ != nullptr) nghttp2_session_del(session_);
}

Status HboneSession::Start() {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &HboneCallbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &HboneCallbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &HboneCallbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &HboneCallbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &HboneCallbacks::OnStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &HboneCallbacks::OnFrameSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs,
                                                               &HboneCallbacks::OnInvalidFrameRecv);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, &HboneCallbacks::DataLength);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  // Window updates follow what handlers take (see the header).
  nghttp2_option_set_no_auto_window_update(option, 1);
  int rc = role_ == Role::kServer ? nghttp2_session_server_new2(&session_, cbs, this, option)
                                  : nghttp2_session_client_new2(&session_, cbs, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    return MakeError(ErrorCode::kInternal, std::string("nghttp2 session: ") + nghttp2_strerror(rc));
  }
  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 16384},
  };
  if (role_ == Role::kServer) {
    settings.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams});
  } else {
    settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  }
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  if (limits_.preface_timeout_ms > 0 || limits_.stream_stall_timeout_ms > 0) {
    timer_ = std::make_unique<Timer>(dispatcher_.loop(), [this] { OnTimer(); });
    ArmTimer();
  }
  transport_->SetHandler(this);
  RequestPump();
  return {};
}

void HboneSession::ArmTimer() {
  if (closed_ || !timer_ || timer_->IsActive()) return;
  if (role_ == Role::kServer && !preface_received_ && limits_.preface_timeout_ms > 0) {
    timer_->Start(limits_.preface_timeout_ms);
    return;
  }
  if (limits_.stream_stall_timeout_ms > 0 && !streams_.empty()) {
    // Checked a few times per period, so a stall is cut off after between
    // 1 and 1.25 periods; the timer stops while there are no streams.
    uint64_t tick = std::max<uint64_t>(limits_.stream_stall_timeout_ms / 4, 10);
    timer_->Start(tick, tick);
  }
}

void HboneSession::OnTimer() {
  if (closed_) return;
  if (role_ == Role::kServer && !preface_received_ && limits_.preface_timeout_ms > 0) {
    callbacks_.OnPrefaceTimeout(*this);
    TearDown(false);
    return;
  }
  if (streams_.empty()) {
    timer_->Stop();
    return;
  }
  CheckStalls();
}

void HboneSession::CheckStalls() {
  uint64_t now = uv_now(dispatcher_.loop());
  uint64_t limit = limits_.stream_stall_timeout_ms;
  bool any_waiting = false;
  uint64_t earliest_pending = now;
  std::vector<int32_t> stalled;
  for (auto& [id, stream] : streams_) {
    if (stream->out_.empty() || !stream->open_ || stream->nghttp2_closed_) continue;
    any_waiting = true;
    earliest_pending = std::min(earliest_pending, stream->pending_since_ms_);
    // Nothing of it sent for `limit` while bytes wait: the peer's fault
    // only when the stream's own window is shut (else the connection's
    // window, checked below, or the transport, the TcpStream's write-stall
    // timeout, is what is stuck).
    uint64_t since = std::max(stream->last_sent_ms_, stream->pending_since_ms_);
    if (now - since >= limit && nghttp2_session_get_stream_remote_window_size(session_, id) <= 0) {
      stalled.push_back(id);
    }
  }
  if (any_waiting && now - std::max(last_sent_ms_, earliest_pending) >= limit &&
      nghttp2_session_get_remote_window_size(session_) <= 0) {
    // The peer keeps the whole connection's window shut.
    callbacks_.OnStreamStalled(*this);
    TearDown(false);
    return;
  }
  for (int32_t id : stalled) {
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    it->second->pending_since_ms_ = now;  // reported once
    callbacks_.OnStreamStalled(*this);
    if (closed_) return;
    // Closed through nghttp2 like any reset: the handler gets OnClosed(true).
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }
  if (!stalled.empty()) RequestPump();
}

bool HboneSession::CanOpenStream() const {
  if (closed_ || shutting_down_ || session_ == nullptr) return false;
  if (!nghttp2_session_check_request_allowed(session_)) return false;
  uint32_t max =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_.size() < max;
}

Result<HboneStream*> HboneSession::OpenStream(std::string authority,
                                              HboneStream::ResponseCallback on_response) {
  if (!CanOpenStream()) {
    return MakeError(ErrorCode::kResourceExhausted, "HBONE connection accepts no more streams");
  }
  HboneStreamPtr owned(new HboneStream(*this));
  HboneStream* stream = owned.get();
  stream->authority_ = std::move(authority);
  stream->on_response_ = std::move(on_response);
  nghttp2_nv nva[] = {MakeNv(":method", "CONNECT"), MakeNv(":authority", stream->authority_)};
  // HEADERS without END_STREAM (submit_request would set it without a data
  // provider); the body goes in data items once the tunnel is open.
  int32_t id = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, -1, nullptr, nva, 2, stream);
  if (id < 0) {
    return MakeError(ErrorCode::kUnavailable,
                     std::string("HBONE CONNECT not sent: ") + nghttp2_strerror(id));
  }
  stream->id_ = id;
  streams_[id] = std::move(owned);
  ArmTimer();
  RequestPump();
  return stream;
}

void HboneSession::Pump() {
  if (closed_ || transport_ == nullptr) return;
  while (transport_->QueuedBytes() < kHighWatermark) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      TearDown(false);
      return;
    }
    if (n == 0) break;
    transport_->Write(std::string_view(reinterpret_cast<const char*>(data), n));
  }
  // Streams whose queues drained get OnWritable (outside nghttp2's callbacks).
  std::vector<int32_t> ids;
  for (auto& [id, stream] : streams_) {
    if (stream->above_high_ && stream->out_.size() < kLowWatermark) ids.push_back(id);
  }
  for (int32_t id : ids) {
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    HboneStream* stream = it->second.get();
    stream->above_high_ = false;
    if (stream->handler_ != nullptr && !stream->detached_) stream->handler_->OnWritable();
    if (closed_) return;
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    TearDown(false);
    return;
  }
  if (shutting_down_ && streams_.empty() && transport_->QueuedBytes() == 0 &&
      !nghttp2_session_want_write(session_)) {
    TearDown(false);
  }
}

void HboneSession::OnData(std::string_view bytes) {
  if (closed_) return;
  ssize_t rc = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(bytes.data()),
                                        bytes.size());
  if (closed_) return;
  if (rc < 0) {
    // A protocol error: nghttp2 queued GOAWAY; send it, then close.
    Pump();
    TearDown(false);
    return;
  }
  Pump();
}

void HboneSession::OnEnd() {
  // The peer closed the connection: nothing more can arrive on any stream.
  TearDown(false);
}

void HboneSession::OnClosed(bool) {
  transport_ = nullptr;
  TearDown(true);
}

void HboneSession::OnWritable() { Pump(); }

void HboneSession::StreamClosed(HboneStream* stream, uint32_t error_code) {
  stream->nghttp2_closed_ = true;
  bool clean = error_code == NGHTTP2_NO_ERROR && stream->peer_ended_;
  if (clean && !stream->detached_ && stream->handler_ != nullptr &&
      (!stream->in_.empty() || !stream->peer_end_delivered_)) {
    // Bytes are still held for the handler: finish once they are delivered.
    dispatcher_.Schedule(stream);
    return;
  }
  FinishStream(stream, !clean);
}

void HboneSession::FinishStream(HboneStream* stream, bool reset) {
  // The session owns its streams from their first frame until here.
  auto node = streams_.extract(stream->id_);
  HboneStreamPtr owned = node.empty() ? HboneStreamPtr(stream) : std::move(node.mapped());
  if (!closed_ && !stream->in_.empty()) {
    // Bytes held for a handler that will never take them (a paused stream
    // that was reset): give their share of the connection window back, or
    // every such stream would shrink it for the others for good.
    nghttp2_session_consume_connection(session_, stream->in_.size());
    RequestPump();
  }
  auto on_response = std::move(stream->on_response_);
  StreamHandler* handler = stream->detached_ ? nullptr : stream->handler_;
  owned.reset();
  if (on_response) on_response(0, "HBONE stream closed before a response");
  if (handler != nullptr) handler->OnClosed(reset);
  if (!closed_) callbacks_.OnStreamCountChanged(*this);
}

void HboneSession::Shutdown() {
  if (closed_ || shutting_down_) return;
  shutting_down_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  RequestPump();
}

void HboneSession::Abort() { TearDown(false); }

void HboneSession::TearDown(bool transport_gone) {
  if (closed_) return;
  closed_ = true;
  dispatcher_.Cancel(this);
  timer_.reset();
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) {
    nghttp2_session_set_stream_user_data(session_, id, nullptr);
    auto on_response = std::move(stream->on_response_);
    StreamHandler* handler = stream->detached_ ? nullptr : stream->handler_;
    bool clean = stream->nghttp2_closed_;
    stream.reset();
    if (on_response) on_response(0, "HBONE connection closed");
    if (handler != nullptr) handler->OnClosed(!clean);
  }
  if (!transport_gone && transport_ != nullptr) {
    // Flush what nghttp2 queued (GOAWAY) is not possible without staying the
    // transport's handler; an abrupt close is what a dead session is.
    transport_->Reset();
  }
  transport_ = nullptr;
  callbacks_.OnSessionClosed(*this);
}

}  // namespace podless::proxy
