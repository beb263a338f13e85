#include "api/kube/kube_server.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <utility>

#include "api/kube/request_body.h"
#include "proxy/base/http1_parser.h"
#include "proxy/base/log.h"
#include "proxy/base/timer.h"

namespace podless::api::kube {
namespace {

int64_t Now() { return static_cast<int64_t>(time(nullptr)); }

}  // namespace

// One authenticated (or refused) client: HTTP/1.1 requests, one at a time,
// in order, on its TlsStream. Owned by KubeServer::connections_; deleted on
// the next loop turn after its stream closed.
class KubeServer::Connection final : public KubeConnection {
 public:
  Connection(KubeServer* server, proxy::TlsStream* tls, AuthDecision auth)
      : server_(server),
        tls_(tls),
        auth_(std::move(auth)),
        timer_(server_->dispatcher_.loop(), [this] { Abort(); }) {
    ArmIdleTimer();
    tls_->SetHandler(this);
  }
  ~Connection() override { CancelStream(); }

  // KubeConnection
  void Abort() override {
    CancelStream();
    if (tls_ == nullptr) return;
    std::exchange(tls_, nullptr)->Reset();
    server_->Retire(this);
  }

 private:
  // proxy::StreamHandler
  void OnData(std::string_view data) override {
    while (!data.empty() && !closing_ && tls_ != nullptr) {
      if (stream_) {
        // A request pipelined behind a watch: read once the watch is over.
        // Reads are not paused meanwhile (the client's close must be seen
        // at once, to free its watcher), so what waits is bounded.
        if (pending_.size() + data.size() > kMaxPending) {
          Abort();
          return;
        }
        pending_.append(data);
        return;
      }
      size_t consumed = 0;
      if (body_) {
        const auto state = body_->Feed(data, &consumed);
        data.remove_prefix(consumed);
        if (state == RequestBody::State::kIncomplete) return;
        if (!FinishBody()) return;
        continue;
      }
      const auto state = parser_.Feed(data, &consumed);
      data.remove_prefix(consumed);
      if (state == proxy::Http1RequestParser::State::kIncomplete) return;
      if (state == proxy::Http1RequestParser::State::kError) {
        Respond(parser_.error_status(),
                {parser_.error_status(), "application/json",
                 StatusJson(parser_.error_status(), "BadRequest", parser_.error())},
                /*keep_alive=*/false);
        return;
      }
      const proxy::Http1Request& request = parser_.request();
      if (request.content_length() > 0 || request.chunked()) {
        // The client is refused before its body is read: nothing of it is
        // kept, and the connection closes (the body would be next).
        if (auth_.outcome != AuthOutcome::kAdmin) {
          Answer(request, "", /*keep_alive=*/false);
          return;
        }
        body_.emplace(request.content_length(), request.chunked());
        auto expect = request.Header("Expect");
        if (expect && proxy::EqualsIgnoreCase(*expect, "100-continue") &&
            body_->state() == RequestBody::State::kIncomplete) {
          tls_->Write("HTTP/1.1 100 Continue\r\n\r\n");
        }
        // The whole body within one timeout, however it trickles in.
        timer_.Start(server_->options_.body_timeout_ms);
        if (!FinishBody()) return;
        continue;
      }
      Answer(request, "", request.keep_alive());
      parser_.Reset();
      if (!stream_) ArmIdleTimer();  // a streamed response keeps it off
    }
  }

  // A body that is complete, too large or malformed: the request is
  // answered. False when the connection closes.
  bool FinishBody() {
    const auto state = body_->state();
    if (state == RequestBody::State::kIncomplete) return true;
    if (state == RequestBody::State::kTooLarge) {
      body_.reset();
      Respond(413,
              StatusResponse(413, "RequestEntityTooLarge",
                             "the request body is larger than the limit of " +
                                 std::to_string(kMaxRequestBodyBytes) + " bytes"),
              false);
      return false;
    }
    if (state == RequestBody::State::kError) {
      const std::string error = body_->error();
      body_.reset();
      Respond(400, StatusResponse(400, "BadRequest", error), false);
      return false;
    }
    std::string body = body_->Take();
    body_.reset();
    const proxy::Http1Request& request = parser_.request();
    Answer(request, std::move(body), request.keep_alive());
    parser_.Reset();
    ArmIdleTimer();
    return !closing_ && tls_ != nullptr;
  }

  void OnEnd() override {
    CancelStream();  // the client went: its watcher goes now
    if (tls_ != nullptr && !closing_) {
      closing_ = true;
      tls_->End();
    }
  }
  void OnClosed(bool) override {
    CancelStream();
    tls_ = nullptr;
    server_->Retire(this);
  }

