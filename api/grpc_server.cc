#include "api/grpc_server.h"

#include "api/unix_socket_address.h"
#include "proxy/base/nghttp2_nv.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/timer.h"
#include "runtime/grpc/protocol.h"
#include "runtime/grpc/sigpipe.h"
#include "runtime/process/process_table.h"

#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cstdio>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>

namespace podless::api {
namespace {

// Bytes of nghttp2 output gathered into one write.
constexpr size_t kWriteChunkSize = 64 * 1024;
// Socket-level backpressure: no more output is generated while this much is
// waiting in the stream's write queue; it resumes when a quarter is left
// (TcpStream watermarks). Together with HTTP/2 flow control and the
// per-stream cap this bounds a connection's memory.
constexpr size_t kMaxBytesInFlight = 1u << 20;
// Request header block limit (names + values + 32 per field, as HTTP/2
// SETTINGS_MAX_HEADER_LIST_SIZE counts).
constexpr size_t kMaxHeaderListSize = 64 * 1024;
// Receive windows large enough that a 10 MiB request is not throttled by
// WINDOW_UPDATE round trips; nghttp2 consumes received data at once, and the
// real memory bound is max_receive_message_size.
constexpr int32_t kStreamWindowSize = 1 << 20;
constexpr int32_t kConnectionWindowSize = 16 << 20;
constexpr int kListenBacklog = 128;

// Bytes PercentEncodeGrpcMessage makes of `c`.
size_t PercentEncodedSize(unsigned char c) { return c >= 0x20 && c <= 0x7E && c != '%' ? 1 : 3; }

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

bool IsGrpcContentType(std::string_view type) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (type.substr(0, kGrpc.size()) != kGrpc) return false;
  if (type.size() == kGrpc.size()) return true;
  // "application/grpc+proto", "application/grpc;charset=..."
  return type[kGrpc.size()] == '+' || type[kGrpc.size()] == ';';
}

// Headers the gRPC protocol itself uses; they are not call metadata.
bool IsProtocolHeader(std::string_view name) {
  return name == "content-type" || name == "te" || name == "grpc-timeout" ||
         name == "grpc-encoding" || name == "grpc-accept-encoding" || name == "content-length";
}

}  // namespace

std::string EncodeGrpcStatusMessage(std::string_view message, size_t max_bytes) {
  std::string encoded = runtime::PercentEncodeGrpcMessage(message);
  if (encoded.size() <= max_bytes) return encoded;
  const std::string marker = runtime::PercentEncodeGrpcMessage(
      "\n... (cut to " + std::to_string(max_bytes) + " bytes: the whole message was " +
      std::to_string(message.size()) + " bytes)");
  const size_t budget = max_bytes > marker.size() ? max_bytes - marker.size() : 0;
  size_t keep = 0;  // bytes of `message` kept
  for (size_t used = 0; keep < message.size(); ++keep) {
    used += PercentEncodedSize(static_cast<unsigned char>(message[keep]));
    if (used > budget) break;
  }
  // Not inside a UTF-8 character (a lead byte has at most three followers).
  for (int i = 0; i < 3 && keep > 0 && IsUtf8Continuation(message[keep]); ++i) --keep;
  // Whole lines read better, unless that throws away more than half.
  const size_t line_end = keep > 0 ? message.rfind('\n', keep - 1) : std::string_view::npos;
  if (line_end != std::string_view::npos && line_end >= keep / 2) keep = line_end;
  std::string out = runtime::PercentEncodeGrpcMessage(message.substr(0, keep));
  if (out.size() + marker.size() <= max_bytes) return out + marker;
  // A limit too small for the marker: a cut that is still whole escapes.
  out = encoded.substr(0, max_bytes);
  const size_t percent = out.rfind('%');
  if (percent != std::string::npos && percent + 3 > out.size()) out.resize(percent);
  return out;
}

class ServerStreamImpl;

// One HTTP/2 stream, i.e. one call. Owned by its connection, destroyed when
// nghttp2 closes the stream or with the connection.
struct GrpcStream {
  GrpcStream(GrpcConnection& connection, int32_t id, size_t max_message_size)
      : connection(connection), id(id), decoder(max_message_size) {}
  ~GrpcStream();

  GrpcConnection& connection;
  const int32_t id;

  // Request side.
  std::string http_method;
  std::string path;
  std::string content_type;
  std::string grpc_timeout;
  std::string grpc_encoding;
  std::multimap<std::string, std::string> metadata;
  size_t header_list_size = 0;
  runtime::GrpcMessageDecoder decoder;
  std::vector<std::string> requests;
  const GrpcServer::Method* method = nullptr;

