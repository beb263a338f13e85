// The in-proxy apps behind a workload port: `echo`, `static` and `forward`
// (workloads::AppSpec). No process per workload: an app is a small object
// serving one Stream, whatever carries it (an HBONE stream, a plaintext
// connection, an in-memory pipe from a local caller). Each app owns itself
// and is deleted when its stream closes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/base/stream.h"
#include "workloads/model.h"

namespace podless::proxy {

struct Http1Request;

// Everything an app may report or need, copied so the app does not depend
// on the runtime's tables staying put.
struct AppContext {
  Dispatcher* dispatcher = nullptr;
  std::string replica;    // "web-0"
  std::string workload;   // "web"
  std::string ns;         // "shop"
  std::string spiffe_id;  // the replica's own identity
  workloads::PortSpec port;
  std::string peer_identity;  // the caller's verified SPIFFE ID; empty for plaintext
  workloads::AppSpec app;
  // exec workloads: where the supervised process listens (host byte order);
  // 0 when unknown, then the stream is reset.
  uint32_t exec_address = 0;
  uint16_t exec_port = 0;
  int exec_netns_fd = -1;  // >= 0: the process's own network namespace
  // In-proxy HTTP apps (echo, static): a connection must bring a complete
  // request within this long of opening or of the last response (idle
  // keep-alive included), else it is reset. 0: no limit.
  uint64_t request_timeout_ms = 0;
  // forward and exec apps: a spliced connection that carries no byte either
  // way this long is reset (SpliceOptions), counted in `idle_timeouts`
  // (may be null). 0: no limit.
  uint64_t idle_timeout_ms = 0;
  Counter* idle_timeouts = nullptr;
  // HTTP ports whose policies use HTTP attributes (proxy/authorization.h):
  // called with every request head before the app or the backend sees it;
  // `opaque_after` when the request upgrades the connection (Upgrade,
  // CONNECT), after which nothing more is parsed. False: the request is
  // answered 403 "RBAC: access denied" and the connection closed. Empty:
  // every request is admitted (the connection was authorized as a whole).
  std::function<bool(const Http1Request& request, bool opaque_after)> authorize_request;
};

inline constexpr uint64_t kDefaultAppRequestTimeoutMs = 30'000;
// As Envoy's TCP proxy (idle_timeout): long enough for pooled database and
// cache connections, short enough that silent ones do not pile up.
inline constexpr uint64_t kDefaultPlaintextIdleTimeoutMs = 3'600'000;

// Serves `stream` with `context.app`.
void StartApp(AppContext context, Stream* stream);

// The JSON body the echo app answers HTTP requests with (exposed for tests).
std::string EchoJson(const AppContext& context, const Http1Request& request);

// A JSON string literal (quotes included) with RFC 8259 escaping. The result
// is always valid UTF-8 and valid JSON: each ill-formed UTF-8 sequence in
// `text` (a header or path a peer sent) becomes one U+FFFD.
std::string JsonString(std::string_view text);

}  // namespace podless::proxy