  void Answer(const proxy::Http1Request& request, std::string body, bool keep_alive) {
    KubeRequest kube{request.method, request.target, ""};
    if (auto accept = request.Header("Accept")) kube.accept = std::string(*accept);
    if (auto tag = request.Header("If-None-Match")) kube.if_none_match = std::string(*tag);
    if (auto type = request.Header("Content-Type")) kube.content_type = std::string(*type);
    kube.body = std::move(body);
    KubeResponse response = server_->Answer(auth_, kube);
    if (request.method == "HEAD") {
      response.body.clear();
      if (auto stream = std::exchange(response.stream, nullptr)) stream->Cancel();
    }
    Respond(response.status, std::move(response), keep_alive);
  }

  void Respond(int status, KubeResponse response, bool keep_alive) {
    if (tls_ == nullptr) return;
    proxy::Http1Headers headers = {
        {"Content-Type", response.content_type},
        {"Content-Length", std::to_string(response.body.size())},
        {"Cache-Control", response.cache_control},
    };
    for (auto& header : response.headers) headers.push_back(std::move(header));
    for (const std::string& warning : response.warnings) {
      headers.emplace_back("Warning", WarningHeader(warning));
    }
    if (!keep_alive) headers.emplace_back("Connection", "close");
    if (response.stream) {
      headers[1] = {"Transfer-Encoding", "chunked"};
      tls_->Write(proxy::FormatResponseHead(status, "", headers));
      StartStream(std::move(response.stream), keep_alive);
      return;
    }
    std::string bytes = proxy::FormatResponseHead(status, "", headers);
    bytes += response.body;
    tls_->Write(bytes);
    if (!keep_alive) {
      closing_ = true;
      tls_->End();
    }
  }

  void ArmIdleTimer() { timer_.Start(server_->options_.idle_timeout_ms); }

  // A streamed body (watch, logs -f): sent in chunks as the producer queues
  // it, no faster than the client reads. A pipelined request waits until
  // it is over, and the idle timer is off: a watch is quiet.
  void StartStream(ResponseStreamPtr stream, bool keep_alive) {
    stream_ = std::move(stream);
    stream_keep_alive_ = keep_alive;
    timer_.Stop();
    stream_->SetReadable([this] { Pump(); });
    Pump();
  }
  void OnWritable() override { Pump(); }
  void Pump() {
    while (stream_ && tls_ != nullptr && tls_->QueuedBytes() <= proxy::kHighWatermark &&
           stream_->queued() > 0) {
      const std::string data = stream_->Take(64 << 10);
      char size[24];
      std::snprintf(size, sizeof size, "%zx\r\n", data.size());
      std::string chunk = size;
      chunk += data;
      chunk += "\r\n";
      tls_->Write(chunk);
    }
    if (!stream_ || tls_ == nullptr || !stream_->finished()) return;
    stream_->SetReadable(nullptr);
    stream_.reset();
    tls_->Write("0\r\n\r\n");
    if (!stream_keep_alive_) {
      closing_ = true;
      tls_->End();
      return;
    }
    ArmIdleTimer();
    if (!pending_.empty()) OnData(std::exchange(pending_, std::string()));
  }
  void CancelStream() {
    if (auto stream = std::exchange(stream_, nullptr)) stream->Cancel();
  }

