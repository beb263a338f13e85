// CertificateIssuer: issues X.509-SVIDs on worker threads, so that key
// generation and signing never run on the loop that serves traffic.
//
// Issue() is called on the loop; the work runs on one of `threads` workers
// (CertificateAuthority::IssueSvid is thread-safe); the result comes back to
// the loop through a uv_async handle and the callback runs there. Requests
// for a SPIFFE ID already in flight join it (one issuance, every caller
// told). Destroying the issuer stops and joins the workers; callbacks of
// unfinished requests are dropped unrun.
//
// The loop never waits for a worker: results come back through a lock-free
// list, and requests are handed over with try_lock (a busy lock leaves them
// in a loop-side backlog, handed over on a 1 ms retry timer). A worker at
// nice +10 that the scheduler preempts inside its critical section could
// otherwise stall the loop until it runs again. (This guards against that
// priority inversion; tests/bench/svid_loop_bench did not tell the two
// designs apart on this machine, where the loop's tail under load comes
// from CPU contention.)
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "workloads/certificate_authority.h"
#include "workloads/result.h"

namespace podless::runtime {

class CertificateIssuer {
 public:
  using Callback = std::function<void(Result<workloads::SvidPtr>)>;

  CertificateIssuer(uv_loop_t* loop, const workloads::CertificateAuthority& ca,
                    std::chrono::seconds ttl, size_t threads);
  ~CertificateIssuer();
  CertificateIssuer(const CertificateIssuer&) = delete;
  CertificateIssuer& operator=(const CertificateIssuer&) = delete;

  void Issue(const std::string& spiffe_id, Callback done);
  // Issuances queued or running.
  size_t in_flight() const { return waiters_.size(); }
  // The workers' nice value (see Work()).
  static constexpr int kWorkerNice = 10;

 private:
  // One finished issuance, pushed by a worker onto done_ (a lock-free stack).
  struct Done {
    std::string spiffe_id;
    Result<workloads::SvidPtr> svid;
    Done* next = nullptr;
  };

  void Work();
  void HandOver();  // loop: moves backlog_ to queue_ if the lock is free
  void Deliver();   // loop: runs the callbacks of finished issuances

  const workloads::CertificateAuthority& ca_;
  const std::chrono::seconds ttl_;
  proxy::AsyncHandle async_;
  proxy::TimerPtr retry_;
  std::map<std::string, std::vector<Callback>> waiters_;  // loop thread only
  std::vector<std::string> backlog_;                      // loop thread only

  std::mutex mutex_;  // guards the three below; the loop only try_locks it
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  std::atomic<Done*> done_{nullptr};  // newest first
  std::vector<std::thread> workers_;
};

}  // namespace podless::runtime
