#include "proxy/outbound_entry.h"

#include <openssl/base64.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "proxy/base/http1_parser.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/timer.h"
#include "proxy/hbone_server.h"
#include "proxy/memory_pipe.h"
#include "proxy/socks5.h"
#include "proxy/splice.h"
#include "workloads/ipam.h"

namespace podless::proxy {

bool ParseBasicCredentials(std::string_view header, std::string* user, std::string* password) {
  size_t space = header.find(' ');
  if (space == std::string_view::npos || !EqualsIgnoreCase(header.substr(0, space), "basic")) {
    return false;
  }
  std::string_view encoded = header.substr(space + 1);
  while (!encoded.empty() && encoded.front() == ' ') encoded.remove_prefix(1);
  size_t max_len = 0;
  if (!EVP_DecodedLength(&max_len, encoded.size())) return false;
  std::string decoded(max_len, '\0');
  size_t len = 0;
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(decoded.data()), &len, max_len,
                        reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size())) {
    return false;
  }
  decoded.resize(len);
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  *user = decoded.substr(0, colon);
  *password = decoded.substr(colon + 1);
  return true;
}

uint64_t LoginThrottle::BlockedFor(uint64_t source, uint64_t now_ms) const {
  std::lock_guard lock(mutex_);
  auto it = by_key_.find(source);
  if (it == by_key_.end()) return 0;
  const uint64_t until = it->second->blocked_until_ms;
  return until > now_ms ? until - now_ms : 0;
}

uint64_t LoginThrottle::Failed(uint64_t source, uint64_t now_ms) {
  if (options_.max_failures == 0) return 0;
  std::lock_guard lock(mutex_);
  auto it = by_key_.find(source);
  if (it == by_key_.end()) {
    if (by_key_.size() >= std::max<size_t>(options_.max_sources, 1)) {
      by_key_.erase(recent_.back().key);
      recent_.pop_back();
    }
    recent_.push_front(Source{source, 0, now_ms, 0, options_.first_backoff_ms});
    it = by_key_.emplace(source, recent_.begin()).first;
  } else {
    recent_.splice(recent_.begin(), recent_, it->second);
  }
  Source& s = *it->second;
  if (now_ms >= s.window_start_ms + options_.window_ms) {
    // The window is over: count anew. A source quiet for a whole window
    // after its last block is forgiven its doubled backoff too.
    if (now_ms >= s.blocked_until_ms + options_.window_ms) {
      s.next_backoff_ms = options_.first_backoff_ms;
    }
    s.failures = 0;
    s.window_start_ms = now_ms;
  }
  if (++s.failures < options_.max_failures) return 0;
  const uint64_t backoff = s.next_backoff_ms;
  s.blocked_until_ms = now_ms + backoff;
  s.next_backoff_ms = std::min(backoff * 2, std::max(options_.max_backoff_ms, backoff));
  s.failures = 0;
  s.window_start_ms = now_ms;
  return backoff;
}

size_t LoginThrottle::size() const {
  std::lock_guard lock(mutex_);
  return by_key_.size();
}

// After a refusal the client gets this long to read it and close.
constexpr uint64_t kLingerAfterRefusalMs = 2000;

// One accepted client until its upstream is established (then a splice
// takes over) or it is refused.
class OutboundClient final : public StreamHandler {
 public:
  OutboundClient(OutboundEntry& entry, TcpStream* client, uint32_t pinned,
                 CountSlot unauthenticated)
      : entry_(entry),
        client_(client),
        pinned_(pinned),
        unauthenticated_(std::move(unauthenticated)) {}

  void Start() {
    peer_ = client_->PeerAddress();
    entry_.clients_.insert(this);
    client_->SetHandler(this);
    timer_ = std::make_unique<Timer>(entry_.dispatcher_.loop(), [this] { OnTimeout(); });
    started_ms_ = uv_now(entry_.dispatcher_.loop());
    const OutboundEntryOptions& options = entry_.options_;
    uint64_t first = options.setup_timeout_ms;
    if (options.request_timeout_ms > 0 && options.request_timeout_ms < first) {
      first = options.request_timeout_ms;
    }
    StartTimer(first);
  }
  void StartTimer(uint64_t ms) {
    if (timer_) timer_->Start(ms);  // null once Done
  }

