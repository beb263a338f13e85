#include "runtime/admin_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include <utility>

namespace podless::runtime {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;

struct WriteRequest {
  uv_write_t req;
  std::string data;
  std::shared_ptr<size_t> queued;  // AdminServer::queued_bytes_
};

// Host: an IP literal or localhost, with or without a port; a request
// without Host (HTTP/1.0) is answered too.
bool AllowedHost(std::optional<std::string_view> host) {
  if (!host) return true;
  auto parsed = proxy::ParseAuthority(*host, 80);
  if (!parsed) return false;
  return parsed->kind != proxy::HostPort::Kind::kName ||
         proxy::EqualsIgnoreCase(parsed->host, "localhost");
}

Error AddressError(std::string_view address, int uv_error) {
  return MakeError(ErrorCode::kUnavailable, std::string(address) + ": " + uv_strerror(uv_error));
}

// The path a request is routed on: the target without query, for both the
// origin form and the absolute form. Empty when there is none.
std::string RoutePath(const proxy::Http1Request& request) {
  std::string path;
  if (request.target_form == proxy::RequestTargetForm::kOrigin) {
    path = request.target;
  } else if (request.target_form == proxy::RequestTargetForm::kAbsolute) {
    Result<proxy::AbsoluteUrl> url = proxy::ParseAbsoluteUrl(request.target);
    if (url.ok()) path = url->path_and_query;
  }
  return path.substr(0, path.find('?'));
}

}  // namespace

// One accepted client connection. Owned by AdminServer::connections_;
// its handles' `data` point back at it until it is closed.
class AdminServer::Connection {
 public:
  explicit Connection(AdminServer* server) : server_(server) {}

  // Takes the accepted descriptor `fd` over.
  Status Start(int fd);
  // Closes both handles and hands the object to the server for deferred
  // destruction. No callback reaches it afterwards.
  void Abort();

 private:
  enum class Phase {
    kOpen,       // reading and answering requests
    kStreaming,  // a streamed response is being written, piece by piece
    kDraining,   // the last response is queued; waiting for it to be written
    kLingering,  // FIN sent; discarding input until EOF or linger timeout
    kClosed,
  };

  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnTimer(uv_timer_t* timer);

  void Process(std::string_view data);
  void Answer(const proxy::Http1Request& request);
  void Respond(int status, std::string_view content_type, std::string_view body, bool head_only,
               bool keep_alive, const proxy::Http1Headers& extra = {});
  void AfterWrite(int status);
  // Queues the next piece of the streamed response (the last: its end).
  void StreamNext();
  bool Write(std::string data);
  void Timeout();
  void BeginClose();
  void StartTimer(std::chrono::milliseconds timeout);
  void StartReading();
  void StopReading();

  AdminServer* server_;
  proxy::TcpHandle tcp_;
  proxy::TimerHandle timer_;
  proxy::Http1RequestParser parser_;
  Phase phase_ = Phase::kOpen;
  bool reading_ = false;
  bool request_started_ = false;  // bytes of an unfinished request head were received
  size_t pending_writes_ = 0;
  std::string pending_input_;  // pipelined input held back while the client is not reading
  std::function<bool(std::string*)> stream_;  // the response being streamed
};

Status AdminServer::Connection::Start(int fd) {
  uv_tcp_init(server_->loop_, tcp_.get());
  uv_timer_init(server_->loop_, timer_.get());
  int rc = uv_tcp_open(tcp_.get(), fd);
  if (rc != 0) {
    ::close(fd);  // not adopted by the handle
    return MakeError(ErrorCode::kUnavailable, uv_strerror(rc));
  }
  tcp_->data = this;
  timer_->data = this;
  uv_tcp_nodelay(tcp_.get(), 1);
  StartTimer(server_->options_.request_timeout);
  StartReading();
  return {};
}

void AdminServer::Connection::Abort() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  tcp_.Close();
  timer_.Close();
  server_->Retire(this);
}

void AdminServer::Connection::StartTimer(std::chrono::milliseconds timeout) {
  uv_timer_start(timer_.get(), &Connection::OnTimer, static_cast<uint64_t>(timeout.count()), 0);
}

void AdminServer::Connection::StartReading() {
  if (reading_) return;
  reading_ = uv_read_start(tcp_.stream(), &Connection::OnAlloc, &Connection::OnRead) == 0;
}

