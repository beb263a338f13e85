// PlaintextPorts: which sockets serve the workloads' plaintext ports, and
// the retry of those another program holds. Kept by the node's main loop.
//
// A port is served on each replica's own address (one socket per (replica
// address, port): 127.64.0.5:8080), so other programs keep the port on
// every other address (127.0.0.1:8080 stays theirs), while the node holds
// at most `max_address_sockets` such sockets in all. A port whose replicas
// would take the total past that is served on the bind address instead
// (0.0.0.0:8080, one socket for every replica, the port taken host-wide),
// and stays there until its last workload goes: flapping around the
// threshold never rebinds it. Each proxy worker holds its own copy of each
// socket (SO_REUSEPORT), so the descriptors are max_address_sockets x
// workers at most.
//
// A socket that cannot be bound (another program holds the address and
// port) is logged once, with the reason, and retried on a timer, 1 s
// doubling to 5 s (a bind attempt per worker is cheap; a freed port should
// be served within seconds), until it binds (that is logged too);
// podless_plaintext_ports_unbound says how many are missing and
// podless_plaintext_bind_retries_total counts the retries.
//
// Bookkeeping costs O(change): only workloads with per-address sockets are
// remembered (at most max_address_sockets addresses in all); a workload on
// ports served on the bind address costs nothing here.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "proxy/base/metrics.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "proxy/plaintext_listeners.h"
#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::runtime {

class PlaintextPorts {
 public:
  struct Options {
    // (address, port) sockets in all; 0: every port on the bind address.
    uint32_t max_address_sockets = proxy::kDefaultMaxPlaintextAddressSockets;
    uint64_t retry_initial_ms = 1'000;
    uint64_t retry_max_ms = 5'000;
  };
  // Serves exactly the bindings given; fails naming those it could not bind.
  using SyncFunction = std::function<Status(const proxy::PlaintextBindings&)>;
  // The bindings served now.
  using HeldFunction = std::function<proxy::PlaintextBindings()>;

  PlaintextPorts(uv_loop_t* loop, proxy::Registry& metrics, Options options, SyncFunction sync,
                 HeldFunction held);
  PlaintextPorts(const PlaintextPorts&) = delete;
  PlaintextPorts& operator=(const PlaintextPorts&) = delete;

  // A workload now declares `ports` on `addresses` (its replicas').
  void Update(const workloads::ObjectKey& key, const std::vector<workloads::PortSpec>& ports,
              const std::vector<uint32_t>& addresses);
  void Remove(const workloads::ObjectKey& key);
  // True when an Update or Remove changed the sockets wanted.
  bool dirty() const { return dirty_; }
  // Binds and closes sockets so that `ports_in_use` (port -> workloads
  // declaring it, Agent::port_users()) are served; a socket that cannot be
  // bound is retried on the timer.
  void Sync(const std::map<uint16_t, size_t>& ports_in_use);
  // The bindings wanted now that are not served ("127.64.0.5:8080"); empty
  // when every one is.
  const std::vector<std::string>& unbound() const { return unbound_; }
  // Which of `ports` are not served on `address` now (its own socket or
  // the port's on the bind address could not be bound).
  std::vector<uint16_t> Unserved(uint32_t address,
                                 const std::vector<workloads::PortSpec>& ports) const;
  // Stops the retry timer (the node is shutting down).
  void Close();

 private:
  struct Indexed {
    std::vector<uint16_t> ports;
    std::vector<uint32_t> addresses;
  };
  void Unindex(const workloads::ObjectKey& key);
  proxy::PlaintextBindings Wanted(const std::map<uint16_t, size_t>& ports_in_use);
  void Retry();
  void ScheduleRetry();

  uv_loop_t* loop_;
  Options options_;
  SyncFunction sync_;
  HeldFunction held_;
  // Ports served on their replicas' addresses: port -> address -> how many
  // workloads put it there (one, unless a moment of overlap in an update).
  std::map<uint16_t, std::map<uint32_t, uint32_t>> by_address_;
  size_t address_sockets_ = 0;  // entries in by_address_
  // Ports served on the bind address (past the threshold), until unused.
  std::set<uint16_t> on_bind_address_;
  // Workloads with entries in by_address_, and what they put there.
  std::map<workloads::ObjectKey, Indexed> indexed_;
  bool dirty_ = false;
  std::map<uint16_t, size_t> last_ports_;  // the last Sync's ports_in_use
  std::vector<std::string> unbound_;
  proxy::PlaintextBindings unbound_bindings_;
  std::string logged_;           // the error last logged ("" while everything binds)
  proxy::TimerPtr retry_timer_;  // null once closed
  uint64_t retry_delay_ms_ = 0;  // 0: no retry scheduled
  proxy::Gauge* unbound_gauge_;
  proxy::Counter* retries_;
};

}  // namespace podless::runtime
