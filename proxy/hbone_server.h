// HboneServer: the one shared inbound HBONE listener (`<bind>:15008`).
//
// Every workload of the node is served by it: the local address the peer
// dialed (or SNI naming a hosted replica's address) selects the replica
// whose certificate the TLS server presents (see tls_stream.h). Each TLS
// connection runs an HTTP/2 server session; each CONNECT stream names
// `:authority` = `ip:port`, which must be
//   - a well-formed IPv4 `ip:port`                        (else 400),
//   - a replica this node hosts                           (else 404),
//   - served by this connection's certificate: a replica with the same
//     SPIFFE ID as the one presented                      (else 421, RFC 9110
//     "Misdirected Request": the client must dial that address instead),
//   - a port the workload declares                        (else 404),
//   - allowed by the AuthorizationPolicies                (else 403),
// and then gets 200 and the replica's app. A refusal ends that stream only.
//
// Hostile and slow peers (HboneServerOptions): a connection is reset at
// accept when its peer IP already has max_connections_per_peer; the TLS
// handshake, then the HTTP/2 preface, must each arrive within their
// timeout; a stream whose peer keeps its window shut, or a socket whose
// peer stops reading, is cut off after the stall timeouts; a connection
// that carries no stream for idle_timeout_ms gets GOAWAY and is closed.
// Each is counted (podless_peer_timeouts_total, podless_limit_refused_total).
// The last failed handshake (peer, reason, time) is kept for /config_dump.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "proxy/connection_limits.h"
#include "proxy/connection_metrics.h"
#include "proxy/directory.h"
#include "proxy/hbone_session.h"
#include "proxy/inbound.h"
#include "proxy/tcp_listener.h"
#include "proxy/tls_stream.h"
#include "workloads/result.h"

namespace podless::proxy {

inline constexpr uint64_t kDefaultWriteStallTimeoutMs = 30'000;
inline constexpr uint32_t kDefaultMaxConnectionsPerPeer = 4096;
// Well above the pool's idle timeout (HbonePoolOptions, 60 s), so a client
// normally closes its idle connection before the server does and does not
// race a new stream against our GOAWAY.
inline constexpr uint64_t kDefaultHboneServerIdleTimeoutMs = 300'000;

// The last TLS handshake the HBONE listener refused (or that timed out).
struct HandshakeFailure {
  std::string peer;    // the peer's IP address, "192.0.2.7"
  std::string reason;  // BoringSSL's or the chain verifier's words
  int64_t unix_time = 0;
  // Process-wide order of failures: the last of several worker cores' is
  // the one with the highest (unix_time has one-second ties).
  uint64_t sequence = 0;
};

struct HboneServerOptions {
  // 0.0.0.0 serves every address routed to the node; on loopback, any
  // 127.0.0.1 also reaches every 127/8 address. Port 0: any free port (tests).
  ListenOptions listen{.bind = "0.0.0.0", .port = 15008};
  // Slow peers (issue 8). Each 0 turns that limit off.
  // From accept to a finished TLS handshake.
  uint64_t handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
  // From the handshake to the client's HTTP/2 preface and first SETTINGS.
  uint64_t preface_timeout_ms = kDefaultPrefaceTimeoutMs;
  // A CONNECT stream whose peer keeps its flow-control window shut while we
  // have bytes for it is reset after this (see HboneSessionLimits).
  uint64_t stream_stall_timeout_ms = kDefaultStreamStallTimeoutMs;
  // A connection whose peer stops reading the socket (bytes queued, none
  // taken by the kernel) is closed after this.
  uint64_t write_stall_timeout_ms = kDefaultWriteStallTimeoutMs;
  // A connection with no stream (none yet, or none since its last one
  // ended) gets GOAWAY and is closed after this. A stream that is open but
  // idle keeps its connection.
  uint64_t idle_timeout_ms = kDefaultHboneServerIdleTimeoutMs;
  // Limits. Connections (handshaking or open) from one peer (PeerKey: its /24):
  // more are reset at accept. A peer node opens one pooled connection per
  // (source identity, destination workload), so this is generous.
  uint32_t max_connections_per_peer = kDefaultMaxConnectionsPerPeer;
  // Connections in the TLS handshake here and, shared through `limits`, in
  // the outbound entry before their credentials: more are reset at accept
  // (a flood of half-open peers spread over many addresses). 0: no cap.
  uint32_t max_unauthenticated_connections = 0;
  // Where those connections are counted: every worker's server holds the
  // same, so the limit is the node's. Null: the server counts its own.
  ConnectionLimitsPtr limits;
  // SETTINGS_MAX_CONCURRENT_STREAMS of every connection.
  uint32_t max_streams_per_connection = kServerMaxConcurrentStreams;
  LogFunction log = LogToStderr;
};

class HboneServer final : private HboneSession::Callbacks {
 public:
  static Result<std::unique_ptr<HboneServer>> Create(Dispatcher& dispatcher, Directory& directory,
                                                     Inbound& inbound, ProxyMetrics& metrics,
                                                     const HboneServerOptions& options);
  ~HboneServer() override;

