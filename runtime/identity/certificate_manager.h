// CertificateManager: the node's X.509-SVIDs, one per identity (SPIFFE ID):
// issued on first use, cached, re-issued before they expire (as ztunnel's
// SecretManager). It knows nothing of workloads or replicas: callers name
// the identity (Agent::SpiffeIdFor, ProxyDirectory's LocalReplica), so it
// depends only on the CA, the cache and the issuer.
//
// Two ways in, both on the loop thread only:
// - Certificate() issues inline (key generation and signing on the loop),
//   for the API's occasional request (GetCertificate, the Workload API).
// - CertificateAsync() never blocks the loop: through UseIssuer's worker
//   threads when set (the Node's), inline without one (unit tests).
//
// Refresh policy. An SVID is good until half of the configured lifetime
// (--svid-ttl) is left: Certificate() re-issues from that point on.
// CertificateAsync() hands out the cached SVID past that point too, while
// its successor is issued in the background, and waits for a new one only
// when less than a minute of the old one is left; its refresh point adds a
// jitter of up to a tenth of the lifetime (derived from the serial), so
// certificates issued together are not all re-issued in the same instant.
// Both count from not_after, not not_before: not_before is backdated for
// clock skew, which would move the half-life mark early.
//
// The cache keeps the --svid-cache-size most recently used (SvidCache);
// dropping one is always safe (a connection holding it keeps it alive).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/identity/svid_cache.h"
#include "workloads/certificate_authority.h"
#include "workloads/result.h"
#include "workloads/svid.h"

namespace podless::runtime {

class CertificateIssuer;
class CertificateManager;
using CertificateManagerPtr = std::unique_ptr<CertificateManager>;

class CertificateManager {
 public:
  using Callback = std::function<void(Result<workloads::SvidPtr>)>;
  // Unix seconds now; injected by tests.
  using Clock = std::function<int64_t()>;

  // `ca` must outlive the manager. `cache_size` 0 is taken as 1.
  CertificateManager(const workloads::CertificateAuthority& ca, std::chrono::seconds ttl,
                     size_t cache_size);
  ~CertificateManager();
  CertificateManager(const CertificateManager&) = delete;
  CertificateManager& operator=(const CertificateManager&) = delete;

  // The SVID of `spiffe_id`, from the cache until its refresh point, else
  // issued inline (and cached).
  Result<workloads::SvidPtr> Certificate(const std::string& spiffe_id);
  // The same without blocking the loop: `done` runs at once with a cached
  // SVID, otherwise on the loop once the issuer's workers made one (inline,
  // before returning, without an issuer). See the refresh policy above.
  void CertificateAsync(const std::string& spiffe_id, Callback done);
  // Where CertificateAsync issues (the Node's; null: inline). The issuer
  // issues with the same CA and lifetime. Its unfinished callbacks point at
  // this manager, so it must go first (destroying it drops them); and it is
  // not used once gone: nothing may ask for an SVID after that, or
  // UseIssuer(nullptr) is called first.
  void UseIssuer(CertificateIssuer* issuer) { issuer_ = issuer; }

  // The cached SVID of `spiffe_id`, or null, without touching the LRU order
  // nor issuing (for status listings).
  workloads::SvidPtr Cached(const std::string& spiffe_id) const { return cache_.Peek(spiffe_id); }
  // Every cached SVID, most recently used first (for /config_dump).
  const SvidCache& cache() const { return cache_; }

  // Unix seconds from which Certificate() re-issues `svid`: half-life.
  int64_t RefreshAt(const workloads::Svid& svid) const;
  // Unix seconds from which CertificateAsync() re-issues `svid` in the
  // background: half-life plus the jitter, within [0, ttl / 10].
  int64_t BackgroundRefreshAt(const workloads::Svid& svid) const;

  std::chrono::seconds ttl() const { return ttl_; }
  // SVIDs issued; one that several CertificateAsync calls joined counts once.
  uint64_t issued() const { return issued_; }
  size_t cached() const { return cache_.size(); }
  uint64_t evicted() const { return cache_.evictions(); }
  // Called after every issuance, once the new SVID is cached (the metrics
  // counters read issued() and evicted() then).
  void OnIssued(std::function<void()> callback) { on_issued_ = std::move(callback); }

  void SetClock(Clock clock) { clock_ = std::move(clock); }

 private:
  // How close to expiry CertificateAsync stops handing out the cached SVID
  // and waits for its successor.
  static constexpr int64_t kExpiryMarginSeconds = 60;

  void IssueOnWorkers(const std::string& spiffe_id, Callback then);
  void Store(const std::string& spiffe_id, workloads::SvidPtr svid);

  const workloads::CertificateAuthority& ca_;
  const std::chrono::seconds ttl_;
  SvidCache cache_;  // by SPIFFE ID, bounded by --svid-cache-size
  CertificateIssuer* issuer_ = nullptr;
  uint64_t issued_ = 0;
  std::function<void()> on_issued_;
  Clock clock_;
};

}  // namespace podless::runtime