  // Response side.
  bool responded = false;  // response HEADERS submitted
  bool finished = false;   // the final status is decided; no more messages
  bool data_deferred = false;
  bool reset = false;  // RST_STREAM submitted instead of trailers
  runtime::GrpcCode final_code = runtime::GrpcCode::kOk;
  std::string final_message;
  std::deque<std::string> out;     // framed messages not yet handed to nghttp2
  size_t out_front_offset = 0;     // bytes of out.front() already handed over
  size_t out_bytes = 0;            // total not yet handed over
  proxy::TimerPtr deadline_timer;  // only with a grpc-timeout
  uint64_t deadline_ms = 0;
  std::weak_ptr<ServerStreamImpl> handle;
  bool counted = false;  // on_call_end told (CountEnd)
};

// The handler's view of a server-streaming call. It points at its stream
// until the stream ends; after that every method is a harmless no-op.
class ServerStreamImpl final : public ServerStream,
                               public std::enable_shared_from_this<ServerStreamImpl> {
 public:
  explicit ServerStreamImpl(GrpcStream& stream) : stream_(&stream) {}
  ~ServerStreamImpl() override;

  // ServerStream
  bool Write(std::string_view message_bytes) override;
  void Finish(const Status& status) override;
  bool cancelled() const override { return cancelled_; }
  void OnCancel(std::function<void()> callback) override {
    if (cancelled_) {
      if (callback) callback();
      return;
    }
    if (stream_ != nullptr) on_cancel_ = std::move(callback);
  }
  size_t buffered_bytes() const override { return stream_ ? stream_->out_bytes : 0; }

  // Called by the connection: the stream is gone or no longer writable.
  void Detach() { stream_ = nullptr; }
  // Ends the handler's part of the call. The callback runs at once, or, when
  // `server` is given, on the next loop turn: a cancel caused by Write()
  // must not run user code nested inside the user's own Write() call (it may
  // be iterating the very list the callback edits).
  void Cancel(GrpcServer* server = nullptr) {
    stream_ = nullptr;
    cancelled_ = true;
    if (!on_cancel_) return;
    if (server != nullptr) {
      server->Defer([self = shared_from_this()] { self->RunCancelCallback(); });
    } else {
      auto self = shared_from_this();  // the callback may drop the last user reference
      RunCancelCallback();
    }
  }
  void RunCancelCallback() {
    if (auto callback = std::exchange(on_cancel_, nullptr)) callback();
  }

 private:
  GrpcStream* stream_;
  bool cancelled_ = false;
  std::function<void()> on_cancel_;
};

GrpcStream::~GrpcStream() {
  if (auto h = handle.lock()) h->Detach();
}

// One accepted Unix-socket connection with its nghttp2 server session, on
// the data plane's stream (proxy::TcpStream: its write queue, watermarks and
// deferred deletion).
class GrpcConnection final : private proxy::StreamHandler, private proxy::DeferredTask {
 public:
  GrpcConnection(GrpcServer& server, proxy::TcpStream* stream);
  ~GrpcConnection() override;
  GrpcConnection(const GrpcConnection&) = delete;
  GrpcConnection& operator=(const GrpcConnection&) = delete;

  Status Start();
  // Closes the socket at once; the calls' cancel callbacks fire. The object
  // itself is destroyed by the server on a later loop turn.
  void Close();

  // For ServerStreamImpl and the typed paths: never send synchronously, only
  // queue in nghttp2 and schedule a flush, so no nghttp2 callback (which could
  // destroy streams) ever runs below a handler's call.
  bool WriteMessage(GrpcStream& stream, std::string_view message);
  void FinishStream(GrpcStream& stream, runtime::GrpcCode code, std::string message);

  // nghttp2 callbacks (see the free functions below).
  int OnBeginHeaders(const nghttp2_frame& frame);
  int OnHeader(const nghttp2_frame& frame, std::string_view name, std::string_view value);
  int OnFrameRecv(const nghttp2_frame& frame);
  int OnDataChunk(int32_t stream_id, std::string_view data);
  int OnStreamClose(int32_t stream_id);
  void CountEnd(GrpcStream& stream);
  int OnFrameNotSent(const nghttp2_frame& frame, int error);
  ssize_t OnReadData(int32_t stream_id, uint8_t* buf, size_t length, uint32_t* data_flags);

 private:
  // proxy::StreamHandler
  void OnData(std::string_view bytes) override;
  void OnEnd() override { Close(); }  // the peer is gone
  void OnClosed(bool) override {
    stream_ = nullptr;
    Close();
  }
  void OnWritable() override { Flush(); }
  // proxy::DeferredTask: output queued in nghttp2 by a handler's call.
  void RunDeferred() override { Flush(); }

  void Flush();
  void ScheduleFlush();

