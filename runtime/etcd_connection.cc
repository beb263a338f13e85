#include "runtime/etcd_connection.h"

#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>
#include <utility>

#include "proxy/log.h"

namespace podless::runtime {
namespace {

constexpr uint16_t kDefaultEtcdPort = 2379;
// etcd (grpc-go) answers a client that pings more often than every 5 s
// (--grpc-keepalive-min-time), or pings with no stream open, with GOAWAY
// ENHANCE_YOUR_CALM: stay well above it and ping only while streams are open.
constexpr uint64_t kPingIntervalMs = 10'000;

struct WriteRequest {
  uv_write_t req;
  std::string data;
};

std::string AddressText(const sockaddr_storage& address) {
  char ip[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (address.ss_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(address);
    uv_ip6_name(&a6, ip, sizeof(ip));
    port = ntohs(a6.sin6_port);
    return "[" + std::string(ip) + "]:" + std::to_string(port);
  }
  const auto& a4 = reinterpret_cast<const sockaddr_in&>(address);
  uv_ip4_name(&a4, ip, sizeof(ip));
  port = ntohs(a4.sin_port);
  return std::string(ip) + ":" + std::to_string(port);
}

}  // namespace

Result<EtcdEndpoint> ParseEtcdEndpoint(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcd endpoint \"" + std::string(url) + "\": " + why);
  };
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  EtcdEndpoint endpoint;
  endpoint.tls = url.starts_with(kHttps);
  if (!endpoint.tls && !url.starts_with(kHttp)) {
    return bad("expected http://HOST:PORT or https://HOST:PORT");
  }
  std::string_view rest = url.substr(endpoint.tls ? kHttps.size() : kHttp.size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return bad("expected http(s)://HOST:PORT with no path, query or user info");
  }
  endpoint.url = std::string(url);
  std::string_view port_text;
  if (rest.starts_with('[')) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("unterminated [IPv6 address]");
    endpoint.host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("expected :PORT after the [IPv6 address]");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = rest.rfind(':');
    endpoint.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
    if (endpoint.host.find(':') != std::string::npos) {
      return bad("an IPv6 address must be in brackets, http(s)://[ADDRESS]:PORT");
    }
  }
  if (endpoint.host.empty()) return bad("missing host");
  endpoint.port = kDefaultEtcdPort;
  if (!port_text.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      return bad("port \"" + std::string(port_text) + "\" is not a number in 1..65535");
    }
    endpoint.port = static_cast<uint16_t>(value);
  }
  const bool v6 = endpoint.host.find(':') != std::string::npos;
  endpoint.authority =
      (v6 ? "[" + endpoint.host + "]" : endpoint.host) + ":" + std::to_string(endpoint.port);
  return endpoint;
}

// A getaddrinfo request outlives the connection if the connection is destroyed
// first (libuv may not be able to cancel it); `owner` is cleared then.
struct EtcdConnection::ResolveRequest {
  uv_getaddrinfo_t req;
  EtcdConnection* owner;
};

EtcdConnection::EtcdConnection(uv_loop_t* loop, EtcdEndpoint endpoint, EtcdTlsContextPtr tls,
                               Listener& listener)
    : loop_(loop),
      endpoint_(std::move(endpoint)),
      tls_context_(endpoint_.tls ? std::move(tls) : nullptr),
      listener_(listener),
      connect_timer_(loop, [this] { OnConnectTimeout(); }),
      notify_timer_(loop, [this] { Notify(); }),
      ping_timer_(loop, [this] { PingTick(); }) {}

EtcdConnection::~EtcdConnection() {
  if (resolving_ != nullptr) {
    resolving_->owner = nullptr;
    // Fails (EBUSY) once the lookup runs: its callback then finds no owner.
    (void)uv_cancel(reinterpret_cast<uv_req_t*>(&resolving_->req));
  }
  // Closing the socket first: its pending callbacks see `data` cleared. The
  // timers call nothing once destroyed.
  tcp_.Close();
}

void EtcdConnection::OnConnectTimeout() {
  Fail(ErrorCode::kUnavailable,
       "no connection within the connect timeout of " + std::to_string(connect_timeout_ms_) +
           " ms" + (last_connect_error_.empty() ? "" : " (" + last_connect_error_ + ")"));
}

