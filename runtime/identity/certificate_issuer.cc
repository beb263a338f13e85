#include "runtime/identity/certificate_issuer.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "proxy/base/log.h"
#include "workloads/spiffe_id.h"

namespace podless::runtime {

CertificateIssuer::CertificateIssuer(uv_loop_t* loop, const workloads::CertificateAuthority& ca,
                                     std::chrono::seconds ttl, size_t threads)
    : ca_(ca), ttl_(ttl) {
  // The async handle keeps its trampoline: it is woken from the workers'
  // threads, and a std::function in a Timer-like owner would add nothing.
  int rc = uv_async_init(loop, async_.get(), [](uv_async_t* handle) {
    if (handle->data != nullptr) static_cast<CertificateIssuer*>(handle->data)->Deliver();
  });
  if (rc != 0) {
    // Out of descriptors for the loop's wakeup: issued certificates could
    // never be delivered, and every caller would wait forever.
    proxy::Log(proxy::LogLevel::kError, "certificates",
               std::string("cannot create the issuer's wakeup: ") + uv_strerror(rc));
    std::abort();
  }
  async_->data = this;
  // An idle issuer must not keep the loop alive.
  uv_unref(async_.handle());
  retry_ = std::make_unique<proxy::Timer>(loop, [this] { HandOver(); });
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i)
    workers_.emplace_back([this] { Work(); });
}

CertificateIssuer::~CertificateIssuer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
  async_->data = nullptr;
  for (Done* done = done_.exchange(nullptr); done != nullptr;)
    delete std::exchange(done, done->next);
}

void CertificateIssuer::Issue(const std::string& spiffe_id, Callback done) {
  auto [it, first] = waiters_.try_emplace(spiffe_id);
  it->second.push_back(std::move(done));
  if (!first) return;  // already in flight
  backlog_.push_back(spiffe_id);
  HandOver();
}

void CertificateIssuer::HandOver() {
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) {
    if (!retry_->IsActive()) retry_->Start(1);
    return;
  }
  const size_t handed = backlog_.size();
  for (std::string& id : backlog_) queue_.push_back(std::move(id));
  backlog_.clear();
  lock.unlock();
  retry_->Stop();
  if (handed == 1) {
    wake_.notify_one();
  } else if (handed > 1) {
    wake_.notify_all();
  }
}

void CertificateIssuer::Work() {
  // Issuance is background work: at nice +10 a worker yields its core to the
  // loop serving traffic whenever that loop wakes (CFS weights 110 vs 1024),
  // yet still uses every idle core. Linux applies setpriority to the calling
  // thread when given its thread id; a failure (e.g. a seccomp policy) only
  // costs that preference.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kWorkerNice);
  for (;;) {
    std::string spiffe_id;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      spiffe_id = std::move(queue_.front());
      queue_.pop_front();
    }
    auto* done = new Done{std::move(spiffe_id), MakeError(ErrorCode::kInternal, "not issued")};
    auto id = workloads::SpiffeId::Parse(done->spiffe_id);
    if (!id) {
      done->svid = id.error();
    } else {
      done->svid = ca_.IssueSvid(*id, ttl_);
    }
    done->next = done_.load(std::memory_order_relaxed);
    while (!done_.compare_exchange_weak(done->next, done, std::memory_order_release,
                                        std::memory_order_relaxed)) {
    }
    (void)uv_async_send(async_.get());  // Always 0: the handle lives until the workers end.
  }
}

void CertificateIssuer::Deliver() {
  // Take the whole list at once; it is newest first, so reverse it.
  Done* list = done_.exchange(nullptr, std::memory_order_acquire);
  std::vector<std::unique_ptr<Done>> finished;
  for (; list != nullptr;) finished.emplace_back(std::exchange(list, list->next));
  std::reverse(finished.begin(), finished.end());
  for (auto& result : finished) {
    auto it = waiters_.find(result->spiffe_id);
    if (it == waiters_.end()) continue;
    std::vector<Callback> callbacks = std::move(it->second);
    waiters_.erase(it);
    for (Callback& callback : callbacks) callback(result->svid);
  }
}

}  // namespace podless::runtime
