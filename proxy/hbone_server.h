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
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "proxy/connection_metrics.h"
#include "proxy/directory.h"
#include "proxy/dispatcher.h"
#include "proxy/hbone_session.h"
#include "proxy/inbound.h"
#include "proxy/tls_stream.h"
#include "proxy/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

struct HboneServerOptions {
  // 0.0.0.0 serves every address routed to the node; on loopback, any
  // 127.0.0.1 also reaches every 127/8 address.
  std::string bind = "0.0.0.0";
  uint16_t port = 15008;  // 0: any free port (tests)
  uint64_t handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
};

class HboneServer final : private HboneSession::Callbacks {
 public:
  static Result<std::unique_ptr<HboneServer>> Create(Dispatcher& dispatcher, Directory& directory,
                                                     Inbound& inbound, ProxyMetrics& metrics,
                                                     const HboneServerOptions& options);
  ~HboneServer() override;

  uint16_t port() const { return port_; }
  const std::string& bind() const { return options_.bind; }
  size_t connection_count() const { return sessions_.size(); }
  uint64_t handshake_failures() const { return handshake_failures_; }
  const std::string& last_handshake_error() const { return last_handshake_error_; }

  // Ends the HBONE connections whose certificate is `replica_address`'s.
  void CloseConnectionsFor(uint32_t replica_address);
  // Stops listening and ends every connection.
  void Close();

 private:
  struct SessionInfo {
    std::string local_identity;
    uint32_t local_address = 0;
    size_t counted_streams = 0;  // what the streams gauge holds for it
  };

  HboneServer(Dispatcher& dispatcher, Directory& directory, Inbound& inbound, ProxyMetrics& metrics,
              HboneServerOptions options)
      : dispatcher_(dispatcher),
        directory_(directory),
        inbound_(inbound),
        metrics_(metrics),
        options_(std::move(options)) {}

  void OnConnection();
  void OnHandshake(TlsStream* tls, Status status);

  // HboneSession::Callbacks
  void OnConnectRequest(HboneSession& session, HboneStream& stream) override;
  void OnSessionClosed(HboneSession& session) override;
  void OnStreamCountChanged(HboneSession& session) override;

  void UpdateStreamGauge(HboneSession& session);

  Dispatcher& dispatcher_;
  Directory& directory_;
  Inbound& inbound_;
  ProxyMetrics& metrics_;
  HboneServerOptions options_;
  TlsContextPtr tls_;
  TcpHandle listener_;
  uint16_t port_ = 0;
  std::set<TlsStream*> handshaking_;
  std::map<HboneSession*, SessionInfo> sessions_;
  uint64_t handshake_failures_ = 0;
  std::string last_handshake_error_;
};

using HboneServerPtr = std::unique_ptr<HboneServer>;

// Binds and listens on `bind:port`; `*bound_port` gets the actual port.
Status ListenTcp(uv_loop_t* loop, TcpHandle& handle, const std::string& bind, uint16_t port,
                 uv_connection_cb on_connection, void* data, uint16_t* bound_port);

}  // namespace podless::proxy
