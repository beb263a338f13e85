// OutboundEntry: where a workload's outbound traffic enters the proxy
// (`127.0.0.1:15001` by default). One port speaks both:
//   - HTTP/1.1 proxy: `CONNECT host:port` (tunnel), and absolute-form
//     requests (`GET http://host:port/path`), forwarded in origin form with
//     `Connection: close` over a fresh tunnel;
//   - SOCKS5 (RFC 1928) with username/password (RFC 1929), recognized by
//     the first byte 0x05.
// The credentials name the calling workload (Directory::Authenticate);
// missing or wrong ones get 407 with `Proxy-Authenticate: Basic
// realm="podless"`, or the SOCKS authentication failure.
//
// The destination (workload address, Service VIP, or name) is resolved by
// the Directory, an endpoint picked by power of two choices over open
// connections, and reached
//   - in memory when the endpoint is hosted here (same authorization and
//     metrics as over HBONE, no TLS),
//   - over plain TCP when it is outside the mesh (no SPIFFE ID),
//   - else over an HBONE stream from the pool, as the source identity.
// Failures answer 502 (403 when the destination's policy denies), or SOCKS
// reply 0x05 / 0x04 (0x02 for a denial); every wait has a timeout: the
// request must be complete within request_timeout_ms (else 408), the
// upstream established within setup_timeout_ms (else 504). A workload
// replica may have max_connections_per_workload connections being set up or
// open (else 429). Failed logins are counted
// (podless_outbound_auth_failures_total) and a source that fails too many is
// refused for a while without its credentials being checked (LoginThrottle;
// 429 with Retry-After, or the SOCKS5 authentication failure).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "proxy/base/dispatcher.h"
#include "proxy/base/uv_handle.h"
#include "proxy/connection_limits.h"
#include "proxy/connection_metrics.h"
#include "proxy/connection_pool.h"
#include "proxy/directory.h"
#include "proxy/inbound.h"
#include "proxy/load_balancer.h"
#include "proxy/tcp_listener.h"
#include "proxy/tracked_connection.h"
#include "workloads/result.h"

namespace podless::proxy {

inline constexpr uint64_t kDefaultOutboundRequestTimeoutMs = 10'000;
inline constexpr uint32_t kDefaultMaxOutboundConnectionsPerWorkload = 1024;

struct LoginThrottleOptions {
  // This many failed logins of one source within window_ms block it for a
  // backoff. 0: never block (failures are still counted in the metric).
  uint32_t max_failures = 10;
  uint64_t window_ms = 60'000;
  // The first backoff; each further block within a window of the previous
  // one doubles it, up to max_backoff_ms.
  uint64_t first_backoff_ms = 5'000;
  uint64_t max_backoff_ms = 300'000;
  // Sources remembered at most; the one whose last failure is oldest is
  // forgotten first.
  size_t max_sources = 4096;
};

// LoginThrottle: slows down whoever guesses outbound-entry credentials. The
// credentials are 120-bit HMACs, so guessing cannot succeed; what matters is
// that it is seen (the metric, a log line per block) and cannot run at full
// speed. A blocked source is refused before its credentials are checked, so
// trying on while blocked teaches it nothing, and a success never clears
// its failures (a workload knowing its own password cannot reset the count
// between guesses at another's).
//
// A source is the peer's IPv4 address together with the sandbox listener
// the connection came through (a sandboxed replica's own network namespace;
// 0 for the node's listener): a sandboxed workload throttles only itself.
// Processes on the node itself all come from 127.0.0.1 and share one
// source: one of them guessing also delays the others' logins for the
// backoff, the price of a limit a guesser cannot evade by opening more
// connections.
//
// Memory: one entry (about 100 bytes) per source that failed, at most
// max_sources. Thread-safe. Each worker's OutboundEntry holds its own unless
// OutboundEntryOptions::login_throttle gives them one to share; ProxyCore
// does not yet, so with --workers N a source gets up to N x max_failures
// tries per window (the kernel spreads its connections over the workers).
class LoginThrottle {
 public:
  explicit LoginThrottle(LoginThrottleOptions options = {}) : options_(options) {}
  LoginThrottle(const LoginThrottle&) = delete;
  LoginThrottle& operator=(const LoginThrottle&) = delete;

  // The key of a source: `peer` (IPv4, host order) through the listener of
  // sandboxed replica `pinned` (0: the node's own listener).
  static uint64_t SourceKey(uint32_t pinned, uint32_t peer) {
    return uint64_t{pinned} << 32 | peer;
  }
  // Milliseconds `source` is still blocked at `now_ms`; 0: it may log in.
  uint64_t BlockedFor(uint64_t source, uint64_t now_ms) const;
  // Counts a failed login of `source` at `now_ms`. Returns the backoff this
  // failure starts (ms), 0 if it starts none.
  uint64_t Failed(uint64_t source, uint64_t now_ms);
  // Sources remembered.
  size_t size() const;
  const LoginThrottleOptions& options() const { return options_; }

