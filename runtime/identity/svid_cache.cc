#include "runtime/identity/svid_cache.h"

namespace podless::runtime {

workloads::SvidPtr SvidCache::Use(const std::string& spiffe_id) {
  auto it = index_.find(spiffe_id);
  if (it == index_.end()) return nullptr;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->second;
}

workloads::SvidPtr SvidCache::Peek(const std::string& spiffe_id) const {
  auto it = index_.find(spiffe_id);
  return it == index_.end() ? nullptr : it->second->second;
}

void SvidCache::Put(const std::string& spiffe_id, workloads::SvidPtr svid) {
  auto it = index_.find(spiffe_id);
  if (it != index_.end()) {
    it->second->second = std::move(svid);
    order_.splice(order_.begin(), order_, it->second);
    return;
  }
  order_.emplace_front(spiffe_id, std::move(svid));
  index_.emplace(spiffe_id, order_.begin());
  while (index_.size() > capacity_) {
    index_.erase(order_.back().first);
    order_.pop_back();
    ++evictions_;
  }
}

}  // namespace podless::runtime