  void OnRequestHeaders(GrpcStream& stream);
  void OnRequestEnd(GrpcStream& stream);
  void Dispatch(GrpcStream& stream);
  void StartResponse(GrpcStream& stream);
  void RespondHttpError(GrpcStream& stream, const char* status);
  // Ends a call the server gives up on (deadline, slow reader): trailers if
  // the response is at a message boundary, otherwise RST_STREAM with
  // `rst_code` (which gRPC clients map to a status as well).
  void AbortStream(GrpcStream& stream, runtime::GrpcCode code, std::string message,
                   uint32_t rst_code, bool defer_cancel);
  void CancelHandle(GrpcStream& stream, bool defer = false);
  // Ends a stream whose response or status cannot be sent: RST_STREAM, which
  // every client takes as the end of the call.
  void ResetStream(GrpcStream& stream, uint32_t rst_code);
  // The grpc-message value of `message`, within the server's limit.
  std::string EncodeStatusMessage(std::string_view message) const {
    return EncodeGrpcStatusMessage(message, server_.options_.max_status_message_bytes);
  }
  GrpcStream* FindStream(int32_t id);

  GrpcServer& server_;
  proxy::TcpStream* stream_;         // owns itself; null once closed
  proxy::TimerPtr handshake_timer_;  // until the HTTP/2 preface is complete
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, std::unique_ptr<GrpcStream>> streams_;
  bool in_session_ = false;  // inside nghttp2_session_mem_recv/mem_send
  bool closed_ = false;
  bool got_settings_ = false;
  pid_t peer_pid_ = 0;
  uid_t peer_uid_ = 0;
  gid_t peer_gid_ = 0;
  uint64_t peer_start_time_ = 0;
};

ServerStreamImpl::~ServerStreamImpl() {
  // The handler let go without finishing: the call is complete.
  if (stream_ != nullptr) stream_->connection.FinishStream(*stream_, runtime::GrpcCode::kOk, "");
}

bool ServerStreamImpl::Write(std::string_view message_bytes) {
  if (stream_ == nullptr) return false;
  auto self = shared_from_this();  // a cancel callback may drop the user's reference
  return stream_->connection.WriteMessage(*stream_, message_bytes);
}

void ServerStreamImpl::Finish(const Status& status) {
  if (stream_ == nullptr) return;
  GrpcStream* stream = std::exchange(stream_, nullptr);
  on_cancel_ = nullptr;  // the handler is done; break any cycle through it
  if (status.ok()) {
    stream->connection.FinishStream(*stream, runtime::GrpcCode::kOk, "");
  } else {
    stream->connection.FinishStream(*stream, runtime::ToGrpcCode(status.error().code),
                                    status.error().message);
  }
}

namespace {

// nghttp2 callbacks: cast user_data back to the connection, call a method.
GrpcConnection& Conn(void* user_data) { return *static_cast<GrpcConnection*>(user_data); }

int OnBeginHeadersCallback(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  return Conn(user_data).OnBeginHeaders(*frame);
}

int OnHeaderCallback(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                     size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                     void* user_data) {
  return Conn(user_data).OnHeader(*frame,
                                  std::string_view(reinterpret_cast<const char*>(name), namelen),
                                  std::string_view(reinterpret_cast<const char*>(value), valuelen));
}

int OnFrameRecvCallback(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  return Conn(user_data).OnFrameRecv(*frame);
}

int OnDataChunkRecvCallback(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                            size_t len, void* user_data) {
  return Conn(user_data).OnDataChunk(stream_id,
                                     std::string_view(reinterpret_cast<const char*>(data), len));
}

int OnStreamCloseCallback(nghttp2_session*, int32_t stream_id, uint32_t, void* user_data) {
  return Conn(user_data).OnStreamClose(stream_id);
}

int OnFrameNotSendCallback(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code,
                           void* user_data) {
  return Conn(user_data).OnFrameNotSent(*frame, lib_error_code);
}

ssize_t ReadDataCallback(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                         uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
  return Conn(user_data).OnReadData(stream_id, buf, length, data_flags);
}

}  // namespace

GrpcConnection::GrpcConnection(GrpcServer& server, proxy::TcpStream* stream)
    : server_(server), stream_(stream) {}

GrpcConnection::~GrpcConnection() {
  if (stream_ != nullptr) stream_->Close();
  // nghttp2_session_del runs no callbacks; the streams then detach their
  // handles as they are destroyed.
  nghttp2_session_del(session_);
  streams_.clear();
}

Status GrpcConnection::Start() {
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(stream_->tcp()), &fd) == 0) {
    struct ucred cred = {};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      peer_pid_ = cred.pid;
      peer_uid_ = cred.uid;
      peer_gid_ = cred.gid;
      if (auto stat = runtime::ReadProcStat(cred.pid)) peer_start_time_ = stat->start_time;
    }
  }

  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    return MakeError(ErrorCode::kResourceExhausted, "cannot allocate nghttp2 callbacks");
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, OnBeginHeadersCallback);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, OnHeaderCallback);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, OnFrameRecvCallback);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, OnDataChunkRecvCallback);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, OnStreamCloseCallback);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, OnFrameNotSendCallback);
  int rv = nghttp2_session_server_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    return MakeError(ErrorCode::kResourceExhausted,
                     std::string("cannot create nghttp2 session: ") + nghttp2_strerror(rv));
  }

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server_.options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindowSize},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderListSize},
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

  // A peer that never completes the HTTP/2 preface must not hold a socket
  // (and a session) forever.
  handshake_timer_ = std::make_unique<proxy::Timer>(server_.loop_, [this] { Close(); });
  handshake_timer_->Start(server_.options_.handshake_timeout_ms);

  stream_->SetWatermarks(kMaxBytesInFlight - 1, kMaxBytesInFlight / 4);
  stream_->SetHandler(this);
  Flush();  // our SETTINGS
  return {};
}

