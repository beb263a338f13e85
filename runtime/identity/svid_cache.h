// SvidCache: the agent's issued X.509-SVIDs by SPIFFE ID, bounded by count
// with least-recently-used eviction.
//
// A node hosting a million workloads must not hold a million private keys
// because each was used once: an SVID costs about 1.4 KiB (the EVP_PKEY and
// the DER chain; measured over 20,000), so the cache keeps the `capacity`
// most recently used (--svid-cache-size, 100,000: at most ~140 MiB) and
// forgets the rest. Evicting is always safe: a connection that holds the
// SVID keeps it alive (SvidPtr is shared), and the next use issues a fresh
// one off the loop. Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>

#include "workloads/svid.h"

namespace podless::runtime {

class SvidCache {
 public:
  explicit SvidCache(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // The SVID for `spiffe_id`, marked most recently used; null if absent.
  workloads::SvidPtr Use(const std::string& spiffe_id);
  // The same without touching the order (for status listings).
  workloads::SvidPtr Peek(const std::string& spiffe_id) const;
  // Stores (or replaces) an SVID as the most recently used, evicting the
  // least recently used beyond capacity.
  void Put(const std::string& spiffe_id, workloads::SvidPtr svid);

  size_t size() const { return index_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t evictions() const { return evictions_; }

  // Most recently used first.
  using Entry = std::pair<std::string, workloads::SvidPtr>;
  std::list<Entry>::const_iterator begin() const { return order_.begin(); }
  std::list<Entry>::const_iterator end() const { return order_.end(); }

 private:
  const size_t capacity_;
  std::list<Entry> order_;  // most recently used at the front
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  uint64_t evictions_ = 0;
};

}  // namespace podless::runtime
