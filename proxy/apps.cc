#include "proxy/apps.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <utility>

#include "proxy/authorization.h"
#include "proxy/base/http1_parser.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/timer.h"
#include "proxy/splice.h"

namespace podless::proxy {

namespace {

constexpr size_t kMaxRequestBody = 1 << 20;
constexpr uint64_t kForwardConnectTimeoutMs = 5000;

// The apps own themselves: a stream's handler lives exactly as long as its
// stream calls it, and OnClosed is the last call (stream.h), so each deletes
// itself there. ForwardApp, which may end inside its connector's callback,
// hands itself to Dispatcher::DeferredDelete instead.

// TCP echo: every byte back, FIN for FIN.
class TcpEchoApp final : public StreamHandler {
 public:
  explicit TcpEchoApp(Stream* stream) : stream_(stream) {}
  void OnData(std::string_view bytes) override {
    stream_->Write(bytes);
    if (stream_->QueuedBytes() > kHighWatermark && !paused_) {
      paused_ = true;
      stream_->SetReadPaused(true);
    }
  }
  void OnWritable() override {
    if (paused_) {
      paused_ = false;
      stream_->SetReadPaused(false);
    }
  }
  void OnEnd() override { stream_->End(); }
  void OnClosed(bool) override { delete this; }

 private:
  Stream* stream_;
  bool paused_ = false;
};

// An HTTP/1.1 server loop over a Stream: parses requests (keep-alive,
// Content-Length bodies), and lets the subclass answer each.
class HttpApp : public StreamHandler {
 public:
  HttpApp(AppContext context, Stream* stream) : context_(std::move(context)), stream_(stream) {
    if (context_.dispatcher != nullptr && context_.request_timeout_ms != 0) {
      request_timer_ = std::make_unique<Timer>(context_.dispatcher->loop(), [this] {
        if (closing_) return;
        closing_ = true;
        stream_->Reset();
      });
      ArmRequestTimer();
    }
  }

  void OnData(std::string_view bytes) override {
    if (closing_) return;
    pending_.append(bytes);
    Process();
  }
  void OnEnd() override {
    peer_ended_ = true;
    if (!closing_) {
      closing_ = true;
      stream_->End();
    }
  }
  void OnClosed(bool) override { delete this; }

 protected:
  // Answers one request; `body` is the request body.
  virtual void Respond(const Http1Request& request, std::string_view body, bool keep_alive) = 0;

  void Send(int status, Http1Headers headers, std::string_view body, bool keep_alive,
            bool head_only = false) {
    headers.emplace_back("Content-Length", std::to_string(body.size()));
    headers.emplace_back("Connection", keep_alive ? "keep-alive" : "close");
    std::string response = FormatResponseHead(status, "", headers);
    if (!head_only) response.append(body);
    stream_->Write(response);
  }

  AppContext context_;

 private:
  void Process() {
    while (!closing_) {
      if (!head_done_) {
        size_t consumed = 0;
        auto state = parser_.Feed(pending_, &consumed);
        pending_.erase(0, consumed);
        if (state == Http1RequestParser::State::kIncomplete) return;
        if (state == Http1RequestParser::State::kError) {
          Fail(parser_.error_status(), parser_.error());
          return;
        }
        head_done_ = true;
        if (context_.authorize_request && !context_.authorize_request(parser_.request(), false)) {
          // Envoy's RBAC answer; the connection closes with it.
          stream_->Write(RbacDeniedResponse());
          closing_ = true;
          stream_->End();
          return;
        }
        if (parser_.request().chunked()) {
          Fail(501, "chunked request bodies are not supported by in-proxy apps");
          return;
        }
        int64_t length = parser_.request().content_length();
        body_length_ = length > 0 ? static_cast<size_t>(length) : 0;
        if (body_length_ > kMaxRequestBody) {
          Fail(413, "request body larger than 1 MiB");
          return;
        }
      }
      if (pending_.size() < body_length_) return;
      const Http1Request& request = parser_.request();
      bool keep_alive = request.keep_alive() && !peer_ended_;
      Respond(request, std::string_view(pending_).substr(0, body_length_), keep_alive);
      pending_.erase(0, body_length_);
      ArmRequestTimer();  // the next request has the whole time again
      if (!keep_alive) {
        closing_ = true;
        stream_->End();
        return;
      }
      parser_.Reset();
      head_done_ = false;
      body_length_ = 0;
    }
  }

