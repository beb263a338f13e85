#include "runtime/etcd/etcd_connection.h"

#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

namespace podless::runtime {
namespace {

constexpr uint16_t kDefaultEtcdPort = 2379;
// etcd (grpc-go) answers a client that pings more often than every 5 s
// (--grpc-keepalive-min-time), or pings with no stream open, with GOAWAY
// ENHANCE_YOUR_CALM: stay well above it and ping only while streams are open.
constexpr uint64_t kPingIntervalMs = 10'000;

// A peer that stops reading while we have bytes for it is as dead as one
// that does not answer PINGs; the stream gives up after this long.
constexpr uint64_t kWriteStallTimeoutMs = 2 * kPingIntervalMs;

const sockaddr& AsSockaddr(const sockaddr_storage& address) {
  return reinterpret_cast<const sockaddr&>(address);
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

EtcdConnection::EtcdConnection(proxy::Dispatcher& dispatcher, EtcdEndpoint endpoint,
                               EtcdTlsContextPtr tls, Listener& listener)
    : dispatcher_(dispatcher),
      loop_(dispatcher.loop()),
      endpoint_(std::move(endpoint)),
      tls_context_(endpoint_.tls ? std::move(tls) : nullptr),
      listener_(listener),
      connect_timer_(loop_, [this] { OnConnectTimeout(); }),
      notify_timer_(loop_, [this] { Notify(); }),
      ping_timer_(loop_, [this] { PingTick(); }) {}

EtcdConnection::~EtcdConnection() {
  if (resolving_ != nullptr) {
    resolving_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolving_->req));
  }
  connector_.reset();  // cancels a pending connect
  // Resetting the TLS stream resets the TCP stream under it, and runs its
  // destroy callback (which clears tls_) at once.
  if (stream_ != nullptr) std::exchange(stream_, nullptr)->Reset();
  if (tls_ != nullptr) tls_->Reset();
  // The timers call nothing once destroyed.
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
  connect_deadline_ = uv_now(loop_) + connect_timeout_ms_;
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

uint64_t EtcdConnection::ConnectTimeLeft() const {
  const uint64_t now = uv_now(loop_);
  return connect_deadline_ > now ? connect_deadline_ - now : 1;
}

void EtcdConnection::ConnectNextAddress() {
  // Every address of the name in turn, like any client of a dual-stack name.
  if (next_address_ == addresses_.size()) {
    Fail(ErrorCode::kUnavailable,
         last_connect_error_.empty() ? "no address for " + endpoint_.host : last_connect_error_);
    return;
  }
  // Replaces the connector of the last attempt, which may be calling us (a
  // connector may die inside its callback).
  connector_ = std::make_unique<proxy::TcpConnector>(dispatcher_);
  connector_->Connect(
      AsSockaddr(addresses_[next_address_++]), ConnectTimeLeft(),
      [this](Result<proxy::TcpStream*> connected) { OnTcpConnected(std::move(connected)); });
}

void EtcdConnection::OnTcpConnected(Result<proxy::TcpStream*> connected) {
  if (!connected.ok()) {
    last_connect_error_ = connected.error().message;
    ConnectNextAddress();
    return;
  }
  proxy::TcpStream* tcp = *connected;
  tcp->SetWriteStallTimeout(kWriteStallTimeoutMs, nullptr);
  if (!endpoint_.tls) {
    StartSession(tcp);
    if (state_ == State::kConnecting) Established();
    return;
  }
  if (tls_context_ == nullptr) {
    tcp->Close();
    Fail(ErrorCode::kInternal, "https:// endpoint without a TLS context");
    return;
  }
  // The connect timeout also bounds the handshake.
  last_connect_error_ = "TLS handshake with " +
                        proxy::FormatSockaddr(AsSockaddr(addresses_[next_address_ - 1])) +
                        " not finished";
  state_ = State::kHandshaking;
  tls_ = proxy::TlsStream::ConnectToName(
      dispatcher_, tls_context_->stream_context(), tcp, endpoint_.host, ConnectTimeLeft(),
      [this](Status status) { OnTlsHandshake(std::move(status)); });
  tls_->SetDestroyCallback([this] {
    tls_failure_ = tls_->failure();
    tls_ = nullptr;
  });
}

void EtcdConnection::OnTlsHandshake(Status status) {
  if (state_ != State::kHandshaking) return;
  if (!status.ok()) {
    tls_lingering_ = true;  // on its own, to flush its alert
    std::string why = status.error().message;
    if (status.error().code == ErrorCode::kUnavailable) {  // etcd closed it
      why = "etcd closed the connection during the TLS handshake (does it serve TLS on this port?)";
    } else if (!why.starts_with("TLS")) {
      why = "TLS handshake failed: " + why;  // "peer did not negotiate ALPN h2"
    }
    Fail(ErrorCode::kUnavailable, std::move(why));
    return;
  }
  // The preface and our SETTINGS go out now; the connection is up when
  // etcd's first bytes (its SETTINGS) show it accepted our certificate.
  StartSession(tls_);
}

void EtcdConnection::StartSession(proxy::Stream* stream) {
  stream_ = stream;
  stream_->SetHandler(this);
  GrpcChannelOptions options;
  options.peer = "etcd";
  options.scheme = endpoint_.tls ? "https" : "http";
  options.authority = endpoint_.authority;
  options.user_agent = "podless-etcd-client/0.1";
  auto channel = GrpcChannel::Create(std::move(options), *this);
  if (!channel.ok()) {
    Fail(channel.error().code, channel.error().message);
    return;
  }
  channel_ = std::move(channel).value();
  // etcd sends GOAWAY when it shuts down; the simplest correct reaction is
  // to treat it as a lost connection: callers retry on a new one.
  channel_->set_goaway_ends_channel(true);
  FailOn(channel_->Flush());  // the connection preface and our SETTINGS
}

void EtcdConnection::Established() {
  connect_timer_.Stop();
  state_ = State::kUp;
  was_up_ = true;
  ping_timer_.Start(kPingIntervalMs, kPingIntervalMs);
  listener_.OnConnected(*this);
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
  if (state_ != State::kUp || channel_ == nullptr) return;
  FailOn(channel_->Flush());
}

void EtcdConnection::FailOn(const Status& status) {
  if (!status.ok()) Fail(status.error().code, status.error().message);
}

Status EtcdConnection::Send(std::string bytes) {
  if (state_ == State::kFailed || stream_ == nullptr) return failure_;
  stream_->Write(bytes);  // a failed write comes back as OnClosed, on a later turn
  return {};
}

void EtcdConnection::OnData(std::string_view bytes) {
  if (state_ == State::kFailed) return;
  const bool first = !received_any_;
  received_any_ = true;
  FailOn(channel_->Receive(bytes));
  // With TLS, etcd's first bytes show that it accepted our certificate.
  if (first && state_ == State::kHandshaking) Established();
}

std::string EtcdConnection::ClosedReason(std::string what) const {
  // The likely cause of a silent close is a scheme that does not match what
  // the port serves, or (TLS 1.3) a client certificate etcd refused.
  if (received_any_) return what;
  if (endpoint_.tls) return what + " during the TLS handshake (does it serve TLS on this port?)";
  return what + " before sending anything (if it serves TLS, use https:// and --etcd-ca)";
}

void EtcdConnection::OnEnd() {
  Fail(ErrorCode::kUnavailable, ClosedReason("etcd closed the connection"));
}

void EtcdConnection::OnClosed(bool reset) {
  stream_ = nullptr;  // gone: Fail must not reset it
  if (!tls_failure_.empty()) {
    // A TLS error (an alert from etcd, say); before etcd's first bytes it
    // ends the handshake as far as the operator is concerned.
    Fail(ErrorCode::kUnavailable,
         (received_any_ ? "TLS: " : "TLS handshake failed: ") + tls_failure_);
    return;
  }
  Fail(ErrorCode::kUnavailable,
       ClosedReason(reset ? "the connection to etcd failed (reset, or a write error or stall)"
                          : "etcd closed the connection"));
}

void EtcdConnection::Fail(ErrorCode code, std::string reason) {
  if (state_ == State::kFailed) return;
  state_ = State::kFailed;
  std::string prefix = "etcd at " + endpoint_.url + ": ";
  failure_ = MakeError(code, reason.starts_with("etcd at ") ? reason : prefix + reason);
  if (resolving_ != nullptr) {
    resolving_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolving_->req));
    resolving_ = nullptr;
  }
  connector_.reset();  // may be calling us, see ConnectNextAddress
  if (stream_ != nullptr) std::exchange(stream_, nullptr)->Reset();
  // A handshake still running is cut off; a failed one lingers on its own
  // to flush its alert.
  if (tls_ != nullptr && !tls_lingering_) tls_->Reset();
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
