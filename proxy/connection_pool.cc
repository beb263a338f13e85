#include "proxy/connection_pool.h"

#include <algorithm>
#include <utility>

#include "proxy/base/timer.h"

namespace podless::proxy {

// A request waiting for, or holding, its stream.
struct HbonePool::Waiter {
  Callback callback;
  std::string authority;
  bool cancelled = false;
};

struct HbonePool::Connection {
  Key key;
  workloads::SvidPtr svid;
  std::unique_ptr<TcpConnector> connector;
  TlsStream* tls = nullptr;                      // while handshaking
  HboneSession* session = nullptr;               // once up
  std::vector<std::shared_ptr<Waiter>> waiting;  // until the session is up
  TimerPtr idle_timer;                           // created when the session first goes idle
  size_t counted_streams = 0;                    // what the streams gauge holds for it
  bool failed = false;
  // Expires with the connection: a certificate that arrives later is dropped.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

namespace {

class RequestHandle final : public HboneRequest {
 public:
  explicit RequestHandle(std::shared_ptr<void> waiter, bool* cancelled)
      : waiter_(std::move(waiter)), cancelled_(cancelled) {}
  ~RequestHandle() override { *cancelled_ = true; }

 private:
  std::shared_ptr<void> waiter_;  // keeps *cancelled_ alive
  bool* cancelled_;
};

}  // namespace

HbonePool::HbonePool(Dispatcher& dispatcher, Directory& directory, ProxyMetrics& metrics,
                     HbonePoolOptions options)
    : dispatcher_(dispatcher), directory_(directory), metrics_(metrics), options_(options) {}

Result<HbonePoolPtr> HbonePool::Create(Dispatcher& dispatcher, Directory& directory,
                                       ProxyMetrics& metrics, HbonePoolOptions options) {
  auto pool = std::make_unique<HbonePool>(dispatcher, directory, metrics, options);
  auto tls = TlsContext::CreateClient(directory);
  if (!tls.ok()) return tls.error();
  pool->tls_ = std::move(tls).value();
  return pool;
}

HbonePool::~HbonePool() { Close(); }

void HbonePool::Close() {
  // Sessions first: Abort() ends their streams and comes back through
  // OnSessionClosed, which removes the connection.
  std::vector<HboneSession*> sessions;
  for (auto& [session, connection] : by_session_) sessions.push_back(session);
  for (HboneSession* session : sessions) session->Abort();
  auto lingering = std::move(lingering_);
  lingering_.clear();
  for (TlsStream* tls : lingering) {
    tls->SetDestroyCallback(nullptr);
    tls->Reset();
  }
  auto pool = std::move(pool_);
  pool_.clear();
  by_session_.clear();
  for (auto& [key, connections] : pool) {
    for (auto& c : connections) {
      for (auto& w : c->waiting) {
        if (!w->cancelled && w->callback) w->callback(nullptr, 0, "HBONE pool closed");
      }
      if (c->tls != nullptr) c->tls->Reset();
      if (c->session != nullptr) {
        metrics_.hbone_connections_active().Sub();
        metrics_.hbone_streams_active().Sub(static_cast<int64_t>(c->counted_streams));
        delete c->session;  // resets its transport, tells no one
      }
    }
  }
}

HboneRequestPtr HbonePool::Open(const LocalReplica& source, const Endpoint& endpoint,
                                Callback callback) {
  auto waiter = std::make_shared<Waiter>();
  waiter->callback = std::move(callback);
  waiter->authority = FormatAddressPort(endpoint.address, endpoint.port);
  Key key{source.spiffe_id, endpoint.address, endpoint.hbone_port, endpoint.spiffe_id};
  Connection* connection = FindOrDial(key, source);
  auto handle = std::make_unique<RequestHandle>(waiter, &waiter->cancelled);
  if (connection->session != nullptr) {
    OpenOn(connection, waiter);
  } else {
    connection->waiting.push_back(waiter);
  }
  return handle;
}

HbonePool::Connection* HbonePool::FindOrDial(const Key& key, const LocalReplica& source) {
  auto& connections = pool_[key];
  for (auto& c : connections) {
    if (c->failed) continue;
    if (c->session != nullptr && c->session->CanOpenStream()) return c.get();
    // A connection still being set up takes more requests, up to a limit
    // that any server allows (RFC 9113 recommends at least 100).
    if (c->session == nullptr && c->waiting.size() < 100) return c.get();
  }
  auto connection = std::make_unique<Connection>();
  connection->key = key;
  connection->connector = std::make_unique<TcpConnector>(dispatcher_);
  Connection* raw = connection.get();
  connections.push_back(std::move(connection));
  // The source's certificate may have to be issued first (off the loop).
  std::weak_ptr<bool> alive = raw->alive;
  directory_.CertificateAsync(source, [this, raw, alive](Result<workloads::SvidPtr> svid) {
    if (alive.expired()) return;  // the connection, or the whole pool, is gone
    // Never inside FindOrDial, whose caller still queues its request here.
    dispatcher_.Post([this, raw, alive, svid = std::move(svid)] {
      if (!alive.expired() && !raw->failed) Dial(raw, svid);
    });
  });
  return raw;
}

void HbonePool::Dial(Connection* connection, const Result<workloads::SvidPtr>& svid) {
  if (!svid.ok()) {
    FailConnection(connection, "no certificate for the source workload: " + svid.error().message);
    return;
  }
  connection->svid = svid.value();
  const Key& key = connection->key;
  connection->connector->Connect(
      std::get<1>(key), std::get<2>(key), options_.connect_timeout_ms,
      [this, connection](Result<TcpStream*> result) { OnDialed(connection, std::move(result)); });
}

void HbonePool::OnDialed(Connection* connection, Result<TcpStream*> result) {
  if (!result.ok()) {
    FailConnection(connection, result.error().message);
    return;
  }
  connection->tls = TlsStream::Connect(
      dispatcher_, *tls_, result.value(), connection->svid, std::get<3>(connection->key), "",
      options_.handshake_timeout_ms,
      [this, connection](Status status) { OnHandshake(connection, std::move(status)); });
}

void HbonePool::OnHandshake(Connection* connection, Status status) {
  TlsStream* tls = std::exchange(connection->tls, nullptr);
  if (!status.ok()) {
    if (!tls->destroyed()) {
      lingering_.insert(tls);
      tls->SetDestroyCallback([this, tls] { lingering_.erase(tls); });
    }
    FailConnection(connection, status.error().message);
    return;
  }
  auto* session =
      new HboneSession(dispatcher_, HboneSession::Role::kClient, tls, tls->peer_identity(), *this);
  connection->session = session;
  by_session_[session] = connection;
  metrics_.hbone_connections_active().Add();
  Status started = session->Start();
  if (!started.ok()) {
    session->Abort();
    return;
  }
  auto waiting = std::move(connection->waiting);
  connection->waiting.clear();
  for (auto& w : waiting) OpenOn(connection, w);
  // Every waiter gave up (or its stream could not open): nothing will end a
  // stream and arm the idle timer, so arm it now, or the connection would
  // stay open for good.
  if (connection->session != nullptr && !connection->session->closed() &&
      connection->session->active_streams() == 0) {
    ArmIdle(connection);
  }
}

void HbonePool::OpenOn(Connection* connection, std::shared_ptr<Waiter> waiter) {
  if (waiter->cancelled) return;
  if (connection->idle_timer) connection->idle_timer->Stop();
  // The response callback needs the stream, known only once OpenStream
  // returns; the session never calls back from inside OpenStream.
  auto holder = std::make_shared<HboneStream*>(nullptr);
  auto stream = connection->session->OpenStream(
      waiter->authority, [waiter, holder](int status, const std::string& error) {
        HboneStream* s = *holder;
        if (waiter->cancelled) {
          if (status == 200) s->Reset();
          return;
        }
        if (status == 200) {
          waiter->callback(s, 200, "");
        } else {
          waiter->callback(
              nullptr, status,
              status != 0 ? "HBONE CONNECT refused with status " + std::to_string(status) : error);
        }
      });
  if (!stream.ok()) {
    // Next turn: Open() must not call back from inside itself.
    std::string error = stream.error().message;
    dispatcher_.Post([waiter, error] {
      if (!waiter->cancelled) waiter->callback(nullptr, 0, error);
    });
    return;
  }
  *holder = stream.value();
  UpdateStreamGauge(connection);
}

void HbonePool::UpdateStreamGauge(Connection* connection) {
  size_t now = connection->session != nullptr ? connection->session->active_streams() : 0;
  metrics_.hbone_streams_active().Add(static_cast<int64_t>(now) -
                                      static_cast<int64_t>(connection->counted_streams));
  connection->counted_streams = now;
}

void HbonePool::FailConnection(Connection* connection, const std::string& error) {
  connection->failed = true;
  auto waiting = std::move(connection->waiting);
  connection->waiting.clear();
  RemoveConnection(connection);
  for (auto& w : waiting) {
    if (!w->cancelled) w->callback(nullptr, 0, "HBONE connection failed: " + error);
  }
}

void HbonePool::RemoveConnection(Connection* connection) {
  auto it = pool_.find(connection->key);
  if (it == pool_.end()) return;
  auto& list = it->second;
  for (auto c = list.begin(); c != list.end(); ++c) {
    if (c->get() == connection) {
      // The connector may be the caller (OnDialed): free it next turn.
      std::unique_ptr<Connection> doomed = std::move(*c);
      list.erase(c);
      if (list.empty()) pool_.erase(it);
      dispatcher_.DeferredDelete(std::move(doomed));
      return;
    }
  }
}

void HbonePool::ArmIdle(Connection* connection) {
  if (!connection->idle_timer) {
    // The timer is the connection's: it cannot outlive it.
    connection->idle_timer = std::make_unique<Timer>(dispatcher_.loop(), [connection] {
      HboneSession* session = connection->session;
      if (session != nullptr && session->active_streams() == 0) session->Shutdown();
    });
  }
  connection->idle_timer->Start(options_.idle_timeout_ms);
}

void HbonePool::OnStreamCountChanged(HboneSession& session) {
  auto it = by_session_.find(&session);
  if (it == by_session_.end()) return;
  UpdateStreamGauge(it->second);
  if (session.active_streams() == 0) ArmIdle(it->second);
}

void HbonePool::OnSessionClosed(HboneSession& session) {
  metrics_.hbone_connections_active().Sub();
  auto it = by_session_.find(&session);
  // The pool created the session (OnHandshake) and takes it back now that
  // it has closed; it is inside its own callback, so it dies next turn.
  dispatcher_.DeferredDelete(std::unique_ptr<HboneSession>(&session));
  if (it == by_session_.end()) return;
  Connection* connection = it->second;
  metrics_.hbone_streams_active().Sub(static_cast<int64_t>(connection->counted_streams));
  connection->counted_streams = 0;
  by_session_.erase(it);
  connection->session = nullptr;
  connection->idle_timer.reset();
  RemoveConnection(connection);
}

std::vector<HbonePool::PoolStats> HbonePool::Stats() const {
  std::vector<PoolStats> out;
  for (const auto& [key, connections] : pool_) {
    PoolStats stats;
    stats.source = std::get<0>(key);
    stats.destination = FormatAddressPort(std::get<1>(key), std::get<2>(key));
    stats.identity = std::get<3>(key);
    for (const auto& c : connections) {
      ++stats.connections;
      if (c->session != nullptr) stats.streams += c->session->active_streams();
    }
    out.push_back(std::move(stats));
  }
  return out;
}

size_t HbonePool::connection_count() const {
  size_t n = 0;
  for (const auto& [key, connections] : pool_) n += connections.size();
  return n;
}

}  // namespace podless::proxy
