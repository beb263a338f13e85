// The seam between the proxy core and the runtime that owns the state.
//
// The runtime implements Directory; the proxy calls it on the loop thread,
// never from another thread, and never keeps a returned pointer past the
// callback that obtained it (the runtime may change its tables between loop
// turns). Everything the proxy needs to know about workloads, identities and
// policies comes through this interface, so the proxy knows no YAML, no
// gRPC and no state store, and tests substitute a FakeDirectory.
#pragma once

#include <openssl/x509.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "workloads/model.h"
#include "workloads/result.h"
#include "workloads/svid.h"

namespace podless::proxy {

// A workload replica this node hosts.
struct LocalReplica {
  uint32_t address = 0;                           // host byte order, e.g. 127.64.0.5
  std::string name;                               // replica name, "web-0"
  std::string workload;                           // workload name, "web"
  std::string ns;                                 // namespace, "shop"
  std::string spiffe_id;                          // "spiffe://cluster.local/ns/shop/sa/web"
  const workloads::WorkloadSpec* spec = nullptr;  // ports and app; never null
  const workloads::Labels* labels = nullptr;      // for policy selection; never null
};

// One place a connection may go to.
struct Endpoint {
  uint32_t address = 0;         // host byte order
  uint16_t port = 0;            // the port on the endpoint (a Service's targetPort resolved)
  std::string spiffe_id;        // expected identity; empty: not in the mesh, plain TCP
  std::string workload;         // for metrics; empty when unknown
  std::string ns;               // for metrics; empty when unknown
  bool local = false;           // hosted by this node: short-circuited in memory, no TLS
  uint16_t hbone_port = 15008;  // where the endpoint's node serves HBONE
};

// Where the process of an `exec` replica serves one of its ports.
struct ProcessTarget {
  uint32_t address = 0;  // host byte order, 127.0.0.1 in practice
  uint16_t port = 0;
  int netns_fd = -1;  // >= 0: the address is inside this network namespace
};

// Endpoints addressed by index, for destinations too large to list (a
// Service over a million replicas): the proxy asks only for the two it draws
// and the one it keeps. Valid until the callback that resolved it returns.
class EndpointSet {
 public:
  virtual ~EndpointSet() = default;
  virtual size_t size() const = 0;
  virtual uint32_t address(size_t i) const = 0;  // endpoint i's address (connection counts)
  virtual Endpoint at(size_t i) const = 0;
};

// Where an outbound connection goes: the ready endpoints of a Service VIP or
// name, or the single endpoint of a workload address.
struct Destination {
  // The `destination_service` metric label: "web.shop.svc.cluster.local" for
  // a Service, the host as the caller wrote it otherwise.
  std::string service;
  // Ready endpoints, listed in `endpoints` or, when `endpoint_set` is given,
  // by index there instead. The proxy picks one (power of two choices over
  // its open connection counts). None: resolved, but nothing ready (a clear
  // failure).
  std::vector<Endpoint> endpoints;
  std::unique_ptr<const EndpointSet> endpoint_set;

  size_t endpoint_count() const { return endpoint_set ? endpoint_set->size() : endpoints.size(); }
  uint32_t endpoint_address(size_t i) const {
    return endpoint_set ? endpoint_set->address(i) : endpoints[i].address;
  }
  Endpoint endpoint(size_t i) const { return endpoint_set ? endpoint_set->at(i) : endpoints[i]; }
};

class Directory {
 public:
  virtual ~Directory() = default;

  // The replica this node hosts at `address`, or null.
  virtual const LocalReplica* FindLocalReplica(uint32_t address) const = 0;

  // The replica's current SVID, issued on first use, cached and rotated by
  // the runtime, for TLS handshakes (server and client side). Never blocks
  // the loop on key generation and signing: `done` runs at once when an SVID
  // is at hand, otherwise later on the loop.
  virtual void CertificateAsync(const LocalReplica& replica,
                                std::function<void(Result<workloads::SvidPtr>)> done) = 0;

  // Trust anchors every peer chain must verify to, and the trust domain its
  // SPIFFE ID must belong to.
  virtual X509_STORE* TrustStore() const = 0;
  virtual const std::string& TrustDomain() const = 0;

  // The AuthorizationPolicies that select `replica` (its namespace and
  // labels); the proxy evaluates them with Authorize().
  virtual std::vector<const workloads::AuthorizationPolicy*> PoliciesFor(
      const LocalReplica& replica) const = 0;

  // Policies in this namespace apply to workloads of every namespace (Istio's
  // root namespace, `--root-namespace`); empty: none. PoliciesFor includes
  // them. The default: none.
  virtual std::string_view RootNamespace() const { return {}; }

  // Whether `port` of `replica` may be reached without HBONE: false when
  // the PeerAuthentication in force for it (Istio's inheritance: a policy
  // selecting the workload, per port first, then the namespace's, then the
  // root namespace's) is STRICT. The default: allowed.
  virtual bool PlaintextAllowed(const LocalReplica& replica, uint16_t port) const {
    (void)replica;
    (void)port;
    return true;
  }

  // Outbound: the replica whose proxy credentials these are, or null.
  virtual const LocalReplica* Authenticate(std::string_view user,
                                           std::string_view password) const = 0;

  // Outbound: `host` is a workload address, a Service VIP or a name
  // (NAME.NS.svc[.cluster.local]). kNotFound when nothing answers to it.
  virtual Result<Destination> Resolve(std::string_view host, uint16_t port) = 0;

  // `exec` workloads: where the supervised process serving `port` listens.
  // The namespace descriptor stays open until the callback returns. The
  // default: no process.
  virtual Result<ProcessTarget> ExecTarget(const LocalReplica& replica, uint16_t port) const {
    return MakeError(ErrorCode::kNotFound,
                     "no process serves port " + std::to_string(port) + " of " + replica.name);
  }
};

}  // namespace podless::proxy
