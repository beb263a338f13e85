#include "proxy/connection_limits.h"

#include <sys/resource.h>

#include <algorithm>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace podless::proxy {

bool SharedCounts::TryAcquire(uint32_t key, uint32_t limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint32_t& count = counts_[key];
  // A refused key has count >= limit > 0, so operator[] added no zero entry.
  if (limit > 0 && count >= limit) return false;
  ++count;
  return true;
}

void SharedCounts::Release(uint32_t key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = counts_.find(key);
  if (it == counts_.end()) {
    // A release without its acquire would let another connection past the
    // limit later: a bug that must not be papered over (STYLE.md).
    std::fprintf(stderr, "SharedCounts: release of key %u that holds no count\n", key);
    std::abort();
  }
  if (--it->second == 0) counts_.erase(it);
}

uint32_t SharedCounts::Count(uint32_t key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

size_t SharedCounts::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counts_.size();
}

CountSlot CountSlot::TryAcquire(std::shared_ptr<SharedCounts> counts, uint32_t key,
                                uint32_t limit) {
  if (counts == nullptr || !counts->TryAcquire(key, limit)) return CountSlot();
  return CountSlot(std::move(counts), key);
}

CountSlot::CountSlot(CountSlot&& other) noexcept
    : counts_(std::move(other.counts_)), key_(other.key_) {
  other.counts_ = nullptr;
}

CountSlot& CountSlot::operator=(CountSlot&& other) noexcept {
  if (this != &other) {
    Release();
    counts_ = std::move(other.counts_);
    other.counts_ = nullptr;
    key_ = other.key_;
  }
  return *this;
}

void CountSlot::Release() {
  if (counts_ == nullptr) return;
  std::shared_ptr<SharedCounts> counts = std::move(counts_);
  counts_ = nullptr;
  counts->Release(key_);
}

uint32_t PeerKey(uint32_t address) {
  if ((address >> 24) == 127) return 0x7f000000;  // loopback: the node's own users
  return address & 0xffffff00;
}

uint32_t DefaultMaxUnauthenticatedConnections() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) return 16384;
  return static_cast<uint32_t>(std::max<uint64_t>(16, files.rlim_cur / 4));
}

}  // namespace podless::proxy
