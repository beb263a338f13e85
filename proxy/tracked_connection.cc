#include "proxy/tracked_connection.h"

#include <algorithm>
#include <vector>

namespace podless::proxy {

TrackedConnection::TrackedConnection(ConnectionTracker& tracker, Stream* inner, uint32_t key,
                                     uint32_t endpoint, ConnectionSeries series, CountSlot slot)
    : tracker_(tracker),
      inner_(inner),
      key_(key),
      endpoint_(endpoint),
      series_(series),
      slot_(std::move(slot)) {
  if (series_.opened != nullptr) series_.opened->Inc();
}

TrackedConnection::~TrackedConnection() = default;

void TrackedConnection::SetHandler(StreamHandler* handler) {
  handler_ = handler;
  if (inner_ != nullptr) inner_->SetHandler(this);
}

void TrackedConnection::Write(std::string_view bytes) {
  if (inner_ == nullptr) return;
  if (series_.sent != nullptr) series_.sent->Inc(bytes.size());
  inner_->Write(bytes);
}

void TrackedConnection::End() {
  if (inner_ != nullptr) inner_->End();
}

void TrackedConnection::Reset() {
  handler_ = nullptr;
  if (inner_ != nullptr) {
    inner_->Reset();
    inner_ = nullptr;
  }
  Finish();
}

void TrackedConnection::SetReadPaused(bool paused) {
  if (inner_ != nullptr) inner_->SetReadPaused(paused);
}

void TrackedConnection::OnData(std::string_view bytes) {
  if (series_.received != nullptr) series_.received->Inc(bytes.size());
  if (handler_ != nullptr) handler_->OnData(bytes);
}

void TrackedConnection::OnEnd() {
  if (handler_ != nullptr) handler_->OnEnd();
}

void TrackedConnection::OnWritable() {
  if (handler_ != nullptr) handler_->OnWritable();
}

void TrackedConnection::OnClosed(bool reset) {
  inner_ = nullptr;
  StreamHandler* handler = handler_;
  handler_ = nullptr;
  Finish();
  if (handler != nullptr) handler->OnClosed(reset);
}

void TrackedConnection::Abort() {
  if (aborted_ || inner_ == nullptr) return;
  aborted_ = true;
  inner_->Reset();
  inner_ = nullptr;
  // The handler learns on the next turn: CloseFor may be called from
  // inside some other handler's callback.
  tracker_.dispatcher().Schedule(this);
}

void TrackedConnection::RunDeferred() {
  StreamHandler* handler = handler_;
  handler_ = nullptr;
  Finish();
  if (handler != nullptr) handler->OnClosed(true);
}

void TrackedConnection::Finish() {
  if (finished_) return;
  finished_ = true;
  if (series_.closed != nullptr) series_.closed->Inc();
  series_ = {};
  slot_.Release();
  tracker_.Remove(this);
  tracker_.dispatcher().Cancel(this);
  tracker_.dispatcher().DeferredDelete(std::unique_ptr<TrackedConnection>(this));
}

ConnectionTracker::~ConnectionTracker() {
  // Shutting down: end what is still open, synchronously (nothing runs
  // after this).
  auto by_key = std::move(by_key_);
  for (auto& [key, set] : by_key) {
    for (TrackedConnection* c : set) {
      c->finished_ = true;
      dispatcher_.Cancel(c);
      if (c->inner_ != nullptr) c->inner_->Reset();
      StreamHandler* handler = c->handler_;
      delete c;
      if (handler != nullptr) handler->OnClosed(true);
    }
  }
}

Stream* ConnectionTracker::Track(Stream* inner, uint32_t key, uint32_t endpoint,
                                 ConnectionSeries series, CountSlot slot) {
  auto* connection = new TrackedConnection(*this, inner, key, endpoint, series, std::move(slot));
  by_key_[key].insert(connection);
  if (endpoint != 0) ++endpoint_counts_[endpoint];
  return connection;
}

void ConnectionTracker::Remove(TrackedConnection* connection) {
  auto it = by_key_.find(connection->key_);
  if (it == by_key_.end() || it->second.erase(connection) == 0) return;
  if (it->second.empty()) by_key_.erase(it);
  if (connection->endpoint_ != 0) {
    auto e = endpoint_counts_.find(connection->endpoint_);
    if (e != endpoint_counts_.end() && --e->second == 0) endpoint_counts_.erase(e);
  }
}

void ConnectionTracker::CloseFor(const std::vector<uint32_t>& sorted_keys) {
  std::vector<TrackedConnection*> connections;
  for (const auto& [key, tracked] : by_key_) {
    if (std::binary_search(sorted_keys.begin(), sorted_keys.end(), key))
      connections.insert(connections.end(), tracked.begin(), tracked.end());
  }
  for (TrackedConnection* c : connections) c->Abort();
}

size_t ConnectionTracker::CountFor(uint32_t key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? 0 : it->second.size();
}

uint64_t ConnectionTracker::EndpointConnections(uint32_t endpoint) const {
  auto it = endpoint_counts_.find(endpoint);
  return it == endpoint_counts_.end() ? 0 : it->second;
}

std::map<uint32_t, size_t> ConnectionTracker::Counts() const {
  std::map<uint32_t, size_t> counts;
  for (const auto& [key, set] : by_key_) counts[key] = set.size();
  return counts;
}

}  // namespace podless::proxy
