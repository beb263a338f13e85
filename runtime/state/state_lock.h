// StateLock: how the proxy's worker threads (--workers) share the agent's
// state with the main loop, which owns it.
//
// The main thread holds the lock exclusively whenever it is not waiting for
// events; a worker holds it shared while it runs its loop's callbacks. So a
// worker reads the Agent's tables only while the main loop is parked between
// turns (the same guarantee the single-loop proxy had: state changes between
// callbacks, never during one), workers run their callbacks side by side,
// and the main thread may touch a worker's loop only while that worker is
// parked (it then wakes it: see ProxyWorkers).
//
// Writers are preferred: a main-loop turn waits for the workers' current
// turns to end, never for a stream of new ones.
//
// The data plane never waits for the disk: the main thread opens a
// ReadersWindow (below) while it prepares a change and writes it, and holds
// the lock exclusively only to publish it, which costs O(objects changed)
// and no I/O (Agent::ApplyObjects).
//
//   StateLock lock;
//   lock.Lock(LockMode::kExclusive);                 // the main thread, at start
//   while (RunLoopTurn(loop, lock, LockMode::kExclusive) != 0) {}
#pragma once

#include <pthread.h>
#include <uv.h>

namespace podless::runtime {

enum class LockMode { kExclusive, kShared };

class StateLock {
 public:
  StateLock();
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

  void Lock(LockMode mode);
  void Unlock(LockMode mode);

 private:
  pthread_rwlock_t rwlock_;
};

// Lets the threads that share the state run while their owner, who holds
// `lock` exclusively, does work that changes nothing they read: preparing a
// change and writing it to disk (Agent). The lock is released for the
// object's lifetime, or until Close(), and taken exclusively again after.
// A null lock: no other thread reads, nothing to do.
class ReadersWindow {
 public:
  explicit ReadersWindow(StateLock* lock) : lock_(lock) {
    if (lock_ != nullptr) lock_->Unlock(LockMode::kExclusive);
  }
  ~ReadersWindow() { Close(); }
  ReadersWindow(const ReadersWindow&) = delete;
  ReadersWindow& operator=(const ReadersWindow&) = delete;

  // Waits for the readers' current turns to end and takes the lock back.
  void Close() {
    if (lock_ != nullptr) lock_->Lock(LockMode::kExclusive);
    lock_ = nullptr;
  }

 private:
  StateLock* lock_;
};

// One turn of `loop` run by a thread that shares the state: waits for the
// loop's next event or timer with `lock` released, then runs every ready
// callback holding it. The caller holds `lock` in `mode` before and after.
// Returns what uv_run returns: 0 once the loop has nothing left to do.
int RunLoopTurn(uv_loop_t* loop, StateLock& lock, LockMode mode);

}  // namespace podless::runtime