  void OnTimeout() {
    switch (state_) {
      case State::kDetect:
      case State::kHttp:
      case State::kSocks:
        // A slow-loris client: the request never completed.
        entry_.metrics_.PeerTimeout(ProxyMetrics::kTimeoutOutboundRequest).Inc();
        Fail(408, 0, "timed out waiting for the request");
        break;
      case State::kConnecting:
        entry_.metrics_.PeerTimeout(ProxyMetrics::kTimeoutOutboundSetup).Inc();
        Fail(504, kSocks5TtlExpired, "timed out setting up the connection");
        break;
      case State::kRefused:
        // Refused and told so, but the client never closed: stop waiting.
        Drop();
        break;
    }
  }

  // The entry is closing: drop the client.
  void Drop() {
    if (client_ != nullptr) client_->Reset();
    client_ = nullptr;
    Done();
  }

  // StreamHandler (the client, until the splice)
  void OnData(std::string_view bytes) override {
    if (state_ == State::kRefused || state_ == State::kConnecting) return;
    input_.append(bytes);
    Process();
  }
  void OnEnd() override {
    if (state_ != State::kRefused && client_ != nullptr) {
      state_ = State::kRefused;
      client_->End();
    }
  }
  void OnClosed(bool) override {
    client_ = nullptr;
    Done();
  }

 private:
  enum class State { kDetect, kHttp, kSocks, kConnecting, kRefused };
  enum class Mode { kHttpConnect, kHttpForward, kSocks };

  void Process() {
    if (state_ == State::kDetect) {
      if (input_.empty()) return;
      state_ = static_cast<uint8_t>(input_[0]) == 0x05 ? State::kSocks : State::kHttp;
    }
    if (state_ == State::kHttp)
      ProcessHttp();
    else if (state_ == State::kSocks)
      ProcessSocks();
  }

  void ProcessHttp() {
    size_t consumed = 0;
    auto parsed = parser_.Feed(input_, &consumed);
    input_.erase(0, consumed);
    if (parsed == Http1RequestParser::State::kIncomplete) return;
    if (parsed == Http1RequestParser::State::kError) {
      Fail(parser_.error_status() != 0 ? parser_.error_status() : 400, 0, parser_.error());
      return;
    }
    const Http1Request& request = parser_.request();
    std::string user, password;
    auto auth = request.Header("Proxy-Authorization");
    if (!auth || !ParseBasicCredentials(*auth, &user, &password)) {
      Fail(407, 0, "proxy credentials required");
      return;
    }
    switch (Authenticate(user, password, ProxyMetrics::kProtocolHttp)) {
      case Login::kAccepted:
        break;
      case Login::kRejected:
        Fail(407, 0, "proxy credentials rejected");
        return;
      case Login::kThrottled:
        Fail(429, 0,
             "too many failed proxy logins from this source: try again in " +
                 std::to_string(retry_after_s_) + " s");
        return;
    }
    if (request.method == "CONNECT") {
      auto target = ParseAuthority(request.target, 0);
      if (!target.ok()) {
        Fail(400, 0, "CONNECT target: " + target.error().message);
        return;
      }
      mode_ = Mode::kHttpConnect;
      Connect(target->host, target->port);
      return;
    }
    auto url = ParseAbsoluteUrl(request.target);
    if (!url.ok()) {
      Fail(400, 0,
           "a proxy request needs an absolute http:// URL or CONNECT: " + url.error().message);
      return;
    }
    // Origin form over the tunnel; one request per tunnel.
    std::string head = request.method + " " + url->path_and_query + " " + request.version + "\r\n";
    for (const auto& [name, value] : request.headers) {
      if (EqualsIgnoreCase(name, "Proxy-Authorization") ||
          EqualsIgnoreCase(name, "Proxy-Connection") || EqualsIgnoreCase(name, "Connection") ||
          EqualsIgnoreCase(name, "Keep-Alive")) {
        continue;
      }
      head += name + ": " + value + "\r\n";
    }
    head += "Connection: close\r\n\r\n";
    forward_head_ = std::move(head);
    mode_ = Mode::kHttpForward;
    Connect(url->authority.host, url->authority.port);
  }

  void ProcessSocks() {
    while (state_ == State::kSocks && !input_.empty()) {
      size_t consumed = 0;
      auto step = socks_.Feed(input_, &consumed);
      input_.erase(0, consumed);
      switch (step.kind) {
        case Socks5ServerHandshake::Step::Kind::kNeedMore:
          return;
        case Socks5ServerHandshake::Step::Kind::kReply:
          client_->Write(step.reply);
          break;
        case Socks5ServerHandshake::Step::Kind::kAuthenticate: {
          bool ok = Authenticate(step.username, step.password, ProxyMetrics::kProtocolSocks5) ==
                    Login::kAccepted;
          client_->Write(socks_.AuthenticationResult(ok));
          if (!ok) {
            state_ = State::kRefused;
            client_->End();
            return;
          }
          break;
        }
        case Socks5ServerHandshake::Step::Kind::kConnect:
          mode_ = Mode::kSocks;
          Connect(step.target.host, step.target.port);
          return;
        case Socks5ServerHandshake::Step::Kind::kError:
          if (!step.reply.empty()) client_->Write(step.reply);
          state_ = State::kRefused;
          client_->End();
          return;
      }
    }
  }

