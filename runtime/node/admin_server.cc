#include "runtime/node/admin_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include <utility>

#include "proxy/base/tcp_stream.h"
#include "proxy/base/timer.h"

namespace podless::runtime {
namespace {

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

// One accepted client connection: an HTTP/1.1 exchange on a proxy::TcpStream
// (the data plane's stream: its write queue, write-stall timeout and
// watermarks). Owned by AdminServer::connections_ until the stream closes,
// then deleted on the next loop turn (Dispatcher::DeferredDelete).
class AdminServer::Connection final : public proxy::StreamHandler, private proxy::DeferredTask {
 public:
  Connection(AdminServer* server, proxy::TcpStream* stream);
  ~Connection() override;

  // Closes the socket (FIN); the connection is gone from the server afterwards.
  void Abort();
  size_t queued_bytes() const { return stream_ != nullptr ? stream_->QueuedBytes() : 0; }

 private:
  enum class Phase {
    kOpen,       // reading and answering requests
    kStreaming,  // a streamed response is being written, piece by piece
    kDraining,   // the last response is queued; FIN follows it
    kLingering,  // FIN sent; discarding input until EOF or linger timeout
  };

  // proxy::StreamHandler
  void OnData(std::string_view bytes) override;
  void OnEnd() override;
  void OnClosed(bool reset) override;
  void OnWritable() override;
  // proxy::DeferredTask: the next piece of a streamed response, one per turn.
  void RunDeferred() override { StreamNext(); }

  void Process(std::string_view data);
  void Answer(const proxy::Http1Request& request);
  void Respond(int status, std::string_view content_type, std::string_view body, bool head_only,
               bool keep_alive, const proxy::Http1Headers& extra = {});
  // Queues the next piece of the streamed response (the last: its end).
  void StreamNext();
  // The kernel took a streamed piece (or everything): go on.
  void AfterDrain();
  void Timeout();
  void BeginClose();
  void StartTimer(std::chrono::milliseconds timeout);
  // Drops the stream and hands this object to the server for deletion.
  void Finish();
  bool Backlogged() const {
    return stream_->QueuedBytes() > server_->options_.max_queued_response_bytes;
  }

