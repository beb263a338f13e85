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

// One turn of `loop` run by a thread that shares the state: waits for the
// loop's next event or timer with `lock` released, then runs every ready
// callback holding it. The caller holds `lock` in `mode` before and after.
// Returns what uv_run returns: 0 once the loop has nothing left to do.
int RunLoopTurn(uv_loop_t* loop, StateLock& lock, LockMode mode);

}  // namespace podless::runtime