void AdminServer::Connection::StopReading() {
  if (!reading_) return;
  uv_read_stop(tcp_.stream());
  reading_ = false;
}

void AdminServer::Connection::OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(handle->data);
  if (self == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf = uv_buf_init(self->server_->read_buffer_.get(), kReadBufferSize);
}

void AdminServer::Connection::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(stream->data);
  if (self == nullptr) return;
  self->server_->ReapRetired();
  if (nread < 0) {
    // EOF or error: nothing more can be answered.
    self->Abort();
    return;
  }
  if (self->phase_ != Phase::kOpen) return;  // draining or lingering: input is discarded
  std::string_view data(buf->base, static_cast<size_t>(nread));
  if (!self->pending_input_.empty()) {
    // Reading was paused for backpressure; keep the order of the input.
    self->pending_input_.append(data);
    return;
  }
  self->Process(data);
}

void AdminServer::Connection::Process(std::string_view data) {
  while (!data.empty() && phase_ == Phase::kOpen) {
    if (uv_stream_get_write_queue_size(tcp_.stream()) >
        server_->options_.max_queued_response_bytes) {
      pending_input_.assign(data);
      StopReading();
      return;
    }
    size_t consumed = 0;
    proxy::Http1RequestParser::State state = parser_.Feed(data, &consumed);
    data.remove_prefix(consumed);
    if (state == proxy::Http1RequestParser::State::kIncomplete) {
      request_started_ = true;
      return;
    }
    if (state == proxy::Http1RequestParser::State::kError) {
      Respond(parser_.error_status(), "text/plain; charset=utf-8", parser_.error() + "\n", false,
              false);
      return;
    }
    request_started_ = false;
    Answer(parser_.request());
    if (phase_ == Phase::kClosed) return;  // a handler closed the server
    parser_.Reset();
    if (phase_ == Phase::kOpen) StartTimer(server_->options_.request_timeout);
  }
}

void AdminServer::Connection::Answer(const proxy::Http1Request& request) {
  bool head_only = request.method == "HEAD";
  if (request.method != "GET" && !head_only) {
    // A body may follow that we will not read: answer and close.
    Respond(405, "text/plain; charset=utf-8", "method " + request.method + " not allowed\n", false,
            false, {{"Allow", "GET, HEAD"}});
    return;
  }
  if (request.content_length() > 0 || request.chunked()) {
    Respond(413, "text/plain; charset=utf-8", "request bodies are not accepted\n", head_only,
            false);
    return;
  }
  if (!AllowedHost(request.Header("Host"))) {
    Respond(421, "text/plain; charset=utf-8",
            "the admin server answers only to IP addresses and localhost, not to a name\n",
            head_only, false);
    return;
  }
  if (*server_->queued_bytes_ > server_->options_.max_total_queued_bytes) {
    Respond(503, "text/plain; charset=utf-8",
            "busy: responses wait for slow clients; retry later\n", head_only, false,
            {{"Retry-After", "1"}});
    return;
  }
  std::string path = RoutePath(request);
  const AdminHandler* handler = server_->FindRoute(path);
  if (handler == nullptr) {
    Respond(404, "text/plain; charset=utf-8", "no such path: " + path + "\n", head_only,
            request.keep_alive());
    return;
  }
  AdminResponse response = (*handler)(request);
  if (phase_ == Phase::kClosed) return;  // the handler closed the server
  if (response.stream && !head_only) {
    proxy::Http1Headers headers = response.headers;
    headers.emplace_back("Content-Type", response.content_type);
    headers.emplace_back("Transfer-Encoding", "chunked");
    headers.emplace_back("Connection", "close");
    stream_ = std::move(response.stream);
    phase_ = Phase::kStreaming;
    // A reader that stops reading keeps the piece in flight this long at most.
    StartTimer(server_->options_.request_timeout);
    if (Write(proxy::FormatResponseHead(response.status, "", headers))) StreamNext();
    return;
  }
  Respond(response.status, response.content_type, response.body, head_only, request.keep_alive(),
          response.headers);
}

