// ProxyCore: the façade the runtime creates on its loop. It owns the shared
// listeners (HBONE inbound, outbound entry, plaintext workload ports), the
// HBONE client pool, the connection trackers and the metrics wiring, and
// reaches the runtime's state only through the Directory.
//
//   auto core = ProxyCore::Create(loop, directory, config, registry);
//   core->SyncPlaintextPorts({{0, 8080}, {web0, 9000}});  // as workloads change
//   core->CloseConnectionsFor(address);       // a replica was deleted
//   core->Close();                            // before the loop ends
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "proxy/connection_limits.h"
#include "proxy/connection_metrics.h"
#include "proxy/connection_pool.h"
#include "proxy/directory.h"
#include "proxy/dispatcher.h"
#include "proxy/hbone_server.h"
#include "proxy/inbound.h"
#include "proxy/metrics.h"
#include "proxy/outbound_entry.h"
#include "proxy/plaintext_listeners.h"
#include "proxy/tracked_connection.h"
#include "workloads/result.h"

namespace podless::proxy {

struct ProxyConfig {
  std::string hbone_bind = "0.0.0.0";
  uint16_t hbone_port = 15008;  // 0: any free port
  std::string outbound_bind = "127.0.0.1";
  uint16_t outbound_port = 15001;  // 0: any free port
  std::string plaintext_bind = "0.0.0.0";
  // Worker threads (runtime/proxy_workers.h) each run a core whose
  // listeners share the ports: the first with kReusePortFirst, the others
  // with kReusePortJoin on the ports the first one bound.
  PortSharing port_sharing = PortSharing::kExclusive;
  uint64_t handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
  uint64_t pool_idle_timeout_ms = 60'000;
  uint64_t connect_timeout_ms = 5'000;
  uint64_t outbound_setup_timeout_ms = 20'000;

  // Slow peers (SECURITY.md; counted in podless_peer_timeouts_total). 0
  // turns one off.
  // HBONE: from the TLS handshake to the client's HTTP/2 preface + SETTINGS.
  uint64_t preface_timeout_ms = kDefaultPrefaceTimeoutMs;
  // HBONE: a CONNECT stream (or a whole connection) whose peer keeps its
  // HTTP/2 flow-control window shut while bytes wait for it.
  uint64_t stream_stall_timeout_ms = kDefaultStreamStallTimeoutMs;
  // HBONE: an inbound connection that carries no stream this long gets
  // GOAWAY and is closed (hbone_idle). Keep it above the peers' pool idle
  // timeout (pool_idle_timeout_ms here), so clients close first.
  uint64_t hbone_server_idle_timeout_ms = kDefaultHboneServerIdleTimeoutMs;
  // Every accepted connection (HBONE, outbound entry, plaintext ports):
  // bytes queued for the peer and none taken by the kernel this long.
  uint64_t write_stall_timeout_ms = kDefaultWriteStallTimeoutMs;
  // Outbound entry: from accept to a complete request (HTTP head or SOCKS5
  // CONNECT).
  uint64_t outbound_request_timeout_ms = kDefaultOutboundRequestTimeoutMs;
  // In-proxy HTTP apps: from accept (or the last response) to a complete
  // request; then the connection is reset (AppContext::request_timeout_ms).
  uint64_t app_request_timeout_ms = kDefaultAppRequestTimeoutMs;
  // Plaintext workload ports: a connection spliced to a forward target or an
  // exec process with no byte either way this long is reset (plaintext_idle).
  uint64_t plaintext_idle_timeout_ms = kDefaultPlaintextIdleTimeoutMs;

  // Limits (counted in podless_limit_refused_total). 0: no limit.
  uint32_t max_hbone_connections_per_peer = kDefaultMaxConnectionsPerPeer;
  uint32_t max_plaintext_connections_per_peer = kDefaultMaxConnectionsPerPeer;
  uint32_t max_hbone_streams_per_connection = kServerMaxConcurrentStreams;
  uint32_t max_outbound_connections_per_workload = kDefaultMaxOutboundConnectionsPerWorkload;
  // HBONE connections in the handshake plus outbound-entry ones before
  // their credentials, node-wide (ConnectionLimits::unauthenticated).
  uint32_t max_unauthenticated_connections = DefaultMaxUnauthenticatedConnections();
  // Where the per-peer and per-workload limits count: shared by every
  // worker's core, so each limit is the node's. Null: this core's alone.
  ConnectionLimitsPtr limits;

  // Operational messages (accept failures); stderr by default.
  LogFunction log = LogToStderr;
};

struct ProxyStats {
  struct Listener {
    std::string name;     // "hbone", "outbound", "plaintext"
    std::string address;  // "0.0.0.0:15008"
  };
  std::vector<Listener> listeners;
  std::vector<HbonePool::PoolStats> pools;
  size_t hbone_inbound_connections = 0;
  uint64_t tls_handshake_failures = 0;
  HandshakeFailure last_handshake_error;  // unix_time 0: none yet
  // replica address (host byte order) -> open connections
  std::map<uint32_t, size_t> inbound_connections;
  std::map<uint32_t, size_t> outbound_connections;
  size_t workers = 0;  // --workers (0: the proxy runs on the main loop)
  // Connections each core holds open (HBONE inbound, tracked inbound and
  // outbound): how evenly SO_REUSEPORT spreads them over the workers.
  std::vector<size_t> worker_connections;
  // Adds another worker's core's figures (its listeners share these ports).
  void Merge(ProxyStats other);
  // The same as a JSON object, for /config_dump.
  std::string ToJson() const;
};

class ProxyCore;
using ProxyCorePtr = std::unique_ptr<ProxyCore>;

class ProxyCore {
 public:
  static Result<ProxyCorePtr> Create(uv_loop_t* loop, Directory& directory,
                                     const ProxyConfig& config, Registry& registry);
  ~ProxyCore();

  // Serves exactly these plaintext bindings (PlaintextListeners::Sync).
  Status SyncPlaintextPorts(const PlaintextBindings& bindings);
  // The outbound entry's listeners in sandboxed replicas' network namespaces
  // (OutboundEntry::SyncSandboxListeners).
  Status SyncSandboxListeners(const std::map<uint32_t, int>& listeners) {
    return outbound_->SyncSandboxListeners(listeners);
  }
  // Ends every open connection to or from the replicas at these addresses
  // (ascending; HBONE connections presenting their certificates included).
  void CloseConnectionsFor(const std::vector<uint32_t>& sorted_addresses);
  void CloseConnectionsFor(uint32_t replica_address) {
    CloseConnectionsFor(std::vector<uint32_t>{replica_address});
  }
  // Stops listening and ends every connection. Idempotent.
  void Close();

  ProxyStats Stats() const;
  uint16_t hbone_port() const { return hbone_->port(); }
  uint16_t outbound_port() const { return outbound_->port(); }
  PlaintextBindings plaintext_ports() const { return plaintext_->bindings(); }
  size_t sandbox_listener_count() const { return outbound_->sandbox_listener_count(); }
  Dispatcher& dispatcher() { return *dispatcher_; }

 private:
  ProxyCore() = default;

  ProxyConfig config_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<ProxyMetrics> metrics_;
  std::unique_ptr<ConnectionTracker> inbound_tracker_;
  std::unique_ptr<ConnectionTracker> outbound_tracker_;
  std::unique_ptr<Inbound> inbound_;
  HboneServerPtr hbone_;
  HbonePoolPtr pool_;
  OutboundEntryPtr outbound_;
  std::unique_ptr<PlaintextListeners> plaintext_;
  bool closed_ = false;
};

}  // namespace podless::proxy