  enum class Login { kAccepted, kRejected, kThrottled };

  Login Authenticate(const std::string& user, const std::string& password,
                     std::string_view protocol) {
    LoginThrottle& throttle = *entry_.login_throttle_;
    const uint64_t key = LoginThrottle::SourceKey(pinned_, peer_);
    const uint64_t now = uv_now(entry_.dispatcher_.loop());
    // Refused before the credentials are looked at: a blocked guesser
    // learns nothing from trying on.
    if (uint64_t wait_ms = throttle.BlockedFor(key, now); wait_ms > 0) {
      entry_.metrics_.LimitRefused(ProxyMetrics::kLimitOutboundLoginFailures).Inc();
      retry_after_s_ = (wait_ms + 999) / 1000;
      return Login::kThrottled;
    }
    const LocalReplica* source = entry_.directory_.Authenticate(user, password);
    // Inside a sandbox's namespace only that replica's own credentials work.
    if (source == nullptr || (pinned_ != 0 && source->address != pinned_)) {
      entry_.metrics_.OutboundAuthFailure(protocol).Inc();
      if (uint64_t backoff_ms = throttle.Failed(key, now); backoff_ms > 0) {
        LogBlocked(backoff_ms);
      }
      return Login::kRejected;
    }
    unauthenticated_.Release();
    source_address_ = source->address;
    source_identity_ = source->spiffe_id;
    source_workload_ = source->workload;
    return Login::kAccepted;
  }

  // Once per block: a guesser is not silent.
  void LogBlocked(uint64_t backoff_ms) {
    const LoginThrottleOptions& options = entry_.login_throttle_->options();
    std::string source = workloads::FormatIpv4(peer_);
    if (pinned_ != 0)
      source += " in the network namespace of replica " + workloads::FormatIpv4(pinned_);
    entry_.options_.log(
        "outbound entry: " + std::to_string(options.max_failures) + " failed proxy logins from " +
        source + " within " + std::to_string(options.window_ms / 1000) +
        " s: its logins are refused for " + std::to_string(backoff_ms / 1000) + " s");
  }

  void Connect(const std::string& host, uint16_t port) {
    state_ = State::kConnecting;
    client_->SetReadPaused(true);
    // The request is complete: what remains of the setup time applies.
    uint64_t elapsed = uv_now(entry_.dispatcher_.loop()) - started_ms_;
    uint64_t setup = entry_.options_.setup_timeout_ms;
    StartTimer(setup > elapsed ? setup - elapsed : 1);
    // Held while the connection is set up, then by the open connection.
    uint32_t limit = entry_.options_.max_connections_per_workload;
    slot_ = CountSlot::TryAcquire(entry_.per_workload_, source_address_, limit);
    if (!slot_) {
      entry_.metrics_.LimitRefused(ProxyMetrics::kLimitOutboundConnectionsPerWorkload).Inc();
      // Refused means the count was at the limit (no acquire passes it);
      // reading the count again could see other workers' releases since.
      Fail(429, kSocks5GeneralFailure,
           "workload " + source_workload_ + " has " + std::to_string(limit) +
               " outbound connections open, the limit is " + std::to_string(limit));
      return;
    }
    auto destination = entry_.directory_.Resolve(host, port);
    if (!destination.ok()) {
      Fail(502, kSocks5HostUnreachable,
           "cannot resolve " + host + ": " + destination.error().message);
      return;
    }
    service_ = destination->service;
    auto picked = entry_.balancer_.Pick(
        destination->endpoint_count(), [](size_t) { return true; },
        [&](size_t i) {
          return entry_.tracker_.EndpointConnections(destination->endpoint_address(i));
        });
    if (!picked.ok()) {
      Fail(502, kSocks5HostUnreachable,
           "no ready endpoint for " + host + ":" + std::to_string(port));
      return;
    }
    endpoint_ = destination->endpoint(*picked);
    if (endpoint_.local) {
      InboundSource source;
      source.principal = source_identity_;
      source.workload = source_workload_;
      source.address = source_address_;
      // The identity is the authenticated caller's, but no TLS runs between
      // two local replicas: connection_security_policy="none" (README).
      source.mutual_tls = false;
      source.destination_service = service_;
      InboundDecision decision = entry_.inbound_.Admit(endpoint_.address, endpoint_.port, source);
      if (decision.status != 200) {
        RefuseUpstream(decision.status, decision.reason);
        return;
      }
      auto [ours, theirs] = NewMemoryPipe(entry_.dispatcher_);
      entry_.inbound_.Serve(decision, source, theirs);
      Connected(ours);
      return;
    }
    if (endpoint_.spiffe_id.empty()) {
      // Outside the mesh: plain TCP.
      connector_ = std::make_unique<TcpConnector>(entry_.dispatcher_);
      connector_->Connect(endpoint_.address, endpoint_.port, entry_.options_.setup_timeout_ms,
                          [this](Result<TcpStream*> result) {
                            if (!result.ok()) {
                              Fail(502, kSocks5ConnectionRefused, result.error().message);
                              return;
                            }
                            Connected(result.value());
                          });
      return;
    }
    const LocalReplica* source = entry_.directory_.FindLocalReplica(source_address_);
    if (source == nullptr) {
      Fail(502, kSocks5GeneralFailure, "the calling workload is gone");
      return;
    }
    request_ = entry_.pool_.Open(*source, endpoint_,
                                 [this](HboneStream* stream, int status, const std::string& error) {
                                   if (stream == nullptr) {
                                     RefuseUpstream(status, error);
                                     return;
                                   }
                                   Connected(stream);
                                 });
  }