void AdminServer::Connection::Respond(int status, std::string_view content_type,
                                      std::string_view body, bool head_only, bool keep_alive,
                                      const proxy::Http1Headers& extra) {
  proxy::Http1Headers headers = extra;
  headers.emplace_back("Content-Type", std::string(content_type));
  headers.emplace_back("Content-Length", std::to_string(body.size()));
  // HTTP/1.1 persists by default; saying "close" tells the client not to
  // reuse the connection. An HTTP/1.0 client that asked for keep-alive gets
  // "keep-alive" (written for both versions: harmless for 1.1).
  headers.emplace_back("Connection", keep_alive ? "keep-alive" : "close");
  std::string data = proxy::FormatResponseHead(status, "", headers);
  if (!head_only) data.append(body);
  if (!Write(std::move(data))) return;
  if (!keep_alive) BeginClose();
}

bool AdminServer::Connection::Write(std::string data) {
  auto* write = new WriteRequest;
  write->data = std::move(data);
  uv_buf_t buf = uv_buf_init(write->data.data(), write->data.size());
  if (uv_write(&write->req, tcp_.stream(), &buf, 1, &Connection::OnWrite) != 0) {
    delete write;
    Abort();
    return false;
  }
  write->queued = server_->queued_bytes_;
  *write->queued += write->data.size();
  ++pending_writes_;
  return true;
}

void AdminServer::Connection::StreamNext() {
  std::string piece;
  const bool more = stream_(&piece);
  std::string chunk;
  if (!piece.empty()) {
    char size[20];
    std::snprintf(size, sizeof(size), "%zx\r\n", piece.size());
    chunk = size + piece + "\r\n";
  }
  if (!more) {
    chunk += "0\r\n\r\n";
    stream_ = nullptr;
    phase_ = Phase::kDraining;
  }
  if (!Write(std::move(chunk))) return;
  StartTimer(server_->options_.request_timeout);
}

void AdminServer::Connection::OnWrite(uv_write_t* req, int status) {
  auto* write = reinterpret_cast<WriteRequest*>(req);
  auto* self = static_cast<Connection*>(req->handle->data);
  *write->queued -= write->data.size();
  delete write;
  if (self == nullptr) return;  // the connection closed; the write was cancelled
  self->server_->ReapRetired();
  self->AfterWrite(status);
}

void AdminServer::Connection::AfterWrite(int status) {
  --pending_writes_;
  if (status != 0) {
    Abort();
    return;
  }
  if (phase_ == Phase::kStreaming) {
    if (pending_writes_ == 0) StreamNext();
    return;
  }
  if (phase_ == Phase::kDraining) {
    if (pending_writes_ == 0) BeginClose();
    return;
  }
  if (phase_ == Phase::kOpen && !reading_ &&
      uv_stream_get_write_queue_size(tcp_.stream()) <=
          server_->options_.max_queued_response_bytes) {
    // The client caught up: answer the held-back pipelined requests.
    std::string input = std::move(pending_input_);
    pending_input_.clear();
    Process(input);
    if (phase_ == Phase::kOpen && pending_input_.empty()) StartReading();
  }
}

void AdminServer::Connection::BeginClose() {
  phase_ = Phase::kDraining;
  pending_input_.clear();
  if (pending_writes_ > 0) {
    // AfterWrite comes back here; a client that never reads is cut off by
    // the timer.
    StartTimer(server_->options_.request_timeout);
    return;
  }
  // Everything is written: send FIN, then read and discard until the client
  // closes too (or the linger timeout), so unread input does not turn the
  // close into a reset that could discard our response at the client.
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, tcp_.stream(), &Connection::OnShutdown) != 0) {
    delete req;
    Abort();
    return;
  }
  phase_ = Phase::kLingering;
  StartReading();
  StartTimer(server_->options_.linger_timeout);
}

void AdminServer::Connection::OnShutdown(uv_shutdown_t* req, int) {
  delete req;  // the connection, if still open, waits for EOF or its timer
}

void AdminServer::Connection::OnTimer(uv_timer_t* timer) {
  auto* self = static_cast<Connection*>(timer->data);
  if (self == nullptr) return;
  self->server_->ReapRetired();
  self->Timeout();
}

void AdminServer::Connection::Timeout() {
  // kStreaming: the reader took nothing for the whole timeout: Abort.
  if (phase_ == Phase::kOpen && request_started_ && pending_writes_ == 0) {
    // A request head arrived too slowly: say so, then close.
    Respond(408, "text/plain; charset=utf-8", "request head not received in time\n", false, false);
    return;
  }
  Abort();
}