void EtcdConnection::Connect(std::chrono::milliseconds timeout) {
  if (state_ != State::kIdle) return;
  uv_update_time(loop_);  // the timeout counts from now, not from the last loop turn
  connect_timeout_ms_ = static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 1));
  connect_timer_.Start(connect_timeout_ms_);

  sockaddr_storage address = {};
  if (uv_ip4_addr(endpoint_.host.c_str(), endpoint_.port,
                  reinterpret_cast<sockaddr_in*>(&address)) == 0 ||
      uv_ip6_addr(endpoint_.host.c_str(), endpoint_.port,
                  reinterpret_cast<sockaddr_in6*>(&address)) == 0) {
    addresses_.push_back(address);
    state_ = State::kConnecting;
    ConnectNextAddress();
    return;
  }
  state_ = State::kResolving;
  auto* request = new ResolveRequest{{}, this};
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port = std::to_string(endpoint_.port);
  const int rc = uv_getaddrinfo(loop_, &request->req, OnResolved, endpoint_.host.c_str(),
                                port.c_str(), &hints);
  if (rc < 0) {
    delete request;
    Fail(ErrorCode::kUnavailable,
         "cannot resolve " + endpoint_.host + ": " + std::string(uv_strerror(rc)));
    return;
  }
  resolving_ = request;
}

void EtcdConnection::OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
  auto* request = reinterpret_cast<ResolveRequest*>(req);
  EtcdConnection* self = request->owner;
  delete request;
  if (self == nullptr) {
    uv_freeaddrinfo(result);
    return;
  }
  self->resolving_ = nullptr;
  if (status < 0) {
    uv_freeaddrinfo(result);
    self->Fail(ErrorCode::kUnavailable,
               "cannot resolve " + self->endpoint_.host + ": " + std::string(uv_strerror(status)));
    return;
  }
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    sockaddr_storage address = {};
    std::memcpy(&address, ai->ai_addr, ai->ai_addrlen);
    self->addresses_.push_back(address);
  }
  uv_freeaddrinfo(result);
  self->state_ = State::kConnecting;
  self->ConnectNextAddress();
}

void EtcdConnection::ConnectNextAddress() {
  // Every address of the name in turn, like any client of a dual-stack name.
  while (next_address_ < addresses_.size()) {
    const sockaddr_storage& address = addresses_[next_address_++];
    tcp_ = proxy::TcpHandle();             // a refused socket cannot connect again
    (void)uv_tcp_init(loop_, tcp_.get());  // Creates no socket: always 0.
    tcp_->data = this;
    auto* req = new uv_connect_t;
    const int rc = uv_tcp_connect(req, tcp_.get(), reinterpret_cast<const sockaddr*>(&address),
                                  OnTcpConnected);
    if (rc == 0) return;
    delete req;
    last_connect_error_ = "connect to " + AddressText(address) + ": " + uv_strerror(rc);
  }
  Fail(ErrorCode::kUnavailable,
       last_connect_error_.empty() ? "no address for " + endpoint_.host : last_connect_error_);
}

void EtcdConnection::OnTcpConnected(uv_connect_t* req, int status) {
  auto* self = static_cast<EtcdConnection*>(req->handle->data);
  delete req;
  if (self == nullptr || self->state_ != State::kConnecting) return;
  if (status < 0) {
    self->last_connect_error_ = "connect to " +
                                AddressText(self->addresses_[self->next_address_ - 1]) + ": " +
                                uv_strerror(status);
    self->ConnectNextAddress();
    return;
  }
  // Nagle only delays small writes: a refusal costs latency, not the call.
  if (int rc = uv_tcp_nodelay(self->tcp_.get(), 1); rc != 0) {
    proxy::Log(proxy::LogLevel::kDebug, "etcd",
               "etcd at " + self->endpoint_.url + ": TCP_NODELAY: " + uv_strerror(rc));
  }
  if (self->endpoint_.tls) {
    // The connect timeout also bounds the handshake.
    self->last_connect_error_ = "TLS handshake with " +
                                AddressText(self->addresses_[self->next_address_ - 1]) +
                                " not finished";
    self->StartTls();
    return;
  }
  self->connect_timer_.Stop();
  if (Status started = self->StartSession(); !started.ok()) {
    self->Fail(started.error().code, started.error().message);
    return;
  }
  self->state_ = State::kUp;
  if (int rc = uv_read_start(self->tcp_.stream(), OnAlloc, OnRead); rc != 0) {
    self->Fail(ErrorCode::kUnavailable, std::string("cannot read the socket: ") + uv_strerror(rc));
    return;
  }
  self->Flush();  // the connection preface and our SETTINGS
  if (self->state_ != State::kUp) return;
  self->Established();
}

