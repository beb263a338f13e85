// TrackedConnection: a Stream decorator that counts a connection's bytes
// into its metric series and registers it with a ConnectionTracker, so that
// CloseFor(address) can end every connection of a deleted workload and the
// admin page can show per-workload counts. The same decorator serves the
// destination side (inbound) and the source side (outbound), so in-memory
// short-circuited connections are counted exactly like the others.
//
// The wrapped ("inner") stream is always the one facing the source: what it
// delivers is request bytes (received), what is written to it response
// bytes (sent).
#pragma once

#include <cstdint>
#include <map>
#include <set>

#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"
#include "proxy/connection_limits.h"
#include "proxy/connection_metrics.h"

namespace podless::proxy {

class ConnectionTracker;

class TrackedConnection final : public Stream, private StreamHandler, private DeferredTask {
 public:
  // Stream (forwarded to the inner stream)
  void SetHandler(StreamHandler* handler) override;
  void Write(std::string_view bytes) override;
  void End() override;
  void Reset() override;
  size_t QueuedBytes() const override { return inner_ ? inner_->QueuedBytes() : 0; }
  void SetReadPaused(bool paused) override;

  uint32_t key() const { return key_; }
  // Only the Dispatcher deletes a TrackedConnection (after it finished).
  ~TrackedConnection() override;

 private:
  friend class ConnectionTracker;
  TrackedConnection(ConnectionTracker& tracker, Stream* inner, uint32_t key, uint32_t endpoint,
                    ConnectionSeries series, CountSlot slot);

  // StreamHandler (the inner stream)
  void OnData(std::string_view bytes) override;
  void OnEnd() override;
  void OnClosed(bool reset) override;
  void OnWritable() override;
  // DeferredTask: the tracker aborted us; tell the handler.
  void RunDeferred() override;

  void Abort();
  void Finish();

  ConnectionTracker& tracker_;
  Stream* inner_;
  StreamHandler* handler_ = nullptr;
  uint32_t key_;
  uint32_t endpoint_;
  ConnectionSeries series_;
  CountSlot slot_;  // given back when the connection ends
  bool aborted_ = false;
  bool finished_ = false;
};

class ConnectionTracker {
 public:
  explicit ConnectionTracker(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  ~ConnectionTracker();
  ConnectionTracker(const ConnectionTracker&) = delete;
  ConnectionTracker& operator=(const ConnectionTracker&) = delete;

  // Wraps `inner`; counts one connection opened now and closed when it
  // ends. `key` is the replica the connection belongs to (CloseFor);
  // `endpoint` the destination address whose open-connection count the
  // load balancer reads (0: none). `slot`: a limit's count the connection
  // holds until it ends (ConnectionLimits; none by default).
  Stream* Track(Stream* inner, uint32_t key, uint32_t endpoint, ConnectionSeries series,
                CountSlot slot = {});

  // Ends every connection registered under one of `sorted_keys` (ascending):
  // the streams are reset and their handlers get OnClosed(true) on the next
  // loop turn. Costs O(keys with connections x log(sorted_keys)), so a
  // million keys of a workload scaled away are cheap.
  void CloseFor(const std::vector<uint32_t>& sorted_keys);

  size_t CountFor(uint32_t key) const;
  uint64_t EndpointConnections(uint32_t endpoint) const;
  // key -> open connections.
  std::map<uint32_t, size_t> Counts() const;
  Dispatcher& dispatcher() { return dispatcher_; }

 private:
  friend class TrackedConnection;
  void Remove(TrackedConnection* connection);

  Dispatcher& dispatcher_;
  std::map<uint32_t, std::set<TrackedConnection*>> by_key_;
  std::map<uint32_t, uint64_t> endpoint_counts_;
};

}  // namespace podless::proxy
