// PlaintextListeners: the workload ports served without HBONE, for local
// callers that do not speak it. One shared listener per distinct port
// number on the node (`<bind>:<port>`, 0.0.0.0 by default: a socket bound to
// 127.0.0.1 would not receive connections to 127.64.x.y); the local address
// the client dialed selects the replica. An address the node does not host,
// an undeclared port or a denied source (authorization runs with an empty
// principal) closes the connection with a reset.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "proxy/dispatcher.h"
#include "proxy/inbound.h"
#include "proxy/tcp_listener.h"
#include "workloads/result.h"

namespace podless::proxy {

class PlaintextListeners {
 public:
  // `metrics` (may be null) counts accept errors and write stalls; a
  // client that stops reading is disconnected after `write_stall_timeout_ms`
  // (0: never).
  PlaintextListeners(Dispatcher& dispatcher, Inbound& inbound, std::string bind,
                     ProxyMetrics* metrics = nullptr, uint64_t write_stall_timeout_ms = 0,
                     LogFunction log = LogToStderr, PortSharing sharing = PortSharing::kExclusive)
      : dispatcher_(dispatcher),
        inbound_(inbound),
        bind_(std::move(bind)),
        metrics_(metrics),
        write_stall_timeout_ms_(write_stall_timeout_ms),
        log_(std::move(log)),
        sharing_(sharing) {}

  // Opens listeners for ports not yet served and closes those no longer in
  // `ports`. Ports that cannot be bound are reported together; the others
  // are still served.
  Status Sync(const std::set<uint16_t>& ports);
  std::set<uint16_t> ports() const;
  void Close() { listeners_.clear(); }

 private:
  void OnConnection(uint16_t port, TcpStream* tcp);

  Dispatcher& dispatcher_;
  Inbound& inbound_;
  std::string bind_;
  ProxyMetrics* metrics_;
  uint64_t write_stall_timeout_ms_;
  LogFunction log_;
  PortSharing sharing_;
  std::map<uint16_t, TcpListenerPtr> listeners_;
};

}  // namespace podless::proxy
