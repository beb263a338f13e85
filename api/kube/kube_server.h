// KubeServer: the Kubernetes API over HTTPS (ALPN h2 or http/1.1) on the
// agent's loop, for the stock kubectl and client libraries.
//
// Built on the data plane's transport: a proxy::TcpListener accepts, each
// connection is a proxy::TlsStream over a proxy::TcpStream with a context of
// our own (auth.h: the agent CA's server certificate, any client certificate
// taken in the handshake). After the handshake the client is authenticated
// once for the connection (auth.h); a client that is not the admin gets 401
// or 403 for every request, and nothing else. Requests are parsed by
// proxy/base/http1_parser.h and answered by KubeApi on the loop thread (the
// agent's state is the loop's).
//
// HTTP/2 is kube_http2.h's. Request bodies are read whole, bounded
// (request_body.h) and timed, after the client is authenticated: a refused
// client's body is not read. A streamed response (watch, logs -f:
// KubeResponse::stream, response_stream.h) goes out chunked over HTTP/1.1,
// as the client reads it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/kube/auth.h"
#include "api/kube/kube_api.h"
#include "api/kube/kube_http2.h"
#include "proxy/base/dispatcher.h"
#include "proxy/tcp_listener.h"
#include "proxy/tls_stream.h"
#include "workloads/certificate_authority.h"
#include "workloads/result.h"

namespace podless::api::kube {

struct KubeServerOptions {
  std::string address = "127.0.0.1:6443";  // HOST:PORT (port 0: any free port)
  uint64_t handshake_timeout_ms = 10'000;
  // A connection with no request for this long (or one that sends a request
  // head this slowly) is closed; over HTTP/2, one that sends no frame.
  uint64_t idle_timeout_ms = 120'000;
  // A request body (at most kMaxRequestBodyBytes) must arrive whole within
  // this, however slowly it trickles.
  uint64_t body_timeout_ms = 30'000;
  size_t max_connections = 512;
  proxy::LogFunction log = proxy::LogToStderr;
};

class KubeServer {
 public:
  // Listens on options.address with a server certificate of `ca` naming
  // localhost, 127.0.0.1 and the listen host.
  static Result<std::unique_ptr<KubeServer>> Start(uv_loop_t* loop, ObjectSource& source,
                                                   const workloads::CertificateAuthority& ca,
                                                   KubeServerOptions options);
  ~KubeServer();
  KubeServer(const KubeServer&) = delete;
  KubeServer& operator=(const KubeServer&) = delete;

  // "127.0.0.1:6443", with the port bound.
  std::string address() const;
  uint16_t port() const { return listener_ ? listener_->port() : 0; }
  size_t connection_count() const { return connections_.size(); }
  // The router, to plug watch and logs in (kube_agent.cc).
  KubeApi& api() { return *api_; }

  // Stops listening and closes every connection. Idempotent.
  void Close();

 private:
  class Connection;
  KubeServer(uv_loop_t* loop, KubeServerOptions options);
  void OnTcp(proxy::TcpStream* tcp);
  void OnHandshake(proxy::TlsStream* tls, Status status);
  void Retire(KubeConnection* connection);
  // A request of a client authenticated as `auth`: 401 or 403, or KubeApi's
  // answer. The same for HTTP/1.1 and HTTP/2.
  KubeResponse Answer(const AuthDecision& auth, const KubeRequest& request);

  // First: destroyed last, after the connections and streams that post to it.
  proxy::Dispatcher dispatcher_;
  KubeServerOptions options_;
  std::string host_;
  std::unique_ptr<KubeApi> api_;  // made once the port is bound
  bssl::UniquePtr<X509_STORE> trust_;
  proxy::TlsContextPtr tls_;
  proxy::TcpListenerPtr listener_;
  std::unordered_map<proxy::TlsStream*, bool> handshaking_;
  std::unordered_map<KubeConnection*, std::unique_ptr<KubeConnection>> connections_;
};

using KubeServerPtr = std::unique_ptr<KubeServer>;

}  // namespace podless::api::kube
