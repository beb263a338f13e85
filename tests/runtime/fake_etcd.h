// FakeEtcd: an in-memory etcd for the cluster tests (tests/runtime/
// cluster_test.cc), so cluster join and follow run with no etcd process and
// no root.
//
// It keeps what the cluster layer relies on: one revision counter bumped once
// per write (a transaction's writes share one), keys with create/mod
// revisions and versions, leases whose keys go when they end, watches that
// replay history from their start revision and then deliver every write's
// events in order, and keep-alive streams that answer ttl 0 once their lease
// is gone. Time does not pass on its own: the test ends a lease
// (ExpireLease), takes etcd away (SetDown) or fails one call (FailNext).
//
// Each Connect() is one client (EtcdKv) with the EtcdKv rules: callbacks run
// on the loop (a zero timer), never inside the call, never after the client
// or the stream handle is gone.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/base/timer.h"
#include "runtime/etcd/etcd_kv.h"

namespace podless::runtime::testing {

class FakeEtcd {
 public:
  explicit FakeEtcd(uv_loop_t* loop);
  ~FakeEtcd();
  FakeEtcd(const FakeEtcd&) = delete;
  FakeEtcd& operator=(const FakeEtcd&) = delete;

  // A new client of this etcd. It must go before the FakeEtcd does.
  EtcdKvPtr Connect();

  // The store, read and written directly (no delay, no failure injection;
  // writes reach the watches like a client's).
  const mvccpb::KeyValue* Find(const std::string& key) const;
  std::vector<std::string> Keys(const std::string& prefix) const;
  void Put(const std::string& key, const std::string& value, int64_t lease = 0);
  void Delete(const std::string& key);
  int64_t revision() const { return revision_; }

  bool LeaseAlive(int64_t id) const { return leases_.contains(id); }
  size_t lease_count() const { return leases_.size(); }
  // The lease's TTL ran out: its keys go (one revision) and its keep-alive
  // streams answer ttl 0.
  void ExpireLease(int64_t id);
  // Keep-alive streams open now (for any lease).
  size_t keepalive_streams() const;
  size_t watch_streams() const;

  // Down: every open stream ends UNAVAILABLE now, and every call fails
  // UNAVAILABLE until SetDown(false). The store is kept (and the test may
  // still change it directly, as other nodes would).
  void SetDown(bool down);
  bool down() const { return down_; }
  // The next call of `method` ("Range", "Put", "DeleteRange", "Txn",
  // "LeaseGrant", "LeaseRevoke", "KeepAlive", "Watch") fails with `error`
  // and changes nothing.
  void FailNext(const std::string& method, Error error);
  // Runs `before` right before the next call of `method` reaches the store
  // (another writer winning a race).
  void BeforeNext(const std::string& method, std::function<void()> before);
  // Ends every open keep-alive stream with `error` (as a client does when no
  // answer comes within two intervals).
  void EndKeepAlives(Error error);
  // Cancels every open watch the way etcd does after a compaction (a
  // response with compact_revision set); history up to `revision` is gone,
  // so a watch from there or before is cancelled the same way.
  void Compact(int64_t revision);
  // Calls each method got (failed ones included).
  int calls(const std::string& method) const;

 private:
  class Client;
  struct Stream;
  struct Lease {
    int64_t ttl = 0;
  };
  struct Change {
    int64_t revision = 0;
    std::vector<mvccpb::Event> events;
  };

  void Post(std::function<void()> fn);
  void Drain();
  // A failure injected or the outage for a call of `method`, if any.
  std::optional<Error> Intercept(const std::string& method);

  // The store operations; each returns etcd's error where etcd has one.
  Result<etcdpb::RangeResponse> DoRange(const etcdpb::RangeRequest& request) const;
  Result<etcdpb::TxnResponse> DoTxn(const etcdpb::TxnRequest& request);
  bool Compare(const etcdpb::Compare& compare) const;
  void Write(const std::string& key, const std::string& value, int64_t lease,
             std::vector<mvccpb::Event>& events);
  int64_t Erase(const std::string& key, const std::string& range_end,
                std::vector<mvccpb::Event>& events);
  void Commit(std::vector<mvccpb::Event> events);
  void Deliver(const std::shared_ptr<Stream>& stream, const Change& change);
  void End(const std::shared_ptr<Stream>& stream, Error error);
  void EndLease(int64_t id);
  void Header(etcdpb::ResponseHeader* header) const;

  uv_loop_t* loop_;
  proxy::Timer timer_;  // Drain on the next turn
  std::deque<std::function<void()>> queue_;

  std::map<std::string, mvccpb::KeyValue> kvs_;
  int64_t revision_ = 1;
  int64_t compacted_ = 0;
  std::vector<Change> history_;
  std::map<int64_t, Lease> leases_;
  int64_t next_lease_ = 0x7001;
  std::vector<std::shared_ptr<Stream>> streams_;

  bool down_ = false;
  std::map<std::string, std::deque<Error>> failures_;
  std::map<std::string, std::deque<std::function<void()>>> before_;
  std::map<std::string, int> calls_;
};

}  // namespace podless::runtime::testing