  void RefuseUpstream(int status, const std::string& reason) {
    if (status == 403) {
      Fail(403, kSocks5NotAllowedByRuleset, reason);
    } else {
      Fail(502, kSocks5ConnectionRefused, reason);
    }
  }

  void Connected(Stream* upstream) {
    if (client_ == nullptr) {
      upstream->Reset();
      return;
    }
    switch (mode_) {
      case Mode::kHttpConnect:
        client_->Write("HTTP/1.1 200 Connection Established\r\n\r\n");
        break;
      case Mode::kHttpForward:
        upstream->Write(forward_head_);
        break;
      case Mode::kSocks:
        client_->Write(Socks5Reply(kSocks5Succeeded));
        break;
    }
    if (!input_.empty()) upstream->Write(input_);
    ConnectionLabels labels;
    labels.source_reporter = true;
    labels.source_workload = source_workload_;
    labels.source_principal = source_identity_;
    labels.destination_workload = endpoint_.workload;
    labels.destination_principal = endpoint_.spiffe_id;
    labels.destination_service = service_;
    labels.mutual_tls = !endpoint_.spiffe_id.empty() && !endpoint_.local;
    Stream* client = std::exchange(client_, nullptr);
    client->SetReadPaused(false);
    // The slot moves to the open connection: still counted, without a gap,
    // until the connection ends.
    Stream* tracked = entry_.tracker_.Track(client, source_address_, endpoint_.address,
                                            entry_.metrics_.Series(labels), std::move(slot_));
    StartSplice(tracked, upstream);
    Done();
  }

  void Fail(int http_status, uint8_t socks_reply, const std::string& message) {
    if (client_ == nullptr || state_ == State::kRefused) return;
    bool socks = state_ == State::kSocks || mode_ == Mode::kSocks;
    state_ = State::kRefused;
    if (socks) {
      if (socks_reply != 0) client_->Write(Socks5Reply(socks_reply));
    } else {
      Http1Headers headers = {{"Content-Type", "text/plain; charset=utf-8"}};
      if (http_status == 407) headers.emplace_back("Proxy-Authenticate", "Basic realm=\"podless\"");
      if (retry_after_s_ > 0) headers.emplace_back("Retry-After", std::to_string(retry_after_s_));
      std::string body = message + "\n";
      headers.emplace_back("Content-Length", std::to_string(body.size()));
      headers.emplace_back("Connection", "close");
      client_->Write(FormatResponseHead(http_status, "", headers) + body);
    }
    client_->End();
    client_->SetReadPaused(false);  // drain until the client closes
    request_.reset();
    connector_.reset();
    StartTimer(kLingerAfterRefusalMs);
  }

  // Leaves the entry's books; deleted next turn.
  void Done() {
    if (done_) return;
    done_ = true;
    entry_.clients_.erase(this);
    slot_.Release();  // a no-op once Connected() handed it on
    timer_.reset();
    request_.reset();
    entry_.dispatcher_.DeferredDelete(std::unique_ptr<OutboundClient>(this));
  }

