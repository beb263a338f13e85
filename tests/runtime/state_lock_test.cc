#include "runtime/state/state_lock.h"

#include <doctest.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"

namespace podless::runtime {
namespace {

using namespace std::chrono_literals;

// A worker thread turning its own loop the way ProxyWorkers runs one, until
// `stop` is set; its async handle counts how often it ran.
struct TestWorker {
  proxy::UvLoop loop;
  proxy::AsyncHandle async;
  std::atomic<int> runs{0};
  std::atomic<bool> stop{false};
  std::thread thread;

  explicit TestWorker(StateLock& lock) {
    uv_async_init(loop.get(), async.get(), [](uv_async_t* handle) {
      auto* self = static_cast<TestWorker*>(handle->data);
      self->runs.fetch_add(1);
      if (self->stop.load()) self->async.Close();
    });
    async->data = this;
    thread = std::thread([this, &lock] {
      lock.Lock(LockMode::kShared);
      while (RunLoopTurn(loop.get(), lock, LockMode::kShared) != 0) {
      }
      lock.Unlock(LockMode::kShared);
    });
  }
  void Stop() {
    stop.store(true);
    uv_async_send(async.get());
    thread.join();
  }
};

bool WaitFor(const std::atomic<int>& value, int at_least) {
  for (int i = 0; i < 400 && value.load() < at_least; ++i) std::this_thread::sleep_for(5ms);
  return value.load() >= at_least;
}

TEST_CASE("StateLock: a worker's callbacks wait while the main thread holds the lock") {
  StateLock lock;
  lock.Lock(LockMode::kExclusive);
  TestWorker worker(lock);

  uv_async_send(worker.async.get());
  std::this_thread::sleep_for(100ms);
  CHECK(worker.runs.load() == 0);  // woken, but parked on the lock

  lock.Unlock(LockMode::kExclusive);
  CHECK(WaitFor(worker.runs, 1));
  lock.Lock(LockMode::kExclusive);

  lock.Unlock(LockMode::kExclusive);
  worker.Stop();
}

TEST_CASE("StateLock: the main loop's turn lets workers run while it waits for events") {
  StateLock lock;
  lock.Lock(LockMode::kExclusive);
  TestWorker worker(lock);
  proxy::UvLoop main_loop;
  bool fired = false;
  proxy::Timer timer(main_loop.get(), [&fired] { fired = true; });
  timer.Start(200);

  uv_async_send(worker.async.get());
  // One turn of the main loop: it waits 200 ms for the timer, unlocked, so
  // the worker runs meanwhile; the timer's callback then runs locked.
  while (!fired) RunLoopTurn(main_loop.get(), lock, LockMode::kExclusive);
  CHECK(worker.runs.load() >= 1);

  lock.Unlock(LockMode::kExclusive);
  worker.Stop();
}

TEST_CASE("StateLock: two workers run side by side; a waiting writer goes before new readers") {
  StateLock lock;
  // Idle workers park in poll() without the lock: nothing below waits on them.
  TestWorker a(lock);
  TestWorker b(lock);
  // Both hold the lock shared at once: each callback waits for the other.
  std::atomic<int> inside{0};
  std::atomic<int> both{0};
  auto rendezvous = [&] {
    lock.Lock(LockMode::kShared);
    inside.fetch_add(1);
    for (int i = 0; i < 400 && inside.load() < 2; ++i) std::this_thread::sleep_for(1ms);
    if (inside.load() == 2) both.fetch_add(1);
    lock.Unlock(LockMode::kShared);
  };
  std::thread r1(rendezvous);
  std::thread r2(rendezvous);
  r1.join();
  r2.join();
  CHECK(both.load() == 2);

  // A reader holds the lock; a writer waits; a new reader must not overtake it.
  lock.Lock(LockMode::kShared);
  std::atomic<int> order{0};
  std::atomic<int> writer_at{0};
  std::atomic<int> reader_at{0};
  std::thread writer([&] {
    lock.Lock(LockMode::kExclusive);
    writer_at.store(++order);
    lock.Unlock(LockMode::kExclusive);
  });
  std::this_thread::sleep_for(50ms);  // the writer is queued
  std::thread reader([&] {
    lock.Lock(LockMode::kShared);
    reader_at.store(++order);
    lock.Unlock(LockMode::kShared);
  });
  std::this_thread::sleep_for(50ms);
  lock.Unlock(LockMode::kShared);
  writer.join();
  reader.join();
  CHECK(writer_at.load() == 1);
  CHECK(reader_at.load() == 2);

  a.Stop();
  b.Stop();
}

}  // namespace
}  // namespace podless::runtime
