// EtcdKv: what podless asks of etcd — the KV, Lease and Watch calls of etcd's
// v3 API, asynchronous on a libuv loop. EtcdClient (runtime/etcd/etcd_client.h)
// implements it over gRPC; the cluster layer (runtime/cluster/cluster.h) depends only
// on this interface, so its tests can run it on an in-memory etcd
// (tests/runtime/fake_etcd.h).
//
// Every callback runs on the loop, never synchronously inside the call that
// started it, and never after the EtcdKv (or the stream handle) is gone.
// Nothing here throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "workloads/result.h"

namespace podless::runtime {

namespace etcdpb = ::etcdserverpb;

template <typename T>
using EtcdCallback = std::function<void(Result<T>)>;

// A long-lived stream (a watch or a lease keep-alive). Destroying the handle
// cancels the stream and its callbacks never run again.
class EtcdStream {
 public:
  virtual ~EtcdStream() = default;
};
using EtcdStreamPtr = std::unique_ptr<EtcdStream>;

class EtcdKv;
using EtcdKvPtr = std::unique_ptr<EtcdKv>;

class EtcdKv {
 public:
  virtual ~EtcdKv() = default;

  // KV and Lease unary calls. Errors: UNAVAILABLE (etcd cannot be reached),
  // DEADLINE_EXCEEDED, or etcd's own gRPC status mapped by FromGrpcCode with
  // etcd's message (NOT_FOUND "requested lease not found" for a put under a
  // lease that expired).
  virtual void Range(const etcdpb::RangeRequest& request,
                     EtcdCallback<etcdpb::RangeResponse> done) = 0;
  virtual void Put(const etcdpb::PutRequest& request, EtcdCallback<etcdpb::PutResponse> done) = 0;
  virtual void DeleteRange(const etcdpb::DeleteRangeRequest& request,
                           EtcdCallback<etcdpb::DeleteRangeResponse> done) = 0;
  virtual void Txn(const etcdpb::TxnRequest& request, EtcdCallback<etcdpb::TxnResponse> done) = 0;
  virtual void LeaseGrant(const etcdpb::LeaseGrantRequest& request,
                          EtcdCallback<etcdpb::LeaseGrantResponse> done) = 0;
  virtual void LeaseRevoke(const etcdpb::LeaseRevokeRequest& request,
                           EtcdCallback<etcdpb::LeaseRevokeResponse> done) = 0;

  // Keeps `lease_id` alive on a bidirectional Lease/LeaseKeepAlive stream:
  // sends a keep-alive request now and then every `interval`. `on_response`
  // runs for each response (ttl() <= 0: the lease is gone). `on_end` runs
  // once if the stream ends (connection lost, etcd error, no response within
  // two intervals) and nothing runs after it.
  virtual EtcdStreamPtr KeepAlive(
      int64_t lease_id, std::chrono::milliseconds interval,
      std::function<void(const etcdpb::LeaseKeepAliveResponse&)> on_response,
      std::function<void(Status)> on_end) = 0;

  // Opens a bidirectional Watch/Watch stream and sends `create`. Every
  // WatchResponse (the "created" one, events, progress, a cancel with
  // compact_revision after compaction) goes to `on_response`. `on_end` runs
  // once if the stream ends (connection lost, etcd error, etcd cancelled the
  // watch); nothing runs after it. The caller re-lists and watches again.
  virtual EtcdStreamPtr Watch(const etcdpb::WatchCreateRequest& create,
                              std::function<void(const etcdpb::WatchResponse&)> on_response,
                              std::function<void(Status)> on_end) = 0;

  // The etcd in use (or last tried), for logs and status: "http(s)://HOST:PORT".
  virtual const std::string& current_endpoint() const = 0;

  // Fails every pending call (CANCELLED) and ends every stream, then closes
  // the connection; the loop can end once it returns. The EtcdKv may be
  // destroyed right after.
  virtual void Close() = 0;
};

}  // namespace podless::runtime