  OutboundEntry& entry_;
  TcpStream* client_;
  uint32_t pinned_;             // the only replica this connection may speak as; 0: any
  CountSlot unauthenticated_;   // until the credentials are accepted
  uint32_t peer_ = 0;           // the client's address: with pinned_, its LoginThrottle source
  uint64_t retry_after_s_ = 0;  // set when its login was throttled
  TimerPtr timer_;              // from Start until Done
  State state_ = State::kDetect;
  Mode mode_ = Mode::kHttpConnect;
  std::string input_;
  Http1RequestParser parser_;
  Socks5ServerHandshake socks_;
  std::string forward_head_;
  uint32_t source_address_ = 0;
  std::string source_identity_;
  std::string source_workload_;
  std::string service_;
  Endpoint endpoint_;
  HboneRequestPtr request_;
  std::unique_ptr<TcpConnector> connector_;
  uint64_t started_ms_ = 0;
  // In entry_.per_workload_ from the limit check in Connect() until the
  // setup fails or Connected() hands it to the open connection.
  CountSlot slot_;
  bool done_ = false;
};

Result<OutboundEntryPtr> OutboundEntry::Create(Dispatcher& dispatcher, Directory& directory,
                                               Inbound& inbound, HbonePool& pool,
                                               ConnectionTracker& tracker, ProxyMetrics& metrics,
                                               const OutboundEntryOptions& options) {
  OutboundEntryPtr entry(
      new OutboundEntry(dispatcher, directory, inbound, pool, tracker, metrics, options));
  ConnectionLimitsPtr limits =
      options.limits != nullptr ? options.limits : std::make_shared<ConnectionLimits>();
  entry->per_workload_ = CountsOf(limits, &ConnectionLimits::outbound_connections_per_workload);
  entry->unauthenticated_ = CountsOf(limits, &ConnectionLimits::unauthenticated);
  entry->login_throttle_ = options.login_throttle != nullptr ? options.login_throttle
                                                             : std::make_shared<LoginThrottle>();
  TcpListener::Options listen;
  listen.name = "outbound";
  listen.listen = options.listen;
  listen.metrics = &metrics;
  listen.log = options.log;
  OutboundEntry* self = entry.get();
  auto listener = TcpListener::Create(dispatcher, std::move(listen),
                                      [self](TcpStream* tcp) { self->OnConnection(tcp, 0); });
  if (!listener.ok()) {
    return MakeError(listener.error().code, "outbound entry: " + listener.error().message);
  }
  entry->listener_ = std::move(listener).value();
  entry->port_ = entry->listener_->port();
  return entry;
}

OutboundEntry::~OutboundEntry() { Close(); }

void OutboundEntry::Close() {
  if (listener_) listener_->Close();
  sandbox_listeners_.clear();
  std::vector<OutboundClient*> clients(clients_.begin(), clients_.end());
  for (OutboundClient* client : clients) client->Drop();
}

void OutboundEntry::OnConnection(TcpStream* tcp, uint32_t pinned) {
  tcp->SetWriteStallTimeout(options_.write_stall_timeout_ms,
                            &metrics_.PeerTimeout(ProxyMetrics::kTimeoutOutboundWriteStalled));
  CountSlot unauthenticated =
      CountSlot::TryAcquire(unauthenticated_, 0, options_.max_unauthenticated_connections);
  if (!unauthenticated) {
    metrics_.LimitRefused(ProxyMetrics::kLimitUnauthenticatedConnections).Inc();
    tcp->Reset();
    return;
  }
  (new OutboundClient(*this, tcp, pinned, std::move(unauthenticated)))->Start();
}

Status OutboundEntry::SyncSandboxListeners(const std::map<uint32_t, int>& listeners) {
  std::erase_if(sandbox_listeners_,
                [&](const auto& entry) { return listeners.count(entry.first) == 0; });
  Status status;
  for (const auto& [address, fd] : listeners) {
    if (sandbox_listeners_.count(address)) continue;
    TcpListener::Options listen;
    listen.name = "outbound";
    listen.metrics = &metrics_;
    listen.log = options_.log;
    listen.listen.bind = "127.0.0.1";
    auto listener = TcpListener::Adopt(
        dispatcher_, fd, std::move(listen),
        [this, address = address](TcpStream* tcp) { OnConnection(tcp, address); });
    if (!listener.ok()) {
      if (status.ok()) status = listener.error();
      continue;
    }
    sandbox_listeners_[address] = std::move(listener).value();
  }
  return status;
}

}  // namespace podless::proxy
