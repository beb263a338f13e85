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
// open (else 429).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "proxy/connection_limits.h"
#include "proxy/connection_metrics.h"
#include "proxy/connection_pool.h"
#include "proxy/directory.h"
#include "proxy/dispatcher.h"
#include "proxy/inbound.h"
#include "proxy/load_balancer.h"
#include "proxy/tcp_listener.h"
#include "proxy/tracked_connection.h"
#include "proxy/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

inline constexpr uint64_t kDefaultOutboundRequestTimeoutMs = 10'000;
inline constexpr uint32_t kDefaultMaxOutboundConnectionsPerWorkload = 1024;

struct OutboundEntryOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 15001;                               // 0: any free port (tests)
  PortSharing port_sharing = PortSharing::kExclusive;  // worker threads share the port
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
  const std::string& bind() const { return options_.bind; }
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
};

using OutboundEntryPtr = std::unique_ptr<OutboundEntry>;

// "Basic dXNlcjpwYXNz" -> {"user", "pass"}; false when malformed.
bool ParseBasicCredentials(std::string_view header, std::string* user, std::string* password);

}  // namespace podless::proxy