  // A connection that holds a descriptor without bringing a request (idle,
  // or a head trickled in) is reset: thousands of them would otherwise take
  // every descriptor the agent has.
  void ArmRequestTimer() {
    if (!request_timer_) return;  // no timeout
    request_timer_->Start(context_.request_timeout_ms);
  }

  void Fail(int status, const std::string& message) {
    Send(status == 0 ? 400 : status, {{"Content-Type", "text/plain"}}, message + "\n", false);
    closing_ = true;
    stream_->End();
  }

  Stream* stream_;
  TimerPtr request_timer_;  // only with a request timeout
  Http1RequestParser parser_;
  std::string pending_;
  size_t body_length_ = 0;
  bool head_done_ = false;
  bool closing_ = false;
  bool peer_ended_ = false;
};

class HttpEchoApp final : public HttpApp {
 public:
  using HttpApp::HttpApp;

 private:
  void Respond(const Http1Request& request, std::string_view, bool keep_alive) override {
    Send(200, {{"Content-Type", "application/json"}}, EchoJson(context_, request), keep_alive,
         request.method == "HEAD");
  }
};

class StaticHttpApp final : public HttpApp {
 public:
  using HttpApp::HttpApp;

 private:
  void Respond(const Http1Request& request, std::string_view, bool keep_alive) override {
    const auto& spec = std::get<workloads::StaticApp>(context_.app);
    Http1Headers headers;
    bool has_type = false;
    for (const auto& [name, value] : spec.headers) {
      if (EqualsIgnoreCase(name, "Content-Length") || EqualsIgnoreCase(name, "Connection"))
        continue;
      if (EqualsIgnoreCase(name, "Content-Type")) has_type = true;
      headers.emplace_back(name, value);
    }
    if (!has_type) headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
    Send(spec.status, std::move(headers), spec.body, keep_alive, request.method == "HEAD");
  }
};

// forward: dials the target, then splices. The inbound stream is paused
// until the connection is up; a failed dial resets it.
class ForwardApp final : public StreamHandler {
 public:
  ForwardApp(Dispatcher& dispatcher, Stream* stream, SpliceOptions splice)
      : dispatcher_(dispatcher),
        connector_(dispatcher),
        stream_(stream),
        splice_(std::move(splice)) {}

  void Start(uint32_t address, uint16_t port, int netns_fd) {
    stream_->SetHandler(this);
    stream_->SetReadPaused(true);
    connector_.Connect(
        address, port, kForwardConnectTimeoutMs,
        [this](Result<TcpStream*> result) {
          if (stream_ == nullptr) {
            if (result.ok()) result.value()->Reset();
            return;
          }
          Stream* inbound = std::exchange(stream_, nullptr);
          if (!result.ok()) {
            inbound->Reset();
          } else {
            inbound->SetReadPaused(false);
            StartSplice(inbound, result.value(), std::move(splice_));
          }
          dispatcher_.DeferredDelete(std::unique_ptr<ForwardApp>(this));
        },
        netns_fd);
  }

  // StreamHandler: only while dialing.
  void OnData(std::string_view) override {}
  void OnEnd() override {}
  void OnClosed(bool) override {
    // The caller went away while dialing: cancel (destroying the connector).
    stream_ = nullptr;
    dispatcher_.DeferredDelete(std::unique_ptr<ForwardApp>(this));
  }

