#include "proxy/connection_metrics.h"

#include <vector>

#include "proxy/base/socket_acceptor.h"

namespace podless::proxy {

namespace {

std::vector<std::string> ConnectionLabelNames() {
  return {"reporter",
          "source_workload",
          "source_principal",
          "destination_workload",
          "destination_principal",
          "destination_service",
          "connection_security_policy"};
}

std::string_view OrUnknown(std::string_view value) { return value.empty() ? "unknown" : value; }

CounterFamily& AuthzDeniedFamily(Registry& registry) {
  return registry.AddCounter(
      "podless_authz_denied_total",
      "Connections refused by an AuthorizationPolicy, or as plaintext by a STRICT "
      "PeerAuthentication.",
      {"destination_workload", "destination_namespace"});
}

}  // namespace

ProxyMetrics::ProxyMetrics(Registry& registry)
    : opened_(registry.AddCounter("istio_tcp_connections_opened_total", "TCP connections opened.",
                                  ConnectionLabelNames())),
      closed_(registry.AddCounter("istio_tcp_connections_closed_total", "TCP connections closed.",
                                  ConnectionLabelNames())),
      sent_(registry.AddCounter("istio_tcp_sent_bytes_total",
                                "Bytes sent in the response direction of TCP connections.",
                                ConnectionLabelNames())),
      received_(registry.AddCounter("istio_tcp_received_bytes_total",
                                    "Bytes received in the request direction of TCP connections.",
                                    ConnectionLabelNames())),
      denied_(AuthzDeniedFamily(registry)),
      timeouts_(registry.AddCounter(
          "podless_peer_timeouts_total",
          "Connections or streams cut off because the peer was too slow or stopped reading.",
          {"timeout"})),
      limits_(registry.AddCounter("podless_limit_refused_total",
                                  "Connections or streams refused by a per-peer or per-workload "
                                  "limit.",
                                  {"limit"})),
      auth_failures_(registry.AddCounter(
          "podless_outbound_auth_failures_total",
          "Logins at the outbound entry (HTTP proxy, SOCKS5) refused for wrong credentials.",
          {"protocol"})),
      accept_errors_(registry.AddCounter("podless_accept_errors_total", kAcceptErrorsHelp,
                                         {"listener", "error"})) {
  for (std::string_view timeout :
       {kTimeoutTlsHandshake, kTimeoutH2Preface, kTimeoutStreamStalled, kTimeoutHboneIdle,
        kTimeoutHboneWriteStalled, kTimeoutOutboundRequest, kTimeoutOutboundSetup,
        kTimeoutOutboundWriteStalled, kTimeoutPlaintextWriteStalled, kTimeoutPlaintextIdle}) {
    PeerTimeout(timeout);
  }
  for (std::string_view limit :
       {kLimitHboneConnectionsPerPeer, kLimitPlaintextConnectionsPerPeer,
        kLimitHboneStreamsPerConnection, kLimitOutboundConnectionsPerWorkload,
        kLimitOutboundLoginFailures, kLimitUnauthenticatedConnections}) {
    LimitRefused(limit);
  }
  for (std::string_view protocol : {kProtocolHttp, kProtocolSocks5}) OutboundAuthFailure(protocol);
  // Every proxy listener's accept failures, at 0 from the start (the admin,
  // API and Workload API sockets register theirs in CountAcceptErrors).
  for (std::string_view listener : {"hbone", "outbound", "plaintext"}) {
    AcceptError(listener, "EMFILE");
  }
  streams_active_ = &registry
                         .AddGauge("podless_hbone_streams_active",
                                   "HBONE CONNECT streams open (both directions).")
                         .WithLabels({});
  connections_active_ =
      &registry
           .AddGauge("podless_hbone_connections_active", "HBONE (mTLS HTTP/2) connections open.")
           .WithLabels({});
}

ConnectionSeries ProxyMetrics::Series(const ConnectionLabels& labels) {
  std::string_view values[] = {labels.source_reporter ? "source" : "destination",
                               OrUnknown(labels.source_workload),
                               OrUnknown(labels.source_principal),
                               OrUnknown(labels.destination_workload),
                               OrUnknown(labels.destination_principal),
                               OrUnknown(labels.destination_service),
                               labels.mutual_tls ? "mutual_tls" : "none"};
  std::span<const std::string_view> span(values);
  return ConnectionSeries{&opened_.WithLabels(span), &closed_.WithLabels(span),
                          &sent_.WithLabels(span), &received_.WithLabels(span)};
}

void ExportAuthzDeniedZeros(Registry& registry, CounterFamily::ZeroSeries workloads) {
  AuthzDeniedFamily(registry).SetZeroSeries(std::move(workloads));
}

void ProxyMetrics::AuthzDenied(std::string_view destination_workload,
                               std::string_view destination_namespace) {
  denied_.WithLabels({destination_workload, destination_namespace}).Inc();
}

}  // namespace podless::proxy
