// The proxy core's metrics, with Istio's names and labels
// (istio_tcp_connections_opened_total and friends) plus podless_* gauges.
//
// Byte directions follow Istio: "received" counts bytes of the request
// direction (source to destination), "sent" the response direction
// (destination to source), at either reporter.
#pragma once

#include <string>
#include <string_view>

#include "proxy/metrics.h"

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

 private:
  CounterFamily& opened_;
  CounterFamily& closed_;
  CounterFamily& sent_;
  CounterFamily& received_;
  CounterFamily& denied_;
  Gauge* streams_active_;
  Gauge* connections_active_;
};

}  // namespace podless::proxy
