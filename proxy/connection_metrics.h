// The proxy core's metrics, with Istio's names and labels
// (istio_tcp_connections_opened_total and friends) plus podless_* gauges.
//
// Byte directions follow Istio: "received" counts bytes of the request
// direction (source to destination), "sent" the response direction
// (destination to source), at either reporter.
#pragma once

#include <string>
#include <string_view>

#include "proxy/base/metrics.h"

namespace podless::proxy {

struct ConnectionLabels {
  bool source_reporter = false;  // reporter="source" (else "destination")
  std::string_view source_workload;
  std::string_view source_principal;
  std::string_view destination_workload;
  std::string_view destination_principal;
  std::string_view destination_service;
  bool mutual_tls = false;  // connection_security_policy mutual_tls | none
};

// The four series of one connection's label set; looked up once per
// connection, then counting is an atomic add.
struct ConnectionSeries {
  Counter* opened = nullptr;
  Counter* closed = nullptr;
  Counter* sent = nullptr;
  Counter* received = nullptr;
};

class ProxyMetrics {
 public:
  explicit ProxyMetrics(Registry& registry);

  ConnectionSeries Series(const ConnectionLabels& labels);
  Gauge& hbone_streams_active() { return *streams_active_; }
  Gauge& hbone_connections_active() { return *connections_active_; }
  // podless_authz_denied_total{destination_workload, destination_namespace}
  void AuthzDenied(std::string_view destination_workload, std::string_view destination_namespace);

  // podless_peer_timeouts_total{timeout}: a peer too slow or stalled was cut
  // off. `timeout` is one of the kTimeout* values below (all exported at 0
  // from the start, so a scrape sees them before they first fire).
  Counter& PeerTimeout(std::string_view timeout) { return timeouts_.WithLabels({timeout}); }
  // podless_limit_refused_total{limit}: a connection or stream refused by a
  // per-peer or per-workload limit; `limit` is one of the kLimit* values.
  Counter& LimitRefused(std::string_view limit) { return limits_.WithLabels({limit}); }
  // podless_outbound_auth_failures_total{protocol}: logins at the outbound
  // entry with wrong credentials (or another replica's, inside a sandbox);
  // `protocol` is kProtocolHttp or kProtocolSocks5 (both exported at 0).
  Counter& OutboundAuthFailure(std::string_view protocol) {
    return auth_failures_.WithLabels({protocol});
  }
  // podless_accept_errors_total{listener, error}: accept() failed (EMFILE,
  // ENFILE, ...); the connections pending then were shed.
  Counter& AcceptError(std::string_view listener, std::string_view error) {
    return accept_errors_.WithLabels({listener, error});
  }

  static constexpr std::string_view kTimeoutTlsHandshake = "hbone_tls_handshake";
  static constexpr std::string_view kTimeoutH2Preface = "hbone_h2_preface";
  static constexpr std::string_view kTimeoutStreamStalled = "hbone_stream_stalled";
  static constexpr std::string_view kTimeoutHboneIdle = "hbone_idle";
  static constexpr std::string_view kTimeoutHboneWriteStalled = "hbone_write_stalled";
  static constexpr std::string_view kTimeoutOutboundRequest = "outbound_request";
  static constexpr std::string_view kTimeoutOutboundSetup = "outbound_setup";
  static constexpr std::string_view kTimeoutOutboundWriteStalled = "outbound_write_stalled";
  static constexpr std::string_view kTimeoutPlaintextWriteStalled = "plaintext_write_stalled";
  // A plaintext connection spliced to a forward target or an exec process
  // that carried no byte either way for --plaintext-idle-timeout.
  static constexpr std::string_view kTimeoutPlaintextIdle = "plaintext_idle";
  static constexpr std::string_view kLimitHboneConnectionsPerPeer = "hbone_connections_per_peer";
  static constexpr std::string_view kLimitPlaintextConnectionsPerPeer =
      "plaintext_connections_per_peer";
  static constexpr std::string_view kLimitHboneStreamsPerConnection =
      "hbone_streams_per_connection";
  static constexpr std::string_view kLimitOutboundConnectionsPerWorkload =
      "outbound_connections_per_workload";
  // A login refused unchecked: its source failed too many (LoginThrottle).
  static constexpr std::string_view kLimitOutboundLoginFailures = "outbound_login_failures";
  static constexpr std::string_view kLimitUnauthenticatedConnections =
      "unauthenticated_connections";
  static constexpr std::string_view kProtocolHttp = "http";
  static constexpr std::string_view kProtocolSocks5 = "socks5";

 private:
  CounterFamily& opened_;
  CounterFamily& closed_;
  CounterFamily& sent_;
  CounterFamily& received_;
  CounterFamily& denied_;
  CounterFamily& timeouts_;
  CounterFamily& limits_;
  CounterFamily& auth_failures_;
  CounterFamily& accept_errors_;
  Gauge* streams_active_;
  Gauge* connections_active_;
};

// podless_authz_denied_total{destination_workload, destination_namespace}
// reads 0 for every workload `workloads` returns ({name, namespace} pairs,
// asked for at each scrape), so that a denial rate exists before the first
// denial, without a stored series per workload.
void ExportAuthzDeniedZeros(Registry& registry, CounterFamily::ZeroSeries workloads);

}  // namespace podless::proxy