void GrpcConnection::Close() {
  if (closed_) return;
  closed_ = true;
  handshake_timer_.reset();
  server_.dispatcher_.Cancel(this);
  if (stream_ != nullptr) std::exchange(stream_, nullptr)->Close();
  for (auto& [id, stream] : streams_) {
    stream->deadline_timer.reset();
    if (!stream->finished) {
      stream->finished = true;
      stream->final_code = runtime::GrpcCode::kCancelled;  // the client is gone
      CancelHandle(*stream);
    } else if (auto h = stream->handle.lock()) {
      h->Detach();
    }
    CountEnd(*stream);
  }
  server_.Retire(this);
}

void GrpcConnection::OnData(std::string_view bytes) {
  if (closed_) return;
  in_session_ = true;
  const ssize_t rv = nghttp2_session_mem_recv(
      session_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  in_session_ = false;
  if (closed_) return;
  if (rv < 0) {
    // Garbage, a bad preface or a protocol violation nghttp2 cannot answer
    // with GOAWAY: drop this connection; the others are not affected.
    Close();
    return;
  }
  Flush();
}

void GrpcConnection::ScheduleFlush() {
  if (!closed_) server_.dispatcher_.Schedule(this);
}

void GrpcConnection::Flush() {
  if (closed_ || in_session_) return;
  while (stream_->QueuedBytes() < kMaxBytesInFlight) {
    std::string chunk;
    in_session_ = true;
    ssize_t n = 0;
    while (chunk.size() < kWriteChunkSize) {
      const uint8_t* data = nullptr;
      n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) break;
      chunk.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    in_session_ = false;
    if (closed_) return;  // a cancel callback closed the server
    if (n < 0) {
      Close();
      return;
    }
    if (chunk.empty()) break;
    stream_->Write(chunk);
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    // GOAWAY exchanged and every stream done: FIN after what is queued (the
    // peer's close then ends the connection), or close now.
    if (stream_->QueuedBytes() == 0) {
      Close();
    } else {
      stream_->End();
    }
  }
}

GrpcStream* GrpcConnection::FindStream(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int GrpcConnection::OnBeginHeaders(const nghttp2_frame& frame) {
  if (frame.hd.type != NGHTTP2_HEADERS || frame.headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto stream = std::make_unique<GrpcStream>(*this, frame.hd.stream_id,
                                             server_.options_.max_receive_message_size);
  nghttp2_session_set_stream_user_data(session_, frame.hd.stream_id, stream.get());
  streams_[frame.hd.stream_id] = std::move(stream);
  return 0;
}

int GrpcConnection::OnHeader(const nghttp2_frame& frame, std::string_view name,
                             std::string_view value) {
  if (frame.hd.type != NGHTTP2_HEADERS || frame.headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;  // request trailers carry nothing we use
  }
  GrpcStream* stream = FindStream(frame.hd.stream_id);
  if (stream == nullptr) return 0;
  stream->header_list_size += name.size() + value.size() + 32;
  if (stream->header_list_size > kMaxHeaderListSize) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets just this stream
  }
  if (name == ":method") {
    stream->http_method = value;
  } else if (name == ":path") {
    stream->path = value;
  } else if (name == "content-type") {
    stream->content_type = value;
  } else if (name == "grpc-timeout") {
    stream->grpc_timeout = value;
  } else if (name == "grpc-encoding") {
    stream->grpc_encoding = value;
  } else if (!name.empty() && name[0] != ':' && !IsProtocolHeader(name)) {
    stream->metadata.emplace(name, value);
  }
  return 0;
}

int GrpcConnection::OnFrameRecv(const nghttp2_frame& frame) {
  if (closed_) return 0;  // a handler closed the server while frames remained
  if (frame.hd.type == NGHTTP2_SETTINGS && (frame.hd.flags & NGHTTP2_FLAG_ACK) == 0 &&
      !got_settings_) {
    got_settings_ = true;  // the preface is complete
    handshake_timer_.reset();
    return 0;
  }
  GrpcStream* stream = FindStream(frame.hd.stream_id);
  if (stream == nullptr) return 0;
  if (frame.hd.type == NGHTTP2_HEADERS && frame.headers.cat == NGHTTP2_HCAT_REQUEST) {
    OnRequestHeaders(*stream);
  }
  if ((frame.hd.type == NGHTTP2_HEADERS || frame.hd.type == NGHTTP2_DATA) &&
      (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && !closed_) {
    OnRequestEnd(*stream);
  }
  return 0;
}

void GrpcConnection::OnRequestHeaders(GrpcStream& stream) {
  if (stream.http_method != "POST") {
    RespondHttpError(stream, "405");
    return;
  }
  if (!IsGrpcContentType(stream.content_type)) {
    RespondHttpError(stream, "415");
    return;
  }
  if (!stream.grpc_encoding.empty() && stream.grpc_encoding != "identity") {
    FinishStream(stream, runtime::GrpcCode::kUnimplemented,
                 "grpc-encoding \"" + stream.grpc_encoding +
                     "\" is not supported; this server accepts identity only");
    return;
  }
  stream.method = server_.FindMethod(stream.path);
  if (stream.method == nullptr) {
    FinishStream(stream, runtime::GrpcCode::kUnimplemented, "unknown method " + stream.path);
    return;
  }
  if (!stream.grpc_timeout.empty()) {
    std::optional<uint64_t> timeout_ms = runtime::ParseGrpcTimeoutMs(stream.grpc_timeout);
    if (!timeout_ms) {
      FinishStream(stream, runtime::GrpcCode::kInvalidArgument,
                   "invalid grpc-timeout header \"" + stream.grpc_timeout +
                       "\": expected 1 to 8 digits and a unit (H, M, S, m, u, n)");
      return;
    }
    stream.deadline_ms = *timeout_ms;
    // The timer is the stream's: it dies with it.
    stream.deadline_timer = std::make_unique<proxy::Timer>(server_.loop_, [s = &stream] {
      if (s->finished) return;
      s->connection.AbortStream(*s, runtime::GrpcCode::kDeadlineExceeded,
                                "deadline of " + std::to_string(s->deadline_ms) + " ms exceeded",
                                NGHTTP2_CANCEL, /*defer_cancel=*/false);
    });
    stream.deadline_timer->Start(*timeout_ms);
  }
}

int GrpcConnection::OnDataChunk(int32_t stream_id, std::string_view data) {
  GrpcStream* stream = FindStream(stream_id);
  if (closed_ || stream == nullptr || stream->finished) return 0;  // answered: discard
  Status fed = stream->decoder.Feed(data, stream->requests);
  if (!fed.ok()) {
    FinishStream(*stream, runtime::ToGrpcCode(fed.error().code),
                 "request to " + stream->path + ": " + fed.error().message);
  } else if (stream->requests.size() > 1) {
    FinishStream(*stream, runtime::GrpcCode::kInvalidArgument,
                 stream->path + " takes exactly one request message, got more");
  }
  return 0;
}

void GrpcConnection::OnRequestEnd(GrpcStream& stream) {
  if (stream.finished) return;
  if (!stream.decoder.at_message_boundary()) {
    FinishStream(stream, runtime::GrpcCode::kInternal,
                 "request to " + stream.path + " ended inside a grpc message");
    return;
  }
  if (stream.requests.size() != 1) {
    FinishStream(stream, runtime::GrpcCode::kInvalidArgument,
                 stream.path + " takes exactly one request message, got none");
    return;
  }
  Dispatch(stream);
}

void GrpcConnection::Dispatch(GrpcStream& stream) {
  CallContext context;
  context.method = stream.path;
  context.metadata = std::move(stream.metadata);
  context.pid = peer_pid_;
  context.uid = peer_uid_;
  context.gid = peer_gid_;
  context.start_time = peer_start_time_;
  // A connection handed on by a process that has exited must not be taken
  // for whatever process gets its pid next.
  if (peer_pid_ > 0 && !runtime::IsSameProcess(peer_pid_, peer_start_time_)) {
    FinishStream(stream, runtime::GrpcCode::kPermissionDenied,
                 "the process that opened this connection (pid " + std::to_string(peer_pid_) +
                     ") has exited");
    return;
  }
  if (server_.options_.refuse_caller) {
    if (std::string why = server_.options_.refuse_caller(context); !why.empty()) {
      FinishStream(stream, runtime::GrpcCode::kPermissionDenied, why);
      return;
    }
  }
  const std::string request = std::move(stream.requests.front());
  stream.requests.clear();

  if (const UnaryHandler& unary = stream.method->first) {
    Result<std::string> response = unary(context, request);
    if (closed_ || stream.finished) return;  // the handler closed the server
    if (!response.ok()) {
      FinishStream(stream, runtime::ToGrpcCode(response.error().code), response.error().message);
      return;
    }
    WriteMessage(stream, *response);
    FinishStream(stream, runtime::GrpcCode::kOk, "");
    return;
  }

  auto handle = std::make_shared<ServerStreamImpl>(stream);
  stream.handle = handle;
  stream.method->second(context, request, handle);
  if (closed_) return;
  // Send the response headers now so the client knows the call is accepted,
  // even if the first message comes much later.
  if (!stream.finished && !stream.responded) StartResponse(stream);
  // `handle` goes out of scope here: if the handler kept no reference, the
  // call is complete and finishes with OK.
}

void GrpcConnection::StartResponse(GrpcStream& stream) {
  if (stream.responded) return;
  stream.responded = true;
  const nghttp2_nv headers[] = {
      proxy::MakeNv(":status", "200"),
      proxy::MakeNv("content-type", "application/grpc"),
      proxy::MakeNv("grpc-accept-encoding", "identity"),
  };
  nghttp2_data_provider provider = {};
  provider.read_callback = ReadDataCallback;
  if (nghttp2_submit_response(session_, stream.id, headers, std::size(headers), &provider) != 0) {
    ResetStream(stream, NGHTTP2_INTERNAL_ERROR);
    CancelHandle(stream, /*defer=*/true);
  }
  ScheduleFlush();
}

void GrpcConnection::RespondHttpError(GrpcStream& stream, const char* status) {
  stream.finished = true;
  stream.responded = true;
  const std::string grpc_status = std::to_string(static_cast<int>(runtime::GrpcCode::kInternal));
  const std::string grpc_message = EncodeStatusMessage(
      "this is a gRPC endpoint: requests must be POST with content-type application/grpc, got " +
      stream.http_method + " with content-type \"" + stream.content_type + "\"");
  const nghttp2_nv headers[] = {
      proxy::MakeNv(":status", status),
      proxy::MakeNv("content-type", "application/grpc"),
      proxy::MakeNv("grpc-status", grpc_status),
      proxy::MakeNv("grpc-message", grpc_message),
  };
  if (nghttp2_submit_response(session_, stream.id, headers, std::size(headers), nullptr) != 0) {
    ResetStream(stream, NGHTTP2_INTERNAL_ERROR);
  }
  ScheduleFlush();
}

bool GrpcConnection::WriteMessage(GrpcStream& stream, std::string_view message) {
  if (closed_ || stream.finished) return false;
  const size_t frame_size = runtime::kGrpcFrameHeaderSize + message.size();
  const size_t limit = server_.options_.max_buffered_bytes_per_stream;
  if (stream.out_bytes > 0 && stream.out_bytes + frame_size > limit) {
    AbortStream(stream, runtime::GrpcCode::kResourceExhausted,
                "the reader of " + stream.path +
                    " is too slow: " + std::to_string(stream.out_bytes) +
                    " bytes are queued and the limit is " + std::to_string(limit),
                NGHTTP2_ENHANCE_YOUR_CALM, /*defer_cancel=*/true);
    return false;
  }
  stream.out.push_back(runtime::FrameGrpcMessage(message));
  stream.out_bytes += frame_size;
  if (!stream.responded) {
    StartResponse(stream);
  } else if (stream.data_deferred) {
    stream.data_deferred = false;
    nghttp2_session_resume_data(session_, stream.id);
  }
  ScheduleFlush();
  return !stream.reset;
}

void GrpcConnection::FinishStream(GrpcStream& stream, runtime::GrpcCode code, std::string message) {
  if (closed_ || stream.finished) return;
  stream.finished = true;
  stream.final_code = code;
  stream.final_message = std::move(message);
  stream.deadline_timer.reset();
  if (!stream.responded) {
    // Trailers-Only: one HEADERS frame with the status and END_STREAM.
    stream.responded = true;
    const std::string status = std::to_string(static_cast<int>(code));
    const std::string encoded = EncodeStatusMessage(stream.final_message);
    nghttp2_nv headers[] = {
        proxy::MakeNv(":status", "200"),
        proxy::MakeNv("content-type", "application/grpc"),
        proxy::MakeNv("grpc-status", status),
        proxy::MakeNv("grpc-message", encoded),
    };
    const size_t count = encoded.empty() ? 3 : 4;
    if (nghttp2_submit_response(session_, stream.id, headers, count, nullptr) != 0) {
      ResetStream(stream, NGHTTP2_INTERNAL_ERROR);
    }
  } else if (stream.data_deferred) {
    // The data provider sends what is queued, then the trailers.
    stream.data_deferred = false;
    nghttp2_session_resume_data(session_, stream.id);
  }
  ScheduleFlush();
}

void GrpcConnection::AbortStream(GrpcStream& stream, runtime::GrpcCode code, std::string message,
                                 uint32_t rst_code, bool defer_cancel) {
  if (closed_ || stream.finished) return;
  if (stream.out_front_offset == 0) {
    // At a message boundary: drop what is queued and send real trailers.
    stream.out.clear();
    stream.out_bytes = 0;
    FinishStream(stream, code, std::move(message));
  } else {
    // Mid-message: trailers cannot follow half a message.
    ResetStream(stream, rst_code);
    ScheduleFlush();
  }
  CancelHandle(stream, defer_cancel);
}

void GrpcConnection::ResetStream(GrpcStream& stream, uint32_t rst_code) {
  // The code the call ends with, as its client will see it, unless its
  // status was decided already (and could not be sent).
  if (!stream.finished) stream.final_code = runtime::CodeForResetStream(rst_code);
  stream.finished = true;
  stream.responded = true;
  stream.reset = true;
  stream.deadline_timer.reset();
  stream.out.clear();
  stream.out_bytes = 0;
  // Fails only for an invalid stream id or out of memory; then the stream is
  // gone already, or the session fails and the connection closes.
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, rst_code);
}

void GrpcConnection::CancelHandle(GrpcStream& stream, bool defer) {
  if (auto h = stream.handle.lock()) h->Cancel(defer ? &server_ : nullptr);
}

ssize_t GrpcConnection::OnReadData(int32_t stream_id, uint8_t* buf, size_t length,
                                   uint32_t* data_flags) {
  GrpcStream* stream = FindStream(stream_id);
  if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (stream->reset) {
    stream->data_deferred = true;
    return NGHTTP2_ERR_DEFERRED;  // RST_STREAM is queued; it ends the stream
  }
  size_t copied = 0;
  while (copied < length && !stream->out.empty()) {
    const std::string& front = stream->out.front();
    const size_t take = std::min(length - copied, front.size() - stream->out_front_offset);
    std::memcpy(buf + copied, front.data() + stream->out_front_offset, take);
    copied += take;
    stream->out_front_offset += take;
    if (stream->out_front_offset == front.size()) {
      stream->out.pop_front();
      stream->out_front_offset = 0;
    }
  }
  stream->out_bytes -= copied;
  if (stream->out.empty() && stream->finished) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    const std::string status = std::to_string(static_cast<int>(stream->final_code));
    const std::string encoded = EncodeStatusMessage(stream->final_message);
    nghttp2_nv trailers[] = {
        proxy::MakeNv("grpc-status", status),
        proxy::MakeNv("grpc-message", encoded),
    };
    if (nghttp2_submit_trailer(session_, stream_id, trailers, encoded.empty() ? 1 : 2) != 0) {
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
  } else if (copied == 0) {
    stream->data_deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(copied);
}

int GrpcConnection::OnFrameNotSent(const nghttp2_frame& frame, int error) {
  // Our HEADERS are the response headers and the trailers (with the status):
  // without them the client would wait for the end of the call forever.
  // A stream the client closed first needs nothing more.
  if (frame.hd.type != NGHTTP2_HEADERS || error == NGHTTP2_ERR_STREAM_CLOSED ||
      error == NGHTTP2_ERR_STREAM_CLOSING) {
    return 0;
  }
  GrpcStream* stream = FindStream(frame.hd.stream_id);
  if (stream == nullptr || stream->reset) return 0;
  if (server_.options_.log) {
    server_.options_.log(
        server_.options_.listener_name + ": cannot send the " +
        std::string(stream->responded && stream->finished ? "status" : "response") + " of " +
        stream->path + " (" + nghttp2_strerror(error) + "); resetting the stream");
  }
  const bool was_finished = stream->finished;
  ResetStream(*stream, NGHTTP2_INTERNAL_ERROR);
  if (!was_finished) CancelHandle(*stream, /*defer=*/true);
  return 0;
}

int GrpcConnection::OnStreamClose(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return 0;
  std::unique_ptr<GrpcStream> stream = std::move(it->second);
  streams_.erase(it);
  stream->deadline_timer.reset();
  if (!stream->finished) {
    // The client cancelled (RST_STREAM) before the call ended.
    stream->finished = true;
    stream->final_code = runtime::GrpcCode::kCancelled;
    CancelHandle(*stream);
  }
  CountEnd(*stream);
  return 0;
}

// Every call is counted once, when its stream closes (or its connection),
// with the code it ended with: a streaming call when it ends, not when it
// starts.
void GrpcConnection::CountEnd(GrpcStream& stream) {
  if (stream.counted || stream.method == nullptr || !server_.options_.on_call_end) return;
  stream.counted = true;
  const std::string_view path = stream.path;
  server_.options_.on_call_end(path.substr(path.rfind('/') + 1), stream.final_code);
}

// GrpcServer

GrpcServer::GrpcServer(uv_loop_t* loop, GrpcServerOptions options)
    : loop_(loop), options_(options), dispatcher_(loop) {}

GrpcServer::~GrpcServer() { Close(); }

void GrpcServer::AddUnaryRaw(std::string method, UnaryHandler handler) {
  methods_[std::move(method)] = Method{std::move(handler), nullptr};
}

void GrpcServer::AddServerStreamingRaw(std::string method, ServerStreamingHandler handler) {
  methods_[std::move(method)] = Method{nullptr, std::move(handler)};
}

const GrpcServer::Method* GrpcServer::FindMethod(const std::string& path) const {
  auto it = methods_.find(path);
  return it == methods_.end() ? nullptr : &it->second;
}

Status GrpcServer::Listen(const std::string& socket_path) {
  if (listening_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the API server already listens on " + socket_path_);
  }
  auto address = UnixSocketAddress(socket_path);
  if (!address) return address.error();
  const sockaddr_un addr = *address;

  // Replace a stale socket left by a crashed agent, but never a live one
  // (another agent) and never a file that is not a socket.
  struct stat st = {};
  if (lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       socket_path + " exists and is not a socket; refusing to replace it");
    }
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int connected =
        probe < 0 ? -1 : connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    const int probe_errno = errno;
    if (probe >= 0) ::close(probe);
    if (connected == 0 || probe_errno != ECONNREFUSED) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "another process is serving " + socket_path +
                           " (is another `podless run` using this state directory?)");
    }
    if (unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
      return MakeError(
          ErrorCode::kFailedPrecondition,
          "cannot remove the stale socket " + socket_path + ": " + std::strerror(errno));
    }
  } else if (errno != ENOENT) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cannot inspect " + socket_path + ": " + std::strerror(errno));
  }

  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return MakeError(ErrorCode::kUnavailable,
                     std::string("cannot create a Unix socket: ") + std::strerror(errno));
  }
  // Linux creates the socket file with the socket inode's mode (minus the
  // umask), so setting 0600 before bind leaves no moment in which another
  // user could connect. The chmod below is only a fallback, and still runs
  // before listen(): until then a connect() is refused anyway.
  const mode_t mode = options_.socket_mode & 0777;
  fchmod(fd, mode);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int bind_errno = errno;
    ::close(fd);
    return MakeError(ErrorCode::kUnavailable, "cannot bind the API socket " + socket_path + ": " +
                                                  std::strerror(bind_errno));
  }
  if (lstat(socket_path.c_str(), &st) != 0 ||
      ((st.st_mode & 07777) != mode && chmod(socket_path.c_str(), mode) != 0)) {
    const int chmod_errno = errno;
    ::close(fd);
    unlink(socket_path.c_str());
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", static_cast<unsigned>(mode));
    return MakeError(ErrorCode::kPermissionDenied, "cannot make the API socket " + socket_path +
                                                       " mode " + octal + ": " +
                                                       std::strerror(chmod_errno));
  }
  socket_dev_ = st.st_dev;
  socket_ino_ = st.st_ino;

  if (::listen(fd, kListenBacklog) != 0) {
    const int listen_errno = errno;
    ::close(fd);
    unlink(socket_path.c_str());
    return MakeError(ErrorCode::kUnavailable, "cannot listen on the API socket " + socket_path +
                                                  ": " + std::strerror(listen_errno));
  }
  proxy::SocketAcceptor::Options accept;
  accept.name = options_.listener_name;
  accept.address = socket_path;
  accept.count_error = options_.count_accept_error;
  accept.log = options_.log;
  auto acceptor = proxy::SocketAcceptor::Adopt(loop_, fd, std::move(accept),
                                               [this](int client) { Accept(client); });
  if (!acceptor.ok()) {
    unlink(socket_path.c_str());
    return MakeError(ErrorCode::kUnavailable, "cannot listen on the API socket " + socket_path +
                                                  ": " + acceptor.error().message);
  }
  acceptor_ = std::move(acceptor).value();
  // A client that disappears while we write must not kill the agent.
  runtime::IgnoreSigpipeUnlessHandled();
  socket_path_ = socket_path;
  listening_ = true;
  return {};
}

