#include "runtime/certificate_issuer.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "workloads/spiffe_id.h"

namespace podless::runtime {

CertificateIssuer::CertificateIssuer(uv_loop_t* loop, const workloads::CertificateAuthority& ca,
                                     std::chrono::seconds ttl, size_t threads)
    : ca_(ca), ttl_(ttl) {
  uv_async_init(loop, async_.get(), [](uv_async_t* handle) {
    if (handle->data != nullptr) static_cast<CertificateIssuer*>(handle->data)->Deliver();
  });
  async_->data = this;
  // An idle issuer must not keep the loop alive.
  uv_unref(async_.handle());
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
}

void CertificateIssuer::Issue(const std::string& spiffe_id, Callback done) {
  auto [it, first] = waiters_.try_emplace(spiffe_id);
  it->second.push_back(std::move(done));
  if (!first) return;  // already in flight
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(spiffe_id);
  }
  wake_.notify_one();
}

void CertificateIssuer::Work() {
  // Issuance is background work: at nice +10 a worker yields its core to the
  // loop serving traffic whenever that loop wakes (CFS weights 110 vs 1024),
  // yet still uses every idle core. Without it, workers on all cores delay
  // the loop's wakeups by milliseconds (tests/bench/svid_loop_bench). Linux
  // applies setpriority to the calling thread when given its thread id; a
  // failure (e.g. a seccomp policy) only costs that preference.
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
    Result<workloads::SvidPtr> svid = MakeError(ErrorCode::kInternal, "not issued");
    auto id = workloads::SpiffeId::Parse(spiffe_id);
    if (!id) {
      svid = id.error();
    } else {
      svid = ca_.IssueSvid(*id, ttl_);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.push_back({std::move(spiffe_id), std::move(svid)});
    }
    uv_async_send(async_.get());
  }
}

void CertificateIssuer::Deliver() {
  std::vector<Done> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done.swap(done_);
  }
  for (Done& result : done) {
    auto it = waiters_.find(result.spiffe_id);
    if (it == waiters_.end()) continue;
    std::vector<Callback> callbacks = std::move(it->second);
    waiters_.erase(it);
    for (Callback& callback : callbacks) callback(result.svid);
  }
}

}  // namespace podless::runtime