  AdminServer* server_;
  proxy::TcpStream* stream_;  // owns itself; null once closed
  proxy::TimerPtr timer_;     // null once finished
  proxy::Http1RequestParser parser_;
  Phase phase_ = Phase::kOpen;
  bool read_paused_ = false;
  bool request_started_ = false;  // bytes of an unfinished request head were received
  std::string pending_input_;     // pipelined input held back while the client is not reading
  std::function<bool(std::string*)> stream_body_;  // the response being streamed
};

AdminServer::Connection::Connection(AdminServer* server, proxy::TcpStream* stream)
    : server_(server), stream_(stream) {
  timer_ = std::make_unique<proxy::Timer>(server_->dispatcher_.loop(), [this] { Timeout(); });
  // A client that stops reading is cut off: queued bytes and none taken by
  // the kernel for a whole request timeout (a streamed response included).
  stream_->SetWriteStallTimeout(static_cast<uint64_t>(server_->options_.request_timeout.count()),
                                nullptr);
  // Reading pauses above max_queued_response_bytes and resumes once the
  // client took all but a quarter of it (stream.h's ratio).
  stream_->SetWatermarks(server_->options_.max_queued_response_bytes,
                         server_->options_.max_queued_response_bytes / 4 + 1);
  stream_->SetHandler(this);
  StartTimer(server_->options_.request_timeout);
}

AdminServer::Connection::~Connection() {
  if (stream_ != nullptr) stream_->Close();
}

void AdminServer::Connection::Abort() {
  if (stream_ == nullptr) return;
  std::exchange(stream_, nullptr)->Close();
  Finish();
}

void AdminServer::Connection::Finish() {
  stream_ = nullptr;
  timer_.reset();
  server_->dispatcher_.Cancel(this);
  server_->Retire(this);
}

void AdminServer::Connection::StartTimer(std::chrono::milliseconds timeout) {
  if (timer_) timer_->Start(static_cast<uint64_t>(timeout.count()));
}

void AdminServer::Connection::OnData(std::string_view data) {
  if (phase_ != Phase::kOpen) return;  // draining or lingering: input is discarded
  if (!pending_input_.empty()) {
    // Reading is being paused for backpressure; keep the order of the input.
    pending_input_.append(data);
    return;
  }
  Process(data);
}

void AdminServer::Connection::OnEnd() {
  // The client sends nothing more: answer what it sent, then close.
  if (phase_ == Phase::kOpen) {
    if (!pending_input_.empty()) return;  // answered as the client reads, then closed
    BeginClose();
  }
}

void AdminServer::Connection::OnClosed(bool) { Finish(); }

void AdminServer::Connection::OnWritable() {
  if (phase_ == Phase::kStreaming) {
    AfterDrain();
    return;
  }
  if (phase_ == Phase::kDraining) {
    BeginClose();
    return;
  }
  if (phase_ == Phase::kOpen && read_paused_) {
    // The client caught up: answer the held-back pipelined requests.
    std::string input = std::move(pending_input_);
    pending_input_.clear();
    Process(input);
    if (stream_ != nullptr && phase_ == Phase::kOpen && pending_input_.empty()) {
      read_paused_ = false;
      stream_->SetReadPaused(false);
    }
  }
}

void AdminServer::Connection::Process(std::string_view data) {
  while (!data.empty() && phase_ == Phase::kOpen) {
    if (Backlogged()) {
      pending_input_.assign(data);
      read_paused_ = true;
      stream_->SetReadPaused(true);
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
    if (stream_ == nullptr) return;  // a handler closed the server
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
  if (server_->queued_bytes() > server_->options_.max_total_queued_bytes) {
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
  if (stream_ == nullptr) return;  // the handler closed the server
  if (response.stream && !head_only) {
    proxy::Http1Headers headers = response.headers;
    headers.emplace_back("Content-Type", response.content_type);
    headers.emplace_back("Transfer-Encoding", "chunked");
    headers.emplace_back("Connection", "close");
    stream_body_ = std::move(response.stream);
    phase_ = Phase::kStreaming;
    if (timer_) timer_->Stop();  // the stream's write-stall timeout watches the reader
    // Every drained piece is reported (OnWritable), so the next one follows.
    stream_->SetWatermarks(0, 1);
    stream_->Write(proxy::FormatResponseHead(response.status, "", headers));
    AfterDrain();
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
  stream_->Write(data);
  if (!keep_alive) BeginClose();
}

void AdminServer::Connection::AfterDrain() {
  // One piece in flight at a time; a piece the kernel took at once is
  // followed on the next loop turn, so a large body never holds the loop.
  if (stream_->QueuedBytes() == 0) server_->dispatcher_.Schedule(this);
}

void AdminServer::Connection::StreamNext() {
  if (stream_ == nullptr || phase_ != Phase::kStreaming) return;
  std::string piece;
  const bool more = stream_body_(&piece);
  std::string chunk;
  if (!piece.empty()) {
    char size[20];
    std::snprintf(size, sizeof(size), "%zx\r\n", piece.size());
    chunk = size + piece + "\r\n";
  }
  if (!more) {
    chunk += "0\r\n\r\n";
    stream_body_ = nullptr;
    stream_->Write(chunk);
    BeginClose();
    return;
  }
  stream_->Write(chunk);
  AfterDrain();
}

void AdminServer::Connection::BeginClose() {
  phase_ = Phase::kDraining;
  pending_input_.clear();
  // FIN follows the queued response; input is read and discarded until the
  // client closes too (or the linger timeout), so unread input does not turn
  // the close into a reset that could discard our response at the client. A
  // client that never reads is cut off by the write-stall timeout.
  stream_->End();
  if (read_paused_) {
    read_paused_ = false;
    stream_->SetReadPaused(false);
  }
  if (stream_->QueuedBytes() > 0) {
    stream_->SetWatermarks(0, 1);  // OnWritable once written: then linger
    if (timer_) timer_->Stop();
    return;
  }
  phase_ = Phase::kLingering;
  StartTimer(server_->options_.linger_timeout);
}

void AdminServer::Connection::Timeout() {
  if (phase_ == Phase::kOpen && request_started_ && stream_->QueuedBytes() == 0) {
    // A request head arrived too slowly: say so, then close.
    Respond(408, "text/plain; charset=utf-8", "request head not received in time\n", false, false);
    return;
  }
  Abort();
}

// --- AdminServer ----------------------------------------------------------

AdminServer::AdminServer(uv_loop_t* loop) : AdminServer(loop, AdminServerOptions{}) {}

AdminServer::AdminServer(uv_loop_t* loop, AdminServerOptions options)
    : loop_(loop), options_(options), dispatcher_(loop) {}

AdminServer::~AdminServer() { Close(); }

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
  if (connections_.size() >= options_.max_connections) {
    ::close(fd);
    return;
  }
  proxy::TcpStream* stream = proxy::TcpStream::Adopt(dispatcher_, fd);
  if (stream == nullptr) return;  // closed `fd`
  auto connection = std::make_unique<Connection>(this, stream);
  Connection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
}

size_t AdminServer::queued_bytes() const {
  size_t total = 0;
  for (const auto& [raw, owned] : connections_) total += raw->queued_bytes();
  return total;
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
  // It may be on the stack now (its own callback): deleted next turn.
  dispatcher_.DeferredDelete(std::move(it->second));
  connections_.erase(it);
}

}  // namespace podless::runtime