 private:
  struct Source {
    uint64_t key = 0;
    uint32_t failures = 0;  // since window_start_ms
    uint64_t window_start_ms = 0;
    uint64_t blocked_until_ms = 0;  // 0: never blocked
    uint64_t next_backoff_ms = 0;
  };

  const LoginThrottleOptions options_;
  mutable std::mutex mutex_;
  std::list<Source> recent_;  // the most recent failure first
  std::unordered_map<uint64_t, std::list<Source>::iterator> by_key_;
};

using LoginThrottlePtr = std::shared_ptr<LoginThrottle>;

struct OutboundEntryOptions {
  ListenOptions listen{.bind = "127.0.0.1", .port = 15001};  // port 0: any free port (tests)
  // From accept to a complete request (the HTTP head, or the SOCKS5
  // greeting, authentication and CONNECT request); then 408 (HTTP) or a
  // plain close (SOCKS5). 0: only setup_timeout_ms applies.
  uint64_t request_timeout_ms = kDefaultOutboundRequestTimeoutMs;
  // From accept to an established upstream (request head, authentication,
  // resolution, connect); then the tunnel has no timeout of its own.
  uint64_t setup_timeout_ms = 20'000;
  // A client that stops reading (bytes queued for it, none taken by the
  // kernel for this long) is disconnected. 0: never.
  uint64_t write_stall_timeout_ms = 30'000;
  // Connections of one workload replica (by its credentials) being set up
  // or open; more are refused with 429 (HTTP) or SOCKS5 reply 0x01. 0: no limit.
  uint32_t max_connections_per_workload = kDefaultMaxOutboundConnectionsPerWorkload;
  // Where those connections are counted: every worker's entry holds the
  // same, so the limit is the node's. Null: the entry counts its own.
  ConnectionLimitsPtr limits;
  // Failed logins and the backoff of sources that fail too many. Null: the
  // entry keeps its own, with default options.
  LoginThrottlePtr login_throttle;
  // Connections before their credentials, counted with the HBONE ones in
  // the handshake (ConnectionLimits::unauthenticated): more are reset at
  // accept. 0: no cap.
  uint32_t max_unauthenticated_connections = 0;
  LogFunction log = LogToStderr;
};

class OutboundClient;

class OutboundEntry {
 public:
  static Result<std::unique_ptr<OutboundEntry>> Create(Dispatcher& dispatcher, Directory& directory,
                                                       Inbound& inbound, HbonePool& pool,
                                                       ConnectionTracker& tracker,
                                                       ProxyMetrics& metrics,
                                                       const OutboundEntryOptions& options);
  ~OutboundEntry();

  uint16_t port() const { return port_; }
  const std::string& bind() const { return options_.listen.bind; }
  // Listeners inside sandboxed replicas' network namespaces (by replica
  // address; the entry accepts on a copy of each). A connection that comes
  // through one speaks only as that replica: other credentials get 407.
  Status SyncSandboxListeners(const std::map<uint32_t, int>& listeners);
  size_t sandbox_listener_count() const { return sandbox_listeners_.size(); }
  // Stops listening; connections being set up are dropped.
  void Close();

 private:
  friend class OutboundClient;
  OutboundEntry(Dispatcher& dispatcher, Directory& directory, Inbound& inbound, HbonePool& pool,
                ConnectionTracker& tracker, ProxyMetrics& metrics, OutboundEntryOptions options)
      : dispatcher_(dispatcher),
        directory_(directory),
        inbound_(inbound),
        pool_(pool),
        tracker_(tracker),
        metrics_(metrics),
        options_(std::move(options)) {}
  // `pinned`: the replica a sandbox listener belongs to (0: any).
  void OnConnection(TcpStream* tcp, uint32_t pinned);

  Dispatcher& dispatcher_;
  Directory& directory_;
  Inbound& inbound_;
  HbonePool& pool_;
  ConnectionTracker& tracker_;
  ProxyMetrics& metrics_;
  OutboundEntryOptions options_;
  LoadBalancer balancer_;
  TcpListenerPtr listener_;
  std::map<uint32_t, TcpListenerPtr> sandbox_listeners_;
  uint16_t port_ = 0;
  std::set<OutboundClient*> clients_;  // still being set up
  // Source replica -> its connections being set up (past authentication)
  // or open: options_.limits' outbound_connections_per_workload.
  std::shared_ptr<SharedCounts> per_workload_;
  std::shared_ptr<SharedCounts> unauthenticated_;
  LoginThrottlePtr login_throttle_;
};

using OutboundEntryPtr = std::unique_ptr<OutboundEntry>;

// "Basic dXNlcjpwYXNz" -> {"user", "pass"}; false when malformed.
bool ParseBasicCredentials(std::string_view header, std::string* user, std::string* password);

}  // namespace podless::proxy
