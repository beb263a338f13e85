// HbonePool: the HBONE client. Pooled mTLS HTTP/2 connections keyed by
// (source SPIFFE ID, destination address:port, expected destination SPIFFE
// ID), each presenting the source replica's SVID and verifying the server
// is the expected identity. A connection carries streams up to the peer's
// MAX_CONCURRENT_STREAMS, then another connection is opened. Connections
// with no stream for `idle_timeout_ms` are closed. A failed or slow
// connect/handshake fails every waiting request (never a hang).
//
// Each workload has its own address and the node serves HBONE on all of
// them, so the destination address of a pooled connection is the
// destination workload's: the certificate the server presents is that
// workload's.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/uv_handle.h"
#include "proxy/connection_metrics.h"
#include "proxy/directory.h"
#include "proxy/hbone_session.h"
#include "proxy/tls_stream.h"

namespace podless::proxy {

struct HbonePoolOptions {
  uint64_t idle_timeout_ms = 60'000;
  uint64_t connect_timeout_ms = 5'000;
  uint64_t handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
};

// Destroying it cancels the request: the callback is never called, and a
// stream that opens later is reset.
class HboneRequest {
 public:
  virtual ~HboneRequest() = default;
};
using HboneRequestPtr = std::unique_ptr<HboneRequest>;

class HbonePool final : private HboneSession::Callbacks {
 public:
  // On success the stream is open (200): call SetHandler. On failure,
  // `status` is the HTTP status the server refused with (403, 404, ...) or
  // 0 when the connection failed; `error` says what happened.
  using Callback = std::function<void(HboneStream* stream, int status, const std::string& error)>;

  HbonePool(Dispatcher& dispatcher, Directory& directory, ProxyMetrics& metrics,
            HbonePoolOptions options);
  ~HbonePool() override;
  static Result<std::unique_ptr<HbonePool>> Create(Dispatcher& dispatcher, Directory& directory,
                                                   ProxyMetrics& metrics, HbonePoolOptions options);

  // Opens `CONNECT endpoint.address:endpoint.port` as `source`, dialing
  // endpoint.address:endpoint.hbone_port.
  HboneRequestPtr Open(const LocalReplica& source, const Endpoint& endpoint, Callback callback);

  struct PoolStats {
    std::string source;
    std::string destination;  // "ip:port"
    std::string identity;
    size_t connections = 0;
    size_t streams = 0;
    size_t worker = 0;  // index of the worker thread whose pool this is (ProxyStats::Merge)
  };
  std::vector<PoolStats> Stats() const;
  size_t connection_count() const;
  void Close();

 private:
  using Key = std::tuple<std::string, uint32_t, uint16_t, std::string>;
  struct Waiter;
  struct Connection;

  // HboneSession::Callbacks
  void OnConnectRequest(HboneSession&, HboneStream& stream) override { stream.Respond(405); }
  void OnSessionClosed(HboneSession& session) override;
  void OnStreamCountChanged(HboneSession& session) override;

  Connection* FindOrDial(const Key& key, const LocalReplica& source);
  void Dial(Connection* connection, const Result<workloads::SvidPtr>& svid);
  void OnDialed(Connection* connection, Result<TcpStream*> result);
  void OnHandshake(Connection* connection, Status status);
  void OpenOn(Connection* connection, std::shared_ptr<Waiter> waiter);
  void FailConnection(Connection* connection, const std::string& error);
  void RemoveConnection(Connection* connection);
  void ArmIdle(Connection* connection);
  void UpdateStreamGauge(Connection* connection);

  Dispatcher& dispatcher_;
  Directory& directory_;
  ProxyMetrics& metrics_;
  HbonePoolOptions options_;
  TlsContextPtr tls_;
  std::map<Key, std::vector<std::unique_ptr<Connection>>> pool_;
  std::map<HboneSession*, Connection*> by_session_;
  // Failed handshakes still flushing their alert (they end themselves, or
  // Close() ends them).
  std::set<TlsStream*> lingering_;
};

using HbonePoolPtr = std::unique_ptr<HbonePool>;

}  // namespace podless::proxy
