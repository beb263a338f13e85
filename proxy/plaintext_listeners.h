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
#include "proxy/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

class PlaintextListeners {
 public:
  PlaintextListeners(Dispatcher& dispatcher, Inbound& inbound, std::string bind)
      : dispatcher_(dispatcher), inbound_(inbound), bind_(std::move(bind)) {}

  // Opens listeners for ports not yet served and closes those no longer in
  // `ports`. Ports that cannot be bound are reported together; the others
  // are still served.
  Status Sync(const std::set<uint16_t>& ports);
  std::set<uint16_t> ports() const;
  void Close() { listeners_.clear(); }

 private:
  struct Listener {
    PlaintextListeners* owner = nullptr;
    uint16_t port = 0;
    TcpHandle handle;
  };
  void OnConnection(Listener& listener);

  Dispatcher& dispatcher_;
  Inbound& inbound_;
  std::string bind_;
  std::map<uint16_t, std::unique_ptr<Listener>> listeners_;
};

}  // namespace podless::proxy
