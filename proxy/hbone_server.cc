#include "proxy/hbone_server.h"

#include <arpa/inet.h>
#include <algorithm>
#include <chrono>

#include <atomic>
#include <ctime>
#include <memory>
#include <utility>
#include <vector>

#include "proxy/base/http1_parser.h"
#include "proxy/base/tcp_stream.h"

namespace podless::proxy {

Result<HboneServerPtr> HboneServer::Create(Dispatcher& dispatcher, Directory& directory,
                                           Inbound& inbound, ProxyMetrics& metrics,
                                           const HboneServerOptions& options) {
  HboneServerPtr server(new HboneServer(dispatcher, directory, inbound, metrics, options));
  ConnectionLimitsPtr limits =
      options.limits != nullptr ? options.limits : std::make_shared<ConnectionLimits>();
  server->per_peer_ = CountsOf(limits, &ConnectionLimits::hbone_connections_per_peer);
  server->unauthenticated_ = CountsOf(limits, &ConnectionLimits::unauthenticated);
  auto tls = TlsContext::CreateServer(directory);
  if (!tls.ok()) return tls.error();
  server->tls_ = std::move(tls).value();
  TcpListener::Options listen;
  listen.name = "hbone";
  listen.listen = options.listen;
  listen.metrics = &metrics;
  listen.log = options.log;
  HboneServer* self = server.get();
  auto listener = TcpListener::Create(dispatcher, std::move(listen),
                                      [self](TcpStream* tcp) { self->OnConnection(tcp); });
  if (!listener.ok()) {
    return MakeError(listener.error().code, "HBONE: " + listener.error().message);
  }
  server->listener_ = std::move(listener).value();
  server->port_ = server->listener_->port();
  return server;
}

HboneServer::~HboneServer() { Close(); }

void HboneServer::Close() {
  if (listener_) listener_->Close();
  // Each handshake's peer slot is released when `handshaking` goes.
  auto handshaking = std::move(handshaking_);
  handshaking_.clear();
  for (auto& [tls, handshake] : handshaking) tls->Reset();
  auto lingering = std::move(lingering_);
  lingering_.clear();
  for (TlsStream* tls : lingering) {
    tls->SetDestroyCallback(nullptr);
    tls->Reset();
  }
  // Each Abort() ends the session's streams and comes back through
  // OnSessionClosed, which forgets and deletes it.
  std::vector<HboneSession*> sessions;
  for (auto& [session, info] : sessions_) sessions.push_back(session);
  for (HboneSession* session : sessions) session->Abort();
}

size_t HboneServer::ConnectionsFrom(uint32_t peer_address) const {
  return per_peer_->Count(PeerKey(peer_address));
}

void HboneServer::OnConnection(TcpStream* tcp) {
  uint32_t peer = tcp->PeerAddress();
  // Held from here until the handshake fails or the session closes.
  CountSlot slot =
      CountSlot::TryAcquire(per_peer_, PeerKey(peer), options_.max_connections_per_peer);
  if (!slot) {
    metrics_.LimitRefused(ProxyMetrics::kLimitHboneConnectionsPerPeer).Inc();
    tcp->Reset();
    return;
  }
  CountSlot unauthenticated =
      CountSlot::TryAcquire(unauthenticated_, 0, options_.max_unauthenticated_connections);
  if (!unauthenticated) {
    metrics_.LimitRefused(ProxyMetrics::kLimitUnauthenticatedConnections).Inc();
    tcp->Reset();
    return;
  }
  tcp->SetWriteStallTimeout(options_.write_stall_timeout_ms,
                            &metrics_.PeerTimeout(ProxyMetrics::kTimeoutHboneWriteStalled));
  // The callback needs the TlsStream pointer, which exists only once
  // Accept returns; TlsStream never calls back from inside Accept.
  auto holder = std::make_shared<TlsStream*>(nullptr);
  TlsStream* tls =
      TlsStream::Accept(dispatcher_, *tls_, tcp, options_.handshake_timeout_ms,
                        [this, holder](Status status) { OnHandshake(*holder, std::move(status)); });
  *holder = tls;
  handshaking_[tls] = Handshake{peer, std::move(slot), std::move(unauthenticated)};
}

void HboneServer::OnHandshake(TlsStream* tls, Status status) {
  auto handshaking = handshaking_.find(tls);
  if (handshaking == handshaking_.end()) return;  // Close() reset it
  uint32_t peer = handshaking->second.peer_address;
  CountSlot peer_slot = std::move(handshaking->second.peer_slot);
  handshaking_.erase(handshaking);
  if (!status.ok()) {
    peer_slot.Release();
    if (!tls->destroyed()) {
      lingering_.insert(tls);
      tls->SetDestroyCallback([this, tls] { lingering_.erase(tls); });
    }
    ++handshake_failures_;
    std::string peer_text = FormatAddressPort(peer, 0);
    peer_text.resize(peer_text.rfind(':'));  // without FormatAddressPort's ":0"
    static std::atomic<uint64_t> failures_in_process{0};
    // The precise clock: time() reads the coarse one, which lags by up to a
    // tick, so a failure right after a second began could be dated before
    // the attempt that caused it.
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    last_handshake_error_ =
        HandshakeFailure{std::move(peer_text), status.error().message, now, ++failures_in_process};
    if (status.error().code == ErrorCode::kDeadlineExceeded) {
      metrics_.PeerTimeout(ProxyMetrics::kTimeoutTlsHandshake).Inc();
    }
    return;
  }
  // Not make_unique: HboneServer is its callbacks through a private base.
  HboneSessionPtr owned(
      new HboneSession(dispatcher_, HboneSession::Role::kServer, tls, tls->peer_identity(), *this));
  HboneSession* session = owned.get();
  SessionInfo info;
  info.local_identity = tls->local_identity();
  info.local_address = tls->local_replica_address();
  info.peer_address = peer;
  info.peer_slot = std::move(peer_slot);
  info.session = std::move(owned);
  SessionInfo& stored = sessions_[session];
  stored = std::move(info);
  if (options_.idle_timeout_ms > 0) {
    // The entry's address is stable: std::map nodes do not move.
    stored.idle_timer =
        std::make_unique<Timer>(dispatcher_.loop(), [this, &stored] { OnIdleTimeout(stored); });
    UpdateIdleTimer(stored);
  }
  metrics_.hbone_connections_active().Add();
  HboneSessionLimits limits;
  limits.preface_timeout_ms = options_.preface_timeout_ms;
  limits.stream_stall_timeout_ms = options_.stream_stall_timeout_ms;
  limits.max_concurrent_streams = options_.max_streams_per_connection;
  session->SetLimits(limits);
  Status started = session->Start();
  if (!started.ok()) session->Abort();
}

void HboneServer::OnConnectRequest(HboneSession& session, HboneStream& stream) {
  auto info = sessions_.find(&session);
  if (info == sessions_.end()) {
    stream.Respond(503);
    return;
  }
  auto authority = ParseAuthority(stream.authority(), 0);
  in_addr addr{};
  if (!authority.ok() || authority->kind != HostPort::Kind::kIPv4 ||
      inet_pton(AF_INET, authority->host.c_str(), &addr) != 1) {
    stream.Respond(400);
    return;
  }
  uint32_t address = ntohl(addr.s_addr);
  const LocalReplica* replica = directory_.FindLocalReplica(address);
  if (replica == nullptr) {
    stream.Respond(404);
    return;
  }
  if (replica->spiffe_id != info->second.local_identity) {
    stream.Respond(421);
    return;
  }
  InboundSource source;
  source.principal = session.peer_identity();
  source.address = info->second.peer_address;
  source.mutual_tls = true;
  InboundDecision decision = inbound_.Admit(address, authority->port, source);
  if (decision.status != 200) {
    stream.Respond(decision.status);
    return;
  }
  stream.Respond(200);
  inbound_.Serve(decision, source, &stream);
  UpdateStreamGauge(session);
}

void HboneServer::UpdateStreamGauge(HboneSession& session) {
  auto it = sessions_.find(&session);
  if (it == sessions_.end()) return;
  size_t now = session.active_streams();
  metrics_.hbone_streams_active().Add(static_cast<int64_t>(now) -
                                      static_cast<int64_t>(it->second.counted_streams));
  it->second.counted_streams = now;
  UpdateIdleTimer(it->second);
}

void HboneServer::UpdateIdleTimer(SessionInfo& info) {
  if (!info.idle_timer) return;
  if (info.session->active_streams() > 0) {
    info.idle_timer->Stop();
    return;
  }
  ArmIdleTimer(info);
}

void HboneServer::ArmIdleTimer(SessionInfo& info) {
  // (Re)started at every change to no streams: the timeout counts from the
  // moment the last stream ended.
  info.idle_timer->Start(options_.idle_timeout_ms);
}

void HboneServer::OnIdleTimeout(SessionInfo& info) {
  HboneSession* session = info.session.get();
  if (session->closed()) return;
  if (session->active_streams() > 0) {
    // A stream this server has not been told of yet (its request still
    // arriving): look again after another period.
    ArmIdleTimer(info);
    return;
  }
  metrics_.PeerTimeout(ProxyMetrics::kTimeoutHboneIdle).Inc();
  // GOAWAY, then the session closes itself (no stream is left to finish);
  // OnSessionClosed forgets it.
  session->Shutdown();
}

void HboneServer::OnStreamCountChanged(HboneSession& session) { UpdateStreamGauge(session); }

void HboneServer::OnPrefaceTimeout(HboneSession&) {
  metrics_.PeerTimeout(ProxyMetrics::kTimeoutH2Preface).Inc();
}

void HboneServer::OnStreamStalled(HboneSession&) {
  metrics_.PeerTimeout(ProxyMetrics::kTimeoutStreamStalled).Inc();
}

void HboneServer::OnStreamRefused(HboneSession&) {
  metrics_.LimitRefused(ProxyMetrics::kLimitHboneStreamsPerConnection).Inc();
}

void HboneServer::OnSessionClosed(HboneSession& session) {
  auto it = sessions_.find(&session);
  if (it == sessions_.end()) return;
  metrics_.hbone_streams_active().Sub(static_cast<int64_t>(it->second.counted_streams));
  metrics_.hbone_connections_active().Sub();
  // The session is inside its own callback: it dies on the next turn.
  dispatcher_.DeferredDelete(std::move(it->second.session));
  sessions_.erase(it);  // releases its peer slot
}

void HboneServer::CloseConnectionsFor(const std::vector<uint32_t>& sorted_addresses) {
  std::vector<HboneSession*> doomed;
  for (auto& [session, info] : sessions_) {
    if (std::binary_search(sorted_addresses.begin(), sorted_addresses.end(), info.local_address))
      doomed.push_back(session);
  }
  for (HboneSession* session : doomed) session->Abort();
}

}  // namespace podless::proxy