void EtcdConnection::Established() {
  connect_timer_.Stop();
  state_ = State::kUp;
  was_up_ = true;
  ping_timer_.Start(kPingIntervalMs, kPingIntervalMs);
  listener_.OnConnected(*this);
}

void EtcdConnection::StartTls() {
  if (tls_context_ == nullptr) {
    Fail(ErrorCode::kInternal, "https:// endpoint without a TLS context");
    return;
  }
  auto session = EtcdTlsSession::Create(tls_context_, endpoint_.host);
  if (!session.ok()) {
    Fail(session.error().code, session.error().message);
    return;
  }
  tls_ = std::move(session).value();
  state_ = State::kHandshaking;
  if (int rc = uv_read_start(tcp_.stream(), OnAlloc, OnRead); rc != 0) {
    Fail(ErrorCode::kUnavailable, std::string("cannot read the socket: ") + uv_strerror(rc));
    return;
  }
  ContinueHandshake();  // the ClientHello
}

void EtcdConnection::ContinueHandshake() {
  Result<bool> done = tls_->Handshake();
  // Handshake flights, or the alert that tells etcd why we gave up.
  if (!WriteToSocket(tls_->TakeOutgoing())) return;
  if (!done.ok()) {
    Fail(ErrorCode::kUnavailable, done.error().message);
    return;
  }
  if (!*done) return;
  if (Status started = StartSession(); !started.ok()) {
    Fail(started.error().code, started.error().message);
    return;
  }
  // The preface and our SETTINGS go out now; the connection is up when
  // etcd's first bytes (its SETTINGS) show it accepted our certificate.
  Flush();
}

void EtcdConnection::OnTlsData(std::string_view ciphertext) {
  tls_->Feed(ciphertext);
  if (channel_ == nullptr) {
    ContinueHandshake();
    if (state_ != State::kHandshaking || channel_ == nullptr) return;
  }
  std::string plaintext;
  Status read = tls_->Read(plaintext);
  // Anything SSL answered while reading (alerts, key update replies).
  if (!WriteToSocket(tls_->TakeOutgoing())) return;
  const bool first = state_ == State::kHandshaking;
  if (!read.ok()) {
    Fail(read.error().code, (first ? "TLS handshake failed: " : "TLS: ") + read.error().message);
    return;
  }
  if (plaintext.empty()) return;
  Receive(plaintext);
  if (first && state_ == State::kHandshaking) Established();
}

Status EtcdConnection::StartSession() {
  GrpcChannelOptions options;
  options.peer = "etcd";
  options.scheme = endpoint_.tls ? "https" : "http";
  options.authority = endpoint_.authority;
  options.user_agent = "podless-etcd-client/0.1";
  auto channel = GrpcChannel::Create(std::move(options), *this);
  if (!channel.ok()) return channel.error();
  channel_ = std::move(channel).value();
  // etcd sends GOAWAY when it shuts down; the simplest correct reaction is
  // to treat it as a lost connection: callers retry on a new one.
  channel_->set_goaway_ends_channel(true);
  return {};
}

Result<int32_t> EtcdConnection::StartCall(const std::string& path,
                                          std::optional<std::chrono::milliseconds> timeout,
                                          GrpcStreamSink& sink) {
  if (state_ != State::kUp) {
    return MakeError(ErrorCode::kUnavailable, "not connected to etcd at " + endpoint_.url);
  }
  Result<int32_t> stream_id = channel_->StartCall(path, timeout, sink);
  if (!stream_id.ok()) {
    return MakeError(ErrorCode::kUnavailable,
                     stream_id.error().message + " (" + endpoint_.url + ")");
  }
  Flush();  // a failure here ends the call through OnDisconnected
  return stream_id;
}

void EtcdConnection::Resume(int32_t stream_id) {
  if (state_ != State::kUp) return;
  FailOn(channel_->Resume(stream_id));
}

void EtcdConnection::Cancel(int32_t stream_id) {
  if (channel_ == nullptr) return;
  if (state_ != State::kUp) {
    channel_->Forget(stream_id);
    return;
  }
  FailOn(channel_->Cancel(stream_id));
}

