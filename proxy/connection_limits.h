// ConnectionLimits: the connection counts behind the per-peer and
// per-workload limits, shared by every worker's ProxyCore.
//
// With `--workers N` the agent runs N threads, each with its own loop and
// its own ProxyCore (listeners bound with SO_REUSEPORT, so the kernel spreads
// connections over them). A limit counted per core would silently become
// N x the configured one; the counts therefore live here, behind one mutex,
// and every core of the agent holds the same ConnectionLimits. The mutex is
// taken once when a connection is accepted (or set up) and once when it
// ends, never per byte.
//
//   CountSlot slot = CountSlot::TryAcquire(per_peer, peer_address, limit);
//   if (!slot) { ...refuse... }
//   // keep `slot` with the connection; destroying it releases the count.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace podless::proxy {

// A count per key (an IPv4 address, host byte order), safe to use from any
// thread.
class SharedCounts {
 public:
  SharedCounts() = default;
  SharedCounts(const SharedCounts&) = delete;
  SharedCounts& operator=(const SharedCounts&) = delete;

  // Counts one more for `key` unless it has `limit` already; `limit` 0 is
  // no limit (the count is still kept, for Count()).
  bool TryAcquire(uint32_t key, uint32_t limit);
  // Gives back one count acquired for `key`. Releasing more than was
  // acquired is a bug in the caller: it aborts the process.
  void Release(uint32_t key);
  uint32_t Count(uint32_t key) const;
  // Keys with a count above 0.
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<uint32_t, uint32_t> counts_;  // only keys above 0
};

// One acquired count, released exactly once: by Release() or when the slot
// is destroyed (or overwritten by a move). It keeps its SharedCounts alive,
// so a connection that outlives the component that counted it (a stream
// still closing after its OutboundEntry is gone) releases safely.
class CountSlot {
 public:
  CountSlot() = default;
  // An empty slot when `key` has `limit` already.
  static CountSlot TryAcquire(std::shared_ptr<SharedCounts> counts, uint32_t key, uint32_t limit);

  ~CountSlot() { Release(); }
  CountSlot(const CountSlot&) = delete;
  CountSlot& operator=(const CountSlot&) = delete;
  CountSlot(CountSlot&& other) noexcept;
  CountSlot& operator=(CountSlot&& other) noexcept;

  // Holds a count.
  explicit operator bool() const { return counts_ != nullptr; }
  uint32_t key() const { return key_; }
  // Gives the count back now; idempotent.
  void Release();

 private:
  CountSlot(std::shared_ptr<SharedCounts> counts, uint32_t key)
      : counts_(std::move(counts)), key_(key) {}

  std::shared_ptr<SharedCounts> counts_;  // null: empty or released
  uint32_t key_ = 0;
};

// The counts of ProxyCore's connection limits (see HboneServerOptions and
// OutboundEntryOptions for what each limit covers).
struct ConnectionLimits {
  // Inbound HBONE connections (handshaking or open) per peer (PeerKey: /24).
  SharedCounts hbone_connections_per_peer;
  // Connections to plaintext workload ports per peer (PeerKey), open or
  // being dialed through to their app.
  SharedCounts plaintext_connections_per_peer;
  // Outbound-entry connections (being set up or open) per source replica
  // address.
  SharedCounts outbound_connections_per_workload;
  // Connections whose peer is not known yet, under key 0: HBONE ones in the
  // TLS handshake and outbound-entry ones before their credentials.
  SharedCounts unauthenticated;
};

// Where a per-peer limit (HBONE, plaintext ports) counts a connection: its
// source's /24, and all of 127/8 as one (a local user can take any loopback
// address, and a network peer usually more than one address of its /24).
// The proxy speaks IPv4 only (TcpListener refuses another bind address), so
// there is no IPv6 key yet; when there is, it must count a /64.
uint32_t PeerKey(uint32_t address);

// The default cap on not-yet-authenticated connections: a quarter of
// RLIMIT_NOFILE, well below what the proxy may hold in all.
uint32_t DefaultMaxUnauthenticatedConnections();

using ConnectionLimitsPtr = std::shared_ptr<ConnectionLimits>;

// `limits`' counts of one kind, sharing ownership of `limits`:
//   CountsOf(limits, &ConnectionLimits::hbone_connections_per_peer)
inline std::shared_ptr<SharedCounts> CountsOf(const ConnectionLimitsPtr& limits,
                                              SharedCounts ConnectionLimits::*member) {
  return std::shared_ptr<SharedCounts>(limits, &(limits.get()->*member));
}

}  // namespace podless::proxy
