#include "runtime/state/state_lock.h"

#include <poll.h>

#include <cstdio>
#include <cstdlib>

namespace podless::runtime {

StateLock::StateLock() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  // glibc's default prefers readers: two workers whose turns overlap could
  // keep the main loop out for as long as traffic lasts.
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  if (pthread_rwlock_init(&rwlock_, &attr) != 0) {
    std::fputs("podless: cannot create the state lock\n", stderr);
    std::abort();
  }
  pthread_rwlockattr_destroy(&attr);
}

StateLock::~StateLock() { pthread_rwlock_destroy(&rwlock_); }

void StateLock::Lock(LockMode mode) {
  if (mode == LockMode::kExclusive) {
    pthread_rwlock_wrlock(&rwlock_);
  } else {
    pthread_rwlock_rdlock(&rwlock_);
  }
}

void StateLock::Unlock(LockMode) { pthread_rwlock_unlock(&rwlock_); }

// libuv's way to embed a loop (uv_backend_fd/uv_backend_timeout): poll the
// loop's epoll descriptor ourselves, unlocked, then let uv_run(UV_RUN_NOWAIT)
// run what is ready. The timeout is read under the lock, since the loop's
// timers may be changed by the main thread while a worker is parked (which
// wakes the worker through its async handle).
int RunLoopTurn(uv_loop_t* loop, StateLock& lock, LockMode mode) {
  const int timeout = uv_backend_timeout(loop);
  if (timeout != 0) {
    pollfd events{uv_backend_fd(loop), POLLIN, 0};
    lock.Unlock(mode);
    // EINTR (a signal): run the turn; libuv's signal handling is in it.
    ::poll(&events, 1, timeout);
    lock.Lock(mode);
  }
  return uv_run(loop, UV_RUN_NOWAIT);
}

}  // namespace podless::runtime
