// PlaintextListeners: the workload ports served without HBONE, for local
// callers that do not speak it. Each binding is a listening socket: either
// one replica's address and a port its workload declares
// (`127.64.0.5:8080`), which leaves the port to other programs on every
// other address, or a port on the listeners' bind address (0.0.0.0 by
// default), which serves every replica declaring it with one socket but
// takes the port from the whole machine. Which one each port gets is the
// caller's choice (runtime/node/plaintext_ports.h). The local address the client
// dialed selects the replica. An address the node does not host, an
// undeclared port or a denied source (authorization runs with an empty
// principal) closes the connection with a reset. So does a peer (PeerKey)
// that holds max_connections_per_peer already.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/connection_limits.h"
#include "proxy/inbound.h"
#include "proxy/tcp_listener.h"
#include "workloads/result.h"

namespace podless::proxy {

struct PlaintextListenerOptions {
  // The bind address of ports not bound per replica address, and how the
  // worker threads share them (each binding brings its own port).
  ListenOptions listen;
  // Counts accept errors, write stalls and refusals; may be null.
  ProxyMetrics* metrics = nullptr;
  // A client that stops reading is disconnected after this (0: never).
  uint64_t write_stall_timeout_ms = 0;
  // Connections (open, or being dialed through to a forward target or an
  // exec process) from one peer (PeerKey: its /24, all of 127/8 as one):
  // more are reset at accept. 0: no limit.
  uint32_t max_connections_per_peer = 0;
  // Where they are counted: every worker's listeners hold the same, so the
  // limit is the node's. Null: these listeners count their own.
  ConnectionLimitsPtr limits;
  LogFunction log = LogToStderr;
};

// How many (replica address, port) sockets the node holds before a port
// goes to the bind address (runtime/node/plaintext_ports.h).
inline constexpr uint32_t kDefaultMaxPlaintextAddressSockets = 128;

// One listening socket: `address` (host byte order) 0 means the listeners'
// bind address.
struct PlaintextBinding {
  uint32_t address = 0;
  uint16_t port = 0;
  auto operator<=>(const PlaintextBinding&) const = default;
};
using PlaintextBindings = std::set<PlaintextBinding>;

class PlaintextListeners {
 public:
  PlaintextListeners(Dispatcher& dispatcher, Inbound& inbound, PlaintextListenerOptions options);

  // Opens listeners for bindings not yet served and closes those no longer
  // in `bindings` (closing first, so a port can move from per-address
  // sockets to the bind address). Bindings that cannot be bound are
  // reported together, each with its address; the others are still served.
  Status Sync(const PlaintextBindings& bindings);
  // The bindings served now.
  PlaintextBindings bindings() const;
  // "127.64.0.5:8080", or "0.0.0.0:8080" for address 0.
  std::string Address(const PlaintextBinding& binding) const;
  void Close() { listeners_.clear(); }

 private:
  void OnConnection(uint16_t port, TcpStream* tcp);

  Dispatcher& dispatcher_;
  Inbound& inbound_;
  PlaintextListenerOptions options_;
  std::shared_ptr<SharedCounts> per_peer_;  // options_.limits' plaintext_connections_per_peer
  std::map<PlaintextBinding, TcpListenerPtr> listeners_;
};

}  // namespace podless::proxy
