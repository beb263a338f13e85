#include "proxy/hbone_server.h"

#include <arpa/inet.h>

#include <memory>
#include <utility>
#include <vector>

#include "proxy/http1_parser.h"
#include "proxy/tcp_stream.h"

namespace podless::proxy {

Status ListenTcp(uv_loop_t* loop, TcpHandle& handle, const std::string& bind, uint16_t port,
                 uv_connection_cb on_connection, void* data, uint16_t* bound_port) {
  sockaddr_in addr{};
  if (uv_ip4_addr(bind.c_str(), port, &addr) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "bind address \"" + bind + "\" is not IPv4");
  }
  uv_tcp_init(loop, handle.get());
  handle->data = data;
  std::string where = bind + ":" + std::to_string(port);
  int rc = uv_tcp_bind(handle.get(), reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(handle.stream(), 1024, on_connection);
  if (rc != 0) {
    handle.Close();
    return MakeError(ErrorCode::kUnavailable, "cannot listen on " + where + ": " + uv_strerror(rc));
  }
  sockaddr_storage bound{};
  int len = sizeof(bound);
  uv_tcp_getsockname(handle.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  *bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return {};
}

Result<HboneServerPtr> HboneServer::Create(Dispatcher& dispatcher, Directory& directory,
                                           Inbound& inbound, ProxyMetrics& metrics,
                                           const HboneServerOptions& options) {
  HboneServerPtr server(new HboneServer(dispatcher, directory, inbound, metrics, options));
  auto tls = TlsContext::CreateServer(directory);
  if (!tls.ok()) return tls.error();
  server->tls_ = std::move(tls).value();
  Status listening = ListenTcp(
      dispatcher.loop(), server->listener_, options.bind, options.port,
      [](uv_stream_t* listener, int status) {
        if (status == 0 && listener->data != nullptr) {
          static_cast<HboneServer*>(listener->data)->OnConnection();
        }
      },
      server.get(), &server->port_);
  if (!listening.ok()) {
    return MakeError(listening.error().code, "HBONE: " + listening.error().message);
  }
  return server;
}

HboneServer::~HboneServer() { Close(); }

void HboneServer::Close() {
  listener_.Close();
  auto handshaking = std::move(handshaking_);
  handshaking_.clear();
  for (TlsStream* tls : handshaking) tls->Reset();
  // Each Abort() ends the session's streams and comes back through
  // OnSessionClosed, which forgets and deletes it.
  std::vector<HboneSession*> sessions;
  for (auto& [session, info] : sessions_) sessions.push_back(session);
  for (HboneSession* session : sessions) session->Abort();
}

void HboneServer::OnConnection() {
  TcpStream* tcp = TcpStream::Accept(dispatcher_, listener_.stream());
  if (tcp == nullptr) return;
  // The callback needs the TlsStream pointer, which exists only once
  // Accept returns; TlsStream never calls back from inside Accept.
  auto holder = std::make_shared<TlsStream*>(nullptr);
  TlsStream* tls =
      TlsStream::Accept(dispatcher_, *tls_, tcp, options_.handshake_timeout_ms,
                        [this, holder](Status status) { OnHandshake(*holder, std::move(status)); });
  *holder = tls;
  handshaking_.insert(tls);
}

void HboneServer::OnHandshake(TlsStream* tls, Status status) {
  handshaking_.erase(tls);
  if (!status.ok()) {
    ++handshake_failures_;
    last_handshake_error_ = status.error().message;
    return;
  }
  auto* session =
      new HboneSession(dispatcher_, HboneSession::Role::kServer, tls, tls->peer_identity(), *this);
  SessionInfo info;
  info.local_identity = tls->local_identity();
  info.local_address = tls->local_replica_address();
  sessions_[session] = std::move(info);
  metrics_.hbone_connections_active().Add();
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
}

void HboneServer::OnStreamCountChanged(HboneSession& session) { UpdateStreamGauge(session); }

void HboneServer::OnSessionClosed(HboneSession& session) {
  auto it = sessions_.find(&session);
  if (it == sessions_.end()) return;
  metrics_.hbone_streams_active().Sub(static_cast<int64_t>(it->second.counted_streams));
  metrics_.hbone_connections_active().Sub();
  sessions_.erase(it);
  dispatcher_.DeferredDelete(&session);
}

void HboneServer::CloseConnectionsFor(uint32_t replica_address) {
  std::vector<HboneSession*> doomed;
  for (auto& [session, info] : sessions_) {
    if (info.local_address == replica_address) doomed.push_back(session);
  }
  for (HboneSession* session : doomed) session->Abort();
}

}  // namespace podless::proxy