void GrpcServer::Accept(int fd) {
  if (connections_.size() >= options_.max_connections) {
    ::close(fd);
    return;
  }
  // A Unix stream socket, carried by the data plane's stream.
  proxy::TcpStream* stream = proxy::TcpStream::Adopt(dispatcher_, fd);
  if (stream == nullptr) return;  // closed `fd`
  auto connection = std::make_unique<GrpcConnection>(*this, stream);
  GrpcConnection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
  // Registered first, so a failing Start() retires it like any other close.
  if (!raw->Start().ok()) raw->Close();
}

void GrpcServer::Retire(GrpcConnection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;  // Close() took it out already
  // It may be on the stack now (its own callback): deleted next turn.
  dispatcher_.DeferredDelete(std::move(it->second));
  connections_.erase(it);
}

void GrpcServer::Defer(std::function<void()> call) { dispatcher_.Post(std::move(call)); }

void GrpcServer::Close() {
  if (listening_) {
    listening_ = false;
    acceptor_.reset();
    // Unlink only the file we bound: a successor may already own the path.
    struct stat st = {};
    if (lstat(socket_path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
        st.st_ino == socket_ino_) {
      unlink(socket_path_.c_str());
    }
  }
  // Move the connections out first: closing one runs cancel callbacks, which
  // may call Close() again.
  std::vector<std::unique_ptr<GrpcConnection>> closing;
  for (auto& [key, connection] : connections_) closing.push_back(std::move(connection));
  connections_.clear();
  for (auto& connection : closing) connection->Close();
  for (auto& connection : closing) dispatcher_.DeferredDelete(std::move(connection));
}

}  // namespace podless::api