// --- AdminServer ----------------------------------------------------------

AdminServer::AdminServer(uv_loop_t* loop) : AdminServer(loop, AdminServerOptions{}) {}

AdminServer::AdminServer(uv_loop_t* loop, AdminServerOptions options)
    : loop_(loop), options_(options), read_buffer_(new char[kReadBufferSize]) {}

AdminServer::~AdminServer() {
  Close();
  retired_.clear();
}

Status AdminServer::Listen(std::string_view address) {
  if (listening_) {
    return MakeError(ErrorCode::kFailedPrecondition, "admin server is already listening");
  }
  Result<proxy::HostPort> host_port = proxy::ParseAuthority(address, 0, /*allow_port_zero=*/true);
  if (!host_port.ok()) {
    return MakeError(ErrorCode::kInvalidArgument, "admin address \"" + std::string(address) +
                                                      "\": " + host_port.error().message);
  }
  sockaddr_storage storage{};
  int rc = 0;
  switch (host_port->kind) {
    case proxy::HostPort::Kind::kIPv4:
      rc = uv_ip4_addr(host_port->host.c_str(), host_port->port,
                       reinterpret_cast<sockaddr_in*>(&storage));
      break;
    case proxy::HostPort::Kind::kIPv6:
      rc = uv_ip6_addr(host_port->host.c_str(), host_port->port,
                       reinterpret_cast<sockaddr_in6*>(&storage));
      break;
    case proxy::HostPort::Kind::kName:
      return MakeError(ErrorCode::kInvalidArgument,
                       "admin address \"" + std::string(address) +
                           "\": the host must be an IP address, e.g. 127.0.0.1:15000");
  }
  if (rc != 0) return AddressError(address, rc);

  Result<int> fd = proxy::ListenTcpSocket(reinterpret_cast<const sockaddr*>(&storage), 128);
  if (!fd.ok()) {
    return MakeError(ErrorCode::kUnavailable, std::string(address) + ": " + fd.error().message);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(*fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    int err = errno;
    ::close(*fd);
    return AddressError(address, uv_translate_sys_error(err));
  }
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  proxy::SocketAcceptor::Options accept;
  accept.name = options_.listener_name;
  // The address as given, with the port picked for port 0.
  accept.address = (host_port->kind == proxy::HostPort::Kind::kIPv6 ? "[" + host_port->host + "]"
                                                                    : host_port->host) +
                   ":" + std::to_string(port_);
  accept.count_error = options_.count_accept_error;
  accept.log = options_.log;
  auto acceptor = proxy::SocketAcceptor::Adopt(loop_, *fd, std::move(accept),
                                               [this](int client) { Accept(client); });
  if (!acceptor.ok()) {
    port_ = 0;
    return MakeError(ErrorCode::kUnavailable,
                     std::string(address) + ": " + acceptor.error().message);
  }
  acceptor_ = std::move(acceptor).value();
  listening_ = true;
  return {};
}

void AdminServer::AddRoute(std::string path, AdminHandler handler) {
  routes_[std::move(path)] = std::move(handler);
}

const AdminHandler* AdminServer::FindRoute(std::string_view path) const {
  auto it = routes_.find(path);
  return it == routes_.end() ? nullptr : &it->second;
}

void AdminServer::Accept(int fd) {
  ReapRetired();
  if (connections_.size() >= options_.max_connections) {
    ::close(fd);
    return;
  }
  auto connection = std::make_unique<Connection>(this);
  Connection* raw = connection.get();
  if (!raw->Start(fd).ok()) return;  // its handles close with it
  connections_.emplace(raw, std::move(connection));
}

void AdminServer::Close() {
  acceptor_.reset();
  listening_ = false;
  // Abort() moves each connection out of connections_; iterate over a copy
  // of the keys.
  std::vector<Connection*> open;
  open.reserve(connections_.size());
  for (const auto& [raw, owned] : connections_) open.push_back(raw);
  for (Connection* connection : open) connection->Abort();
}

void AdminServer::Retire(Connection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  retired_.push_back(std::move(it->second));
  connections_.erase(it);
}

void AdminServer::ReapRetired() { retired_.clear(); }

}  // namespace podless::runtime
