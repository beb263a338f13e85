// SharedCounts and CountSlot: the per-key counts behind the per-peer and
// per-workload connection limits, shared by the proxy's worker threads.
#include "proxy/connection_limits.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace podless::proxy {
namespace {

TEST_CASE("SharedCounts: refuses an acquire at the limit, counting each key on its own") {
  SharedCounts counts;
  CHECK(counts.TryAcquire(7, 2));
  CHECK(counts.TryAcquire(7, 2));
  CHECK_FALSE(counts.TryAcquire(7, 2));
  CHECK(counts.Count(7) == 2);
  // Another key has its own count.
  CHECK(counts.TryAcquire(8, 2));
  CHECK(counts.Count(8) == 1);
  CHECK(counts.Count(9) == 0);
}

TEST_CASE("SharedCounts: a release frees a slot, and a key at 0 is forgotten") {
  SharedCounts counts;
  REQUIRE(counts.TryAcquire(7, 1));
  CHECK_FALSE(counts.TryAcquire(7, 1));
  counts.Release(7);
  CHECK(counts.Count(7) == 0);
  CHECK(counts.size() == 0);
  CHECK(counts.TryAcquire(7, 1));
  CHECK(counts.size() == 1);
}

TEST_CASE("SharedCounts: limit 0 always acquires and still counts") {
  SharedCounts counts;
  for (int i = 0; i < 1000; ++i) REQUIRE(counts.TryAcquire(7, 0));
  CHECK(counts.Count(7) == 1000);
  // A later caller with a limit sees the connections counted without one.
  CHECK_FALSE(counts.TryAcquire(7, 1000));
}

TEST_CASE("CountSlot: holds one count and releases it when destroyed") {
  auto counts = std::make_shared<SharedCounts>();
  {
    CountSlot slot = CountSlot::TryAcquire(counts, 7, 1);
    REQUIRE(slot);
    CHECK(slot.key() == 7);
    CHECK(counts->Count(7) == 1);
    CountSlot refused = CountSlot::TryAcquire(counts, 7, 1);
    CHECK_FALSE(refused);
  }
  // The refused, empty slot released nothing (else this would abort).
  CHECK(counts->Count(7) == 0);
}

TEST_CASE("CountSlot: a moved slot releases once, from its new owner") {
  auto counts = std::make_shared<SharedCounts>();
  CountSlot outer;
  {
    CountSlot inner = CountSlot::TryAcquire(counts, 7, 2);
    REQUIRE(inner);
    outer = std::move(inner);
    CHECK_FALSE(inner);  // NOLINT(bugprone-use-after-move): moved-from is empty
  }
  CHECK(counts->Count(7) == 1);
  CountSlot moved(std::move(outer));
  CHECK(counts->Count(7) == 1);
  moved.Release();
  CHECK(counts->Count(7) == 0);
  moved.Release();  // idempotent
  CHECK(counts->Count(7) == 0);
}

TEST_CASE("CountSlot: assigning over a held slot releases the old count") {
  auto counts = std::make_shared<SharedCounts>();
  CountSlot slot = CountSlot::TryAcquire(counts, 7, 0);
  REQUIRE(slot);
  slot = CountSlot::TryAcquire(counts, 8, 0);
  CHECK(counts->Count(7) == 0);
  CHECK(counts->Count(8) == 1);
  slot = CountSlot();
  CHECK(counts->Count(8) == 0);
}

TEST_CASE("CountSlot: keeps its ConnectionLimits alive after every other owner let go") {
  auto limits = std::make_shared<ConnectionLimits>();
  std::weak_ptr<ConnectionLimits> watch = limits;
  CountSlot slot = CountSlot::TryAcquire(
      CountsOf(limits, &ConnectionLimits::outbound_connections_per_workload), 7, 1);
  REQUIRE(slot);
  CHECK(limits->outbound_connections_per_workload.Count(7) == 1);
  CHECK(limits->hbone_connections_per_peer.Count(7) == 0);  // the other kind
  limits.reset();
  CHECK_FALSE(watch.expired());
  slot.Release();
  CHECK(watch.expired());
}

TEST_CASE("SharedCounts: threads acquiring and releasing at once never pass the limit") {
  constexpr uint32_t kLimit = 3;
  constexpr int kThreads = 8;
  constexpr int kRounds = 20'000;
  constexpr uint32_t kKeys = 2;
  SharedCounts counts;
  // What each key really holds, checked against the limit by the holders.
  std::atomic<uint32_t> holding[kKeys] = {};
  std::atomic<uint32_t> most[kKeys] = {};
  std::atomic<uint64_t> acquired{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<bool> over_limit{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        uint32_t key = static_cast<uint32_t>((t + i) % kKeys);
        if (!counts.TryAcquire(key, kLimit)) {
          ++refused;
          continue;
        }
        ++acquired;
        uint32_t now = ++holding[key];
        if (now > kLimit || counts.Count(key) > kLimit) over_limit = true;
        uint32_t seen = most[key].load();
        while (now > seen && !most[key].compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();  // hold it a moment, so others collide
        --holding[key];
        counts.Release(key);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK_FALSE(over_limit.load());
  for (uint32_t key = 0; key < kKeys; ++key) {
    CHECK(most[key].load() <= kLimit);
    CHECK(counts.Count(key) == 0);
  }
  CHECK(counts.size() == 0);
  CHECK(acquired.load() + refused.load() == uint64_t{kThreads} * kRounds);
  CHECK(acquired.load() > 0);
}

TEST_CASE("CountSlot: slots acquired on one thread and released on another end at 0") {
  // A worker hands a connection (and its slot) to nothing else today, but a
  // slot may well die on another thread than it was taken on: the counts
  // must not care.
  constexpr uint32_t kLimit = 16;
  constexpr int kSlots = 20'000;
  auto limits = std::make_shared<ConnectionLimits>();
  auto counts = CountsOf(limits, &ConnectionLimits::hbone_connections_per_peer);
  std::mutex mutex;
  std::deque<CountSlot> handed;
  std::atomic<bool> producing{true};
  std::atomic<int> taken{0};
  std::atomic<bool> over_limit{false};
  std::thread producer([&] {
    for (int i = 0; i < kSlots;) {
      CountSlot slot = CountSlot::TryAcquire(counts, 42, kLimit);
      if (!slot) {
        std::this_thread::yield();  // full: wait for the consumer
        continue;
      }
      if (counts->Count(42) > kLimit) over_limit = true;
      std::lock_guard<std::mutex> lock(mutex);
      handed.push_back(std::move(slot));
      ++i;
    }
    producing = false;
  });
  std::thread consumer([&] {
    while (true) {
      CountSlot slot;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (!handed.empty()) {
          slot = std::move(handed.front());
          handed.pop_front();
        }
      }
      if (slot) {
        ++taken;
        continue;  // destroyed here, on this thread
      }
      if (!producing) {
        std::lock_guard<std::mutex> lock(mutex);
        if (handed.empty()) break;
      }
      std::this_thread::yield();
    }
  });
  producer.join();
  consumer.join();
  CHECK_FALSE(over_limit.load());
  CHECK(taken.load() == kSlots);
  CHECK(counts->Count(42) == 0);
}

}  // namespace
}  // namespace podless::proxy