 private:
  Dispatcher& dispatcher_;
  TcpConnector connector_;
  Stream* stream_;
  SpliceOptions splice_;
};

bool ParseForwardAddress(const std::string& address, uint32_t* ip, uint16_t* port) {
  auto parsed = ParseAuthority(address, 0);
  if (!parsed.ok()) return false;
  std::string host = parsed->host;
  if (host == "localhost") host = "127.0.0.1";
  in_addr addr{};
  if (inet_pton(AF_INET, host.c_str(), &addr) != 1) return false;
  *ip = ntohl(addr.s_addr);
  *port = parsed->port;
  return true;
}

// How many bytes at the start of `text` (not empty, first byte >= 0x80) are
// one well-formed UTF-8 sequence (Unicode 15, table 3-7: no overlong forms,
// no surrogates, nothing above U+10FFFF): `*valid` says whether they are.
// Otherwise they are the maximal ill-formed prefix, at least one byte, that
// one U+FFFD replaces (the "maximal subpart" practice of Unicode section
// 3.9, as WHATWG's decoder does).
size_t Utf8Sequence(std::string_view text, bool* valid) {
  const auto lead = static_cast<unsigned char>(text[0]);
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // above U+10FFFF
  } else {
    *valid = false;  // a continuation byte, C0, C1 or F5..FF
    return 1;
  }
  size_t i = 1;
  for (; i < length && i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < (i == 1 ? low : 0x80) || byte > (i == 1 ? high : 0xbf)) break;
  }
  *valid = i == length;
  return i;
}

constexpr char kReplacementCharacter[] = "\xef\xbf\xbd";  // U+FFFD

}  // namespace

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      // What a peer sent is not always UTF-8; the output must be.
      bool valid = false;
      const size_t n = Utf8Sequence(text.substr(i), &valid);
      if (valid) {
        out.append(text.substr(i, n));
      } else {
        out += kReplacementCharacter;
      }
      i += n;
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string EchoJson(const AppContext& context, const Http1Request& request) {
  std::map<std::string, std::string> headers;
  for (const auto& [name, value] : request.headers) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    headers[lower] = value;
  }
  std::string json = "{\"workload\":" + JsonString(context.workload) +
                     ",\"replica\":" + JsonString(context.replica) +
                     ",\"namespace\":" + JsonString(context.ns) +
                     ",\"spiffe_id\":" + JsonString(context.spiffe_id) + ",\"peer_spiffe_id\":" +
                     (context.peer_identity.empty() ? "null" : JsonString(context.peer_identity)) +
                     ",\"port\":" + std::to_string(context.port.port) +
                     ",\"method\":" + JsonString(request.method) +
                     ",\"path\":" + JsonString(request.target) + ",\"headers\":{";
  bool first = true;
  for (const auto& [name, value] : headers) {
    if (!first) json += ',';
    first = false;
    json += JsonString(name) + ":" + JsonString(value);
  }
  json += "}}\n";
  return json;
}

void StartApp(AppContext context, Stream* stream) {
  bool http = context.port.protocol == workloads::Protocol::kHTTP;
  if (std::holds_alternative<workloads::EchoApp>(context.app)) {
    StreamHandler* app =
        http ? static_cast<StreamHandler*>(new HttpEchoApp(std::move(context), stream))
             : new TcpEchoApp(stream);
    stream->SetHandler(app);
    return;
  }
  if (std::holds_alternative<workloads::StaticApp>(context.app)) {
    // A static response is HTTP whatever the port's protocol says.
    stream->SetHandler(new StaticHttpApp(std::move(context), stream));
    return;
  }
  uint32_t address = 0;
  uint16_t port = 0;
  int netns_fd = -1;
  if (const auto* forward = std::get_if<workloads::ForwardApp>(&context.app)) {
    if (!ParseForwardAddress(forward->address, &address, &port)) {
      stream->Reset();
      return;
    }
  } else {
    address = context.exec_address;
    port = context.exec_port;
    netns_fd = context.exec_netns_fd;
    if (address == 0 || port == 0) {
      stream->Reset();
      return;
    }
  }
  SpliceOptions splice;
  splice.dispatcher = context.dispatcher;
  splice.idle_timeout_ms = context.idle_timeout_ms;
  splice.idle_timeouts = context.idle_timeouts;
  if (context.authorize_request) {
    splice.request_gate = std::make_shared<HttpRequestGate>(std::move(context.authorize_request));
  }
  auto* app = new ForwardApp(*context.dispatcher, stream, std::move(splice));
  app->Start(address, port, netns_fd);
}

}  // namespace podless::proxy
