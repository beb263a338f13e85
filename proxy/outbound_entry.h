// OutboundEntry: where a workload's outbound traffic enters the proxy
// (`127.0.0.1:15001` by default). One port speaks both:
//   - HTTP/1.1 proxy: `CONNECT host:port` (tunnel), and absolute-form
//     requests (`GET http://host:port/path`), forwarded in origin form with
//     `Connection: close` over a fresh tunnel;
//   - SOCKS5 (RFC 1928) with username/password (RFC 1929), recognized by
//     the first byte 0x05.
// The credentials name the calling workload (Directory::Authenticate);
// missing or wrong ones get 407 with `Proxy-Authenticate: Basic
// realm="podless"`, or the SOCKS authentication failure.
//
// The destination (workload address, Service VIP, or name) is resolved by
// the Directory, an endpoint picked by power of two choices over open
// connections, and reached
//   - in memory when the endpoint is hosted here (same authorization and
//     metrics as over HBONE, no TLS),
//   - over plain TCP when it is outside the mesh (no SPIFFE ID),
//   - else over an HBONE stream from the pool, as the source identity.
// Failures answer 502 (403 when the destination's policy denies), or SOCKS
// reply 0x05 / 0x04 (0x02 for a denial); every wait has a timeout.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "proxy/connection_metrics.h"
#include "proxy/connection_pool.h"
#include "proxy/directory.h"
#include "proxy/dispatcher.h"
#include "proxy/inbound.h"
#include "proxy/load_balancer.h"
#include "proxy/tracked_connection.h"
#include "proxy/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

struct OutboundEntryOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 15001;  // 0: any free port (tests)
  // From accept to an established upstream (request head, authentication,
  // resolution, connect); then the tunnel has no timeout of its own.
  uint64_t setup_timeout_ms = 20'000;
};

class OutboundClient;

class OutboundEntry {
 public:
  static Result<std::unique_ptr<OutboundEntry>> Create(Dispatcher& dispatcher, Directory& directory,
                                                       Inbound& inbound, HbonePool& pool,
                                                       ConnectionTracker& tracker,
                                                       ProxyMetrics& metrics,
                                                       const OutboundEntryOptions& options);
  ~OutboundEntry();

  uint16_t port() const { return port_; }
  const std::string& bind() const { return options_.bind; }
  // Stops listening; connections being set up are dropped.
  void Close();

 private:
  friend class OutboundClient;
  OutboundEntry(Dispatcher& dispatcher, Directory& directory, Inbound& inbound, HbonePool& pool,
                ConnectionTracker& tracker, ProxyMetrics& metrics, OutboundEntryOptions options)
      : dispatcher_(dispatcher),
        directory_(directory),
        inbound_(inbound),
        pool_(pool),
        tracker_(tracker),
        metrics_(metrics),
        options_(std::move(options)) {}
  void OnConnection();

  Dispatcher& dispatcher_;
  Directory& directory_;
  Inbound& inbound_;
  HbonePool& pool_;
  ConnectionTracker& tracker_;
  ProxyMetrics& metrics_;
  OutboundEntryOptions options_;
  LoadBalancer balancer_;
  TcpHandle listener_;
  uint16_t port_ = 0;
  std::set<OutboundClient*> clients_;  // still being set up
};

using OutboundEntryPtr = std::unique_ptr<OutboundEntry>;

// "Basic dXNlcjpwYXNz" -> {"user", "pass"}; false when malformed.
bool ParseBasicCredentials(std::string_view header, std::string* user, std::string* password);

}  // namespace podless::proxy
