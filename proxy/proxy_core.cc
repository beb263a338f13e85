#include "proxy/proxy_core.h"

#include "proxy/apps.h"
#include "proxy/base/tcp_stream.h"

namespace podless::proxy {

ProxyConfig::ProxyConfig() {
  // A node caps what the parts leave open when used alone (tests).
  SetMaxUnauthenticatedConnections(DefaultMaxUnauthenticatedConnections());
  SetWriteStallTimeout(kDefaultWriteStallTimeoutMs);
  plaintext.max_connections_per_peer = kDefaultMaxConnectionsPerPeer;
}

void ProxyConfig::SetPortSharing(PortSharing sharing) {
  hbone.listen.sharing = sharing;
  outbound.listen.sharing = sharing;
  plaintext.listen.sharing = sharing;
}

void ProxyConfig::SetWriteStallTimeout(uint64_t ms) {
  hbone.write_stall_timeout_ms = ms;
  outbound.write_stall_timeout_ms = ms;
  plaintext.write_stall_timeout_ms = ms;
}

void ProxyConfig::SetHandshakeTimeout(uint64_t ms) {
  hbone.handshake_timeout_ms = ms;
  pool.handshake_timeout_ms = ms;
}

void ProxyConfig::SetMaxUnauthenticatedConnections(uint32_t max) {
  hbone.max_unauthenticated_connections = max;
  outbound.max_unauthenticated_connections = max;
}

Result<ProxyCorePtr> ProxyCore::Create(uv_loop_t* loop, Directory& directory,
                                       const ProxyConfig& config, Registry& registry) {
  ProxyCorePtr core(new ProxyCore());
  core->config_ = config;
  // One set of counts for the HBONE server and the outbound entry (and,
  // with worker threads, every core's): the unauthenticated cap is theirs
  // together.
  if (!core->config_.limits) core->config_.limits = std::make_shared<ConnectionLimits>();
  core->dispatcher_ = std::make_unique<Dispatcher>(loop);
  core->metrics_ = std::make_unique<ProxyMetrics>(registry);
  core->inbound_tracker_ = std::make_unique<ConnectionTracker>(*core->dispatcher_);
  core->outbound_tracker_ = std::make_unique<ConnectionTracker>(*core->dispatcher_);
  core->inbound_ = std::make_unique<Inbound>(*core->dispatcher_, directory, *core->metrics_,
                                             *core->inbound_tracker_, config.inbound);
  HboneServerOptions hbone = config.hbone;
  hbone.limits = core->config_.limits;
  hbone.log = config.log;
  auto server =
      HboneServer::Create(*core->dispatcher_, directory, *core->inbound_, *core->metrics_, hbone);
  if (!server.ok()) return server.error();
  core->hbone_ = std::move(server).value();
  auto created_pool =
      HbonePool::Create(*core->dispatcher_, directory, *core->metrics_, config.pool);
  if (!created_pool.ok()) return created_pool.error();
  core->pool_ = std::move(created_pool).value();
  OutboundEntryOptions outbound = config.outbound;
  outbound.limits = core->config_.limits;
  outbound.log = config.log;
  auto entry = OutboundEntry::Create(*core->dispatcher_, directory, *core->inbound_, *core->pool_,
                                     *core->outbound_tracker_, *core->metrics_, outbound);
  if (!entry.ok()) return entry.error();
  core->outbound_ = std::move(entry).value();
  PlaintextListenerOptions plaintext = config.plaintext;
  plaintext.metrics = core->metrics_.get();
  plaintext.limits = core->config_.limits;
  plaintext.log = config.log;
  core->plaintext_ =
      std::make_unique<PlaintextListeners>(*core->dispatcher_, *core->inbound_, plaintext);
  return core;
}

ProxyCore::~ProxyCore() { Close(); }

Status ProxyCore::SyncPlaintextPorts(const PlaintextBindings& bindings) {
  if (closed_) return MakeError(ErrorCode::kFailedPrecondition, "proxy core is closed");
  return plaintext_->Sync(bindings);
}

void ProxyCore::CloseConnectionsFor(const std::vector<uint32_t>& sorted_addresses) {
  if (closed_) return;
  inbound_tracker_->CloseFor(sorted_addresses);
  outbound_tracker_->CloseFor(sorted_addresses);
  hbone_->CloseConnectionsFor(sorted_addresses);
}

void ProxyCore::Close() {
  if (closed_) return;
  closed_ = true;
  // A core whose Create failed half-way has only some parts.
  if (plaintext_) plaintext_->Close();
  if (outbound_) outbound_->Close();
  // Tracked connections first, while the HBONE sessions under them live;
  // their splices and apps are told and reset the other sides.
  inbound_tracker_.reset();
  outbound_tracker_.reset();
  if (hbone_) hbone_->Close();
  if (pool_) pool_->Close();
}

ProxyStats ProxyCore::Stats() const {
  ProxyStats stats;
  stats.listeners.push_back({"hbone", hbone_->bind() + ":" + std::to_string(hbone_->port())});
  stats.listeners.push_back(
      {"outbound", outbound_->bind() + ":" + std::to_string(outbound_->port())});
  for (const PlaintextBinding& binding : plaintext_->bindings()) {
    stats.listeners.push_back({"plaintext", plaintext_->Address(binding)});
  }
  stats.pools = pool_->Stats();
  stats.hbone_inbound_connections = hbone_->connection_count();
  stats.tls_handshake_failures = hbone_->handshake_failures();
  stats.last_handshake_error = hbone_->last_handshake_error();
  if (inbound_tracker_) stats.inbound_connections = inbound_tracker_->Counts();
  if (outbound_tracker_) stats.outbound_connections = outbound_tracker_->Counts();
  size_t open = stats.hbone_inbound_connections;
  for (const auto& [address, n] : stats.inbound_connections) open += n;
  for (const auto& [address, n] : stats.outbound_connections) open += n;
  stats.worker_connections = {open};
  return stats;
}

void ProxyStats::Merge(ProxyStats other) {
  // `other` is the next worker: its index is the number merged so far.
  for (auto& pool : other.pools) {
    pool.worker = worker_connections.size();
    pools.push_back(std::move(pool));
  }
  hbone_inbound_connections += other.hbone_inbound_connections;
  tls_handshake_failures += other.tls_handshake_failures;
  if (other.last_handshake_error.sequence > last_handshake_error.sequence) {
    last_handshake_error = std::move(other.last_handshake_error);
  }
  for (const auto& [address, n] : other.inbound_connections) inbound_connections[address] += n;
  for (const auto& [address, n] : other.outbound_connections) outbound_connections[address] += n;
  for (size_t n : other.worker_connections) worker_connections.push_back(n);
}

std::string ProxyStats::ToJson() const {
  auto address = [](uint32_t a) {
    std::string s = FormatAddressPort(a, 0);
    return s.substr(0, s.size() - 2);
  };
  std::string json = "{\"listeners\":[";
  for (size_t i = 0; i < listeners.size(); ++i) {
    if (i > 0) json += ',';
    json += "{\"name\":" + JsonString(listeners[i].name) +
            ",\"address\":" + JsonString(listeners[i].address) + "}";
  }
  json += "],\"pools\":[";
  for (size_t i = 0; i < pools.size(); ++i) {
    if (i > 0) json += ',';
    json += "{\"source\":" + JsonString(pools[i].source) +
            ",\"destination\":" + JsonString(pools[i].destination) +
            ",\"identity\":" + JsonString(pools[i].identity) +
            ",\"connections\":" + std::to_string(pools[i].connections) +
            ",\"streams\":" + std::to_string(pools[i].streams) +
            ",\"worker\":" + std::to_string(pools[i].worker) + "}";
  }
  json += "],\"workers\":" + std::to_string(workers) + ",\"worker_connections\":[";
  for (size_t i = 0; i < worker_connections.size(); ++i) {
    json += (i > 0 ? "," : "");
    json += std::to_string(worker_connections[i]);
  }
  json += "],\"hbone_inbound_connections\":" + std::to_string(hbone_inbound_connections) +
          ",\"tls_handshake_failures\":" + std::to_string(tls_handshake_failures);
  // The last refused HBONE handshake, for an operator asking "why was that
  // peer refused?": null until one is.
  json += ",\"last_handshake_error\":";
  if (last_handshake_error.unix_time == 0) {
    json += "null";
  } else {
    json += "{\"peer\":" + JsonString(last_handshake_error.peer) +
            ",\"reason\":" + JsonString(last_handshake_error.reason) +
            ",\"unix_time\":" + std::to_string(last_handshake_error.unix_time) + "}";
  }
  json += ",\"inbound_connections\":{";
  bool first = true;
  for (const auto& [a, n] : inbound_connections) {
    json += (first ? "" : ",") + JsonString(address(a)) + ":" + std::to_string(n);
    first = false;
  }
  json += "},\"outbound_connections\":{";
  first = true;
  for (const auto& [a, n] : outbound_connections) {
    json += (first ? "" : ",") + JsonString(address(a)) + ":" + std::to_string(n);
    first = false;
  }
  json += "}}";
  return json;
}

}  // namespace podless::proxy