  uint16_t port() const { return port_; }
  const std::string& bind() const { return options_.listen.bind; }
  size_t connection_count() const { return sessions_.size(); }
  uint64_t handshake_failures() const { return handshake_failures_; }
  // Open or handshaking connections from `peer_address` (host byte order),
  // counted by every server sharing this one's ConnectionLimits.
  size_t ConnectionsFrom(uint32_t peer_address) const;
  // The last refused handshake; unix_time 0 while there was none.
  const HandshakeFailure& last_handshake_error() const { return last_handshake_error_; }

  // Ends the HBONE connections whose certificate is one of these replicas'
  // (addresses in ascending order).
  void CloseConnectionsFor(const std::vector<uint32_t>& sorted_addresses);
  // Stops listening and ends every connection.
  void Close();

 private:
  struct SessionInfo {
    std::string local_identity;
    uint32_t local_address = 0;
    uint32_t peer_address = 0;
    CountSlot peer_slot;         // in hbone_connections_per_peer
    size_t counted_streams = 0;  // what the streams gauge holds for it
    HboneSessionPtr session;
    // Runs while the session has no stream (only with idle_timeout_ms).
    TimerPtr idle_timer;
  };

  HboneServer(Dispatcher& dispatcher, Directory& directory, Inbound& inbound, ProxyMetrics& metrics,
              HboneServerOptions options)
      : dispatcher_(dispatcher),
        directory_(directory),
        inbound_(inbound),
        metrics_(metrics),
        options_(std::move(options)) {}

  void OnConnection(TcpStream* tcp);
  void OnHandshake(TlsStream* tls, Status status);

  // HboneSession::Callbacks
  void OnConnectRequest(HboneSession& session, HboneStream& stream) override;
  void OnSessionClosed(HboneSession& session) override;
  void OnStreamCountChanged(HboneSession& session) override;
  void OnPrefaceTimeout(HboneSession& session) override;
  void OnStreamStalled(HboneSession& session) override;
  void OnStreamRefused(HboneSession& session) override;

  void UpdateStreamGauge(HboneSession& session);
  // Starts (no stream) or stops (streams) the session's idle timer.
  void UpdateIdleTimer(SessionInfo& info);
  void ArmIdleTimer(SessionInfo& info);
  void OnIdleTimeout(SessionInfo& info);

  Dispatcher& dispatcher_;
  Directory& directory_;
  Inbound& inbound_;
  ProxyMetrics& metrics_;
  HboneServerOptions options_;
  TlsContextPtr tls_;
  TcpListenerPtr listener_;
  uint16_t port_ = 0;
  struct Handshake {
    uint32_t peer_address = 0;
    CountSlot peer_slot;        // moves to the SessionInfo, or released on failure
    CountSlot unauthenticated;  // released when the handshake ends
  };
  std::map<TlsStream*, Handshake> handshaking_;
  // Failed handshakes still flushing their alert (they end themselves).
  std::set<TlsStream*> lingering_;
  std::shared_ptr<SharedCounts> unauthenticated_;  // options_.limits' unauthenticated
  std::shared_ptr<SharedCounts> per_peer_;         // options_.limits' hbone_connections_per_peer
  std::map<HboneSession*, SessionInfo> sessions_;
  uint64_t handshake_failures_ = 0;
  HandshakeFailure last_handshake_error_;
};

using HboneServerPtr = std::unique_ptr<HboneServer>;

}  // namespace podless::proxy