  KubeServer* server_;
  proxy::TlsStream* tls_;  // owns itself; null once closed
  AuthDecision auth_;
  proxy::Http1RequestParser parser_;
  std::optional<RequestBody> body_;  // while a request's body comes in
  proxy::Timer timer_;               // idle, or the body's timeout: Abort
  bool closing_ = false;
  ResponseStreamPtr stream_;  // the body being streamed, if any
  bool stream_keep_alive_ = true;
  std::string pending_;  // request bytes that came behind a streamed request
  static constexpr size_t kMaxPending = 64 << 10;
};

KubeServer::KubeServer(uv_loop_t* loop, KubeServerOptions options)
    : dispatcher_(loop), options_(std::move(options)) {}

KubeServer::~KubeServer() { Close(); }

Result<KubeServerPtr> KubeServer::Start(uv_loop_t* loop, ObjectSource& source,
                                        const workloads::CertificateAuthority& ca,
                                        KubeServerOptions options) {
  auto where = proxy::ParseAuthority(options.address, 0, /*allow_port_zero=*/true);
  if (!where)
    return MakeError(ErrorCode::kInvalidArgument, "--kube-address: " + where.error().message);
  KubeServerPtr server(new KubeServer(loop, std::move(options)));
  server->host_ = where->host;
  std::vector<std::string> hosts = {"localhost", "127.0.0.1"};
  if (where->host != "localhost" && where->host != "127.0.0.1") hosts.push_back(where->host);
  auto ctx = NewServerContext(ca, hosts);
  if (!ctx) return ctx.error();
  server->tls_ = proxy::TlsContext::AdoptServer(std::move(ctx).value());
  server->trust_ = ca.NewTrustStore();
  proxy::TcpListener::Options listen;
  listen.name = "kube";
  listen.listen.bind = where->host == "localhost" ? "127.0.0.1" : where->host;
  listen.listen.port = where->port;
  listen.listen.backlog = 128;
  listen.log = server->options_.log;
  KubeServer* self = server.get();
  auto listener = proxy::TcpListener::Create(server->dispatcher_, std::move(listen),
                                             [self](proxy::TcpStream* tcp) { self->OnTcp(tcp); });
  if (!listener) {
    return MakeError(listener.error().code,
                     "--kube-address " + server->options_.address +
                         " (the Kubernetes API): " + listener.error().message +
                         " (another address, or --kube-address off not to serve it)");
  }
  server->listener_ = std::move(listener).value();
  // /api names the address clients reach, with the port really bound.
  server->api_ = std::make_unique<KubeApi>(source, server->address(), [] { return Now(); });
  return server;
}

std::string KubeServer::address() const {
  const std::string host = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  return host + ":" + std::to_string(port());
}

void KubeServer::OnTcp(proxy::TcpStream* tcp) {
  if (connections_.size() + handshaking_.size() >= options_.max_connections) {
    tcp->Reset();
    return;
  }
  auto holder = std::make_shared<proxy::TlsStream*>(nullptr);
  proxy::TlsStream* tls = proxy::TlsStream::Accept(
      dispatcher_, *tls_, tcp, options_.handshake_timeout_ms,
      [this, holder](Status status) { OnHandshake(*holder, std::move(status)); });
  *holder = tls;
  handshaking_[tls] = true;
}

KubeResponse KubeServer::Answer(const AuthDecision& auth, const KubeRequest& request) {
  switch (auth.outcome) {
    case AuthOutcome::kAdmin:
      return api_->Handle(request);
    case AuthOutcome::kNotAdmin:
      return StatusResponse(403, "Forbidden", "forbidden: " + auth.reason);
    default:
      return StatusResponse(401, "Unauthorized", "Unauthorized");
  }
}

void KubeServer::OnHandshake(proxy::TlsStream* tls, Status status) {
  if (handshaking_.erase(tls) == 0) return;  // Close() reset it
  if (!status.ok()) return;                  // the stream flushes its alert and goes
  AuthDecision auth = Authenticate(tls->ssl(), trust_.get(), Now());
  if (auth.outcome != AuthOutcome::kAdmin) {
    proxy::Log(proxy::LogLevel::kDebug, "kube", "refused a client: " + auth.reason);
  }
  const uint8_t* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(tls->ssl(), &alpn, &alpn_len);
  std::unique_ptr<KubeConnection> connection;
  if (alpn_len == 2 && std::memcmp(alpn, "h2", 2) == 0) {
    auto h2 = std::make_unique<Http2Connection>(
        dispatcher_.loop(), tls, options_.idle_timeout_ms,
        [this, auth](const KubeRequest& request) { return Answer(auth, request); },
        [this](KubeConnection* closed) { Retire(closed); });
    h2->SetBodyPolicy(auth.outcome == AuthOutcome::kAdmin, kMaxRequestBodyBytes,
                      options_.body_timeout_ms);
    connection = std::move(h2);
  } else {
    connection = std::make_unique<Connection>(this, tls, std::move(auth));
  }
  KubeConnection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
}

void KubeServer::Retire(KubeConnection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  // It may be on the stack now (its own callback): deleted next turn.
  dispatcher_.DeferredDelete(std::move(it->second));
  connections_.erase(it);
}

void KubeServer::Close() {
  if (listener_) listener_->Close();
  auto handshaking = std::move(handshaking_);
  handshaking_.clear();
  for (auto& [tls, unused] : handshaking) tls->Reset();
  std::vector<KubeConnection*> open;
  for (auto& [raw, owned] : connections_) open.push_back(raw);
  for (KubeConnection* connection : open) connection->Abort();
}

}  // namespace podless::api::kube
