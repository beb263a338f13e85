// EtcdClient: an asynchronous etcd v3 client on the agent's libuv loop.
//
// etcd's v3 API is gRPC over HTTP/2: h2c for http:// endpoints, TLS (ALPN
// h2, etcd's certificate checked against --etcd-ca and the endpoint's host,
// a client certificate when given) for https:// (runtime/etcd/etcd_tls.h).
// podless links no gRPC
// library (libgrpc++ pulls in system OpenSSL), so this is gRPC written on
// nghttp2 + protobuf, with the request and response types generated from
// etcd's published .proto files (etcdserverpb/rpc.proto).
//
// One HTTP/2 connection to one endpoint at a time; every call is a stream on
// it. When the connection fails, pending unary calls fail with UNAVAILABLE,
// streams (watches, lease keep-alives) end with UNAVAILABLE, and the next call
// reconnects, trying the endpoints in turn. Callers own retry policy: the
// cluster layer re-lists and re-watches (runtime/cluster/cluster.h).
//
// Every callback runs on the loop, never synchronously inside the call that
// started it, and never after the client (or the stream handle) is gone.
// Every call has a deadline (grpc-timeout and a local timer); a connect has
// one too. Nothing here throws.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "runtime/etcd/etcd_kv.h"
#include "runtime/etcd/etcd_tls.h"
#include "workloads/result.h"

namespace podless::runtime {

struct EtcdOptions {
  // "http://HOST:PORT" each, or "https://HOST:PORT" each (not mixed).
  std::vector<std::string> endpoints;
  // The TLS handshake counts against it too.
  std::chrono::milliseconds connect_timeout{2000};
  // Default deadline of a unary call.
  std::chrono::milliseconds call_timeout{5000};
  // https://: the CA bundle (required) and the client certificate and key
  // (optional, together), read once by Create (CheckEtcdTlsFlags has the rules).
  EtcdTlsFiles tls = {};
};

class EtcdClient;
using EtcdClientPtr = std::unique_ptr<EtcdClient>;

class EtcdClient : public EtcdKv {
 public:
  // Checks the endpoints (INVALID_ARGUMENT naming a bad one) and the TLS
  // flags, and reads the TLS files (errors name the flag and the file);
  // connects on the first call. A failed TLS handshake (etcd's certificate not
  // signed by --etcd-ca or not naming the endpoint's host, etcd refusing the
  // client certificate) fails the connect like a refused connection:
  // UNAVAILABLE naming the endpoint and the reason, and the next call tries
  // again.
  static Result<EtcdClientPtr> Create(uv_loop_t* loop, EtcdOptions options);
  virtual ~EtcdClient() = default;

  // The calls of EtcdKv (runtime/etcd/etcd_kv.h) go over gRPC on that connection;
  // destroying a stream handle resets its HTTP/2 stream (RST_STREAM CANCEL).

  // True while an HTTP/2 connection to an endpoint is up.
  virtual bool connected() const = 0;
};

// Adds to `txn` the condition "`key` does not exist" (its create_revision is
// 0): the transaction's success branch runs only for the first writer.
void CompareAbsent(etcdpb::TxnRequest& txn, const std::string& key);

// Keys from `prefix`: the range_end that selects every key starting with it
// (etcd's "prefix + 1" rule; "\0" when the prefix is all 0xff bytes).
std::string EtcdPrefixEnd(const std::string& prefix);

}  // namespace podless::runtime
