#include "runtime/identity/certificate_manager.h"

#include <ctime>
#include <utility>

#include "runtime/identity/certificate_issuer.h"
#include "workloads/spiffe_id.h"

namespace podless::runtime {

CertificateManager::CertificateManager(const workloads::CertificateAuthority& ca,
                                       std::chrono::seconds ttl, size_t cache_size)
    : ca_(ca),
      ttl_(ttl),
      cache_(cache_size),
      clock_([] { return static_cast<int64_t>(std::time(nullptr)); }) {}

CertificateManager::~CertificateManager() = default;

int64_t CertificateManager::RefreshAt(const workloads::Svid& svid) const {
  return svid.not_after - ttl_.count() / 2;
}

int64_t CertificateManager::BackgroundRefreshAt(const workloads::Svid& svid) const {
  const int64_t ttl = ttl_.count();
  const int64_t jitter = static_cast<int64_t>(std::hash<std::string>{}(svid.serial_hex) %
                                              static_cast<uint64_t>(ttl / 10 + 1));
  return RefreshAt(svid) + jitter;
}

Result<workloads::SvidPtr> CertificateManager::Certificate(const std::string& spiffe_id) {
  if (workloads::SvidPtr cached = cache_.Use(spiffe_id)) {
    if (clock_() < RefreshAt(*cached)) return cached;
  }
  auto id = workloads::SpiffeId::Parse(spiffe_id);
  if (!id) return id.error();
  auto svid = ca_.IssueSvid(*id, ttl_);
  if (!svid) return svid.error();
  Store(spiffe_id, *svid);
  return *svid;
}

void CertificateManager::CertificateAsync(const std::string& spiffe_id, Callback done) {
  if (issuer_ == nullptr) return done(Certificate(spiffe_id));
  const int64_t now = clock_();
  const workloads::SvidPtr cached = cache_.Use(spiffe_id);
  if (!cached || cached->not_after <= now + kExpiryMarginSeconds) {
    return IssueOnWorkers(spiffe_id, std::move(done));
  }
  if (now >= BackgroundRefreshAt(*cached)) IssueOnWorkers(spiffe_id, nullptr);
  done(cached);
}

void CertificateManager::IssueOnWorkers(const std::string& spiffe_id, Callback then) {
  issuer_->Issue(spiffe_id,
                 [this, spiffe_id, then = std::move(then)](Result<workloads::SvidPtr> svid) {
                   // The issuer answers every request it joined with the
                   // same SVID, one callback after the other: it is stored
                   // and counted once.
                   if (svid && cache_.Peek(spiffe_id) != *svid) Store(spiffe_id, *svid);
                   if (then) then(std::move(svid));
                 });
}

void CertificateManager::Store(const std::string& spiffe_id, workloads::SvidPtr svid) {
  ++issued_;
  cache_.Put(spiffe_id, std::move(svid));
  if (on_issued_) on_issued_();
}

}  // namespace podless::runtime
