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

#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/connection_limits.h"
#include "proxy/connection_metrics.h"
#include "proxy/connection_pool.h"
#include "proxy/directory.h"
#include "proxy/hbone_server.h"
#include "proxy/inbound.h"
#include "proxy/outbound_entry.h"
#include "proxy/plaintext_listeners.h"
#include "proxy/tracked_connection.h"
#include "workloads/result.h"

namespace podless::proxy {

// A core's configuration is its parts' own options, composed: a setting is
// declared once, in the part that uses it, and reaches it as it is. The
// agent's flags (runtime/state/config.cc) write straight into these.
struct ProxyConfig {
  ProxyConfig();

  HboneServerOptions hbone;            // inbound HBONE (:15008)
  HbonePoolOptions pool;               // HBONE connections to other nodes
  OutboundEntryOptions outbound;       // the workloads' HTTP/SOCKS5 entry (:15001)
  PlaintextListenerOptions plaintext;  // workload ports served in plaintext
  InboundOptions inbound;              // every admitted connection

  // Where the per-peer, per-workload and unauthenticated limits count:
  // shared by every worker's core, so each limit is the node's. Null: this
  // core's alone. The core hands it to each part.
  ConnectionLimitsPtr limits;
  // Operational messages (accept failures) of every part; stderr by default.
  LogFunction log = LogToStderr;

  // Settings that belong to more than one part, set in each:
  // how worker threads share the listening ports (runtime/node/proxy_workers.h);
  void SetPortSharing(PortSharing sharing);
  // bytes queued for a peer and none taken by the kernel this long, on
  // every accepted connection (HBONE, outbound entry, plaintext ports);
  void SetWriteStallTimeout(uint64_t ms);
  // the TLS handshake, accepted (server) or dialed (pool);
  void SetHandshakeTimeout(uint64_t ms);
  // HBONE connections in the handshake plus outbound-entry ones before their
  // credentials, node-wide (ConnectionLimits::unauthenticated).
  void SetMaxUnauthenticatedConnections(uint32_t max);
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