void EtcdConnection::Flush() {
  if ((state_ != State::kUp && state_ != State::kHandshaking) || channel_ == nullptr) return;
  FailOn(channel_->Flush());
}

void EtcdConnection::FailOn(const Status& status) {
  if (!status.ok()) Fail(status.error().code, status.error().message);
}

Status EtcdConnection::Send(std::string bytes) {
  if (tls_ != nullptr) {
    if (Status sealed = tls_->Write(bytes); !sealed.ok()) return sealed;
    bytes = tls_->TakeOutgoing();
  }
  if (!WriteToSocket(std::move(bytes))) return failure_;
  return {};
}

bool EtcdConnection::WriteToSocket(std::string bytes) {
  if (state_ == State::kFailed) return false;
  if (bytes.empty()) return true;
  auto* write = new WriteRequest{{}, std::move(bytes)};
  uv_buf_t buf = uv_buf_init(write->data.data(), static_cast<unsigned>(write->data.size()));
  const int rc = uv_write(&write->req, tcp_.stream(), &buf, 1, OnWrite);
  if (rc < 0) {
    delete write;
    Fail(ErrorCode::kUnavailable, std::string("write: ") + uv_strerror(rc));
    return false;
  }
  return true;
}

void EtcdConnection::OnWrite(uv_write_t* req, int status) {
  auto* self = static_cast<EtcdConnection*>(req->handle->data);
  delete reinterpret_cast<WriteRequest*>(req);
  if (self == nullptr || status >= 0) return;
  self->Fail(ErrorCode::kUnavailable, std::string("write: ") + uv_strerror(status));
}

void EtcdConnection::OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<EtcdConnection*>(handle->data);
  *buf = self == nullptr ? uv_buf_init(nullptr, 0)
                         : uv_buf_init(self->read_buffer_, sizeof(self->read_buffer_));
}

void EtcdConnection::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<EtcdConnection*>(stream->data);
  if (self == nullptr || nread == 0) return;
  if (nread < 0) {
    std::string why = nread == UV_EOF ? std::string("etcd closed the connection")
                                      : std::string("read: ") + uv_strerror(nread);
    // The likely cause of a silent close is a scheme that does not match
    // what the port serves.
    if (self->state_ == State::kHandshaking) {
      why += " during the TLS handshake (does it serve TLS on this port?)";
    } else if (!self->received_any_) {
      why += " before sending anything (if it serves TLS, use https:// and --etcd-ca)";
    }
    self->Fail(ErrorCode::kUnavailable, std::move(why));
    return;
  }
  self->received_any_ = true;
  const std::string_view bytes(buf->base, static_cast<size_t>(nread));
  if (self->tls_ != nullptr) {
    self->OnTlsData(bytes);
  } else {
    self->Receive(bytes);
  }
}

void EtcdConnection::Receive(std::string_view plaintext) { FailOn(channel_->Receive(plaintext)); }

void EtcdConnection::Fail(ErrorCode code, std::string reason) {
  if (state_ == State::kFailed) return;
  state_ = State::kFailed;
  std::string prefix = "etcd at " + endpoint_.url + ": ";
  failure_ = MakeError(code, reason.starts_with("etcd at ") ? reason : prefix + reason);
  if (resolving_ != nullptr) {
    resolving_->owner = nullptr;
    // Fails (EBUSY) once the lookup runs: its callback then finds no owner.
    (void)uv_cancel(reinterpret_cast<uv_req_t*>(&resolving_->req));
    resolving_ = nullptr;
  }
  tcp_.Close();
  connect_timer_.Stop();
  ping_timer_.Stop();
  notify_timer_.Start(0);
}

void EtcdConnection::Notify() {
  if (was_up_) {
    listener_.OnDisconnected(*this, failure_);
  } else {
    listener_.OnConnectFailed(*this, failure_);
  }
}

void EtcdConnection::PingTick() {
  if (state_ != State::kUp) return;
  if (channel_->ping_outstanding()) {
    Fail(ErrorCode::kUnavailable, "no answer to an HTTP/2 PING within " +
                                      std::to_string(kPingIntervalMs / 1000) +
                                      " s (etcd or the network is gone)");
    return;
  }
  if (channel_->open_streams() == 0) return;
  FailOn(channel_->SendPing());
}

}  // namespace podless::runtime
