#include "runtime/state/replica_index.h"

namespace podless::runtime {

std::optional<ReplicaRef> ReplicaIndex::Find(uint32_t address) const {
  auto it = runs_.upper_bound(address);
  if (it == runs_.begin()) return std::nullopt;
  --it;
  const uint64_t offset = uint64_t{address} - it->first;
  if (offset >= it->second.count) return std::nullopt;
  return ReplicaRef{it->second.workload, it->second.first_ordinal + static_cast<uint32_t>(offset)};
}

ReplicaIndex::Staged ReplicaIndex::Stage(const std::vector<uint32_t>& addresses, uint32_t from) {
  Staged staged;
  Map scratch;  // makes the nodes; each is extracted at once
  const uint32_t end = static_cast<uint32_t>(addresses.size());
  for (uint32_t first = from; first < end;) {
    uint32_t last = first;
    while (last + 1 < end && addresses[last + 1] == addresses[last] + 1) ++last;
    staged.push_back(scratch.extract(
        scratch.emplace(addresses[first], Run{nullptr, first, last - first + 1}).first));
    first = last + 1;
  }
  return staged;
}

void ReplicaIndex::Add(const StoredObject* workload, Staged& staged) noexcept {
  for (Map::node_type& node : staged) {
    node.mapped().workload = workload;
    replicas_ += node.mapped().count;
    runs_.insert(std::move(node));
  }
  staged.clear();
}

void ReplicaIndex::Insert(const StoredObject* workload, uint32_t from) {
  Staged staged = Stage(workload->addresses, from);
  Add(workload, staged);
}

void ReplicaIndex::Remove(const std::vector<uint32_t>& addresses, uint32_t from) noexcept {
  const uint32_t end = static_cast<uint32_t>(addresses.size());
  for (uint32_t ordinal = from; ordinal < end;) {
    auto it = runs_.upper_bound(addresses[ordinal]);
    if (it == runs_.begin()) return;  // not indexed: nothing more of it is
    --it;
    Run& run = it->second;
    const uint32_t run_end = run.first_ordinal + run.count;
    if (addresses[ordinal] - it->first >= run.count || run_end <= ordinal) return;
    if (run.first_ordinal < from) {
      replicas_ -= run_end - from;
      run.count = from - run.first_ordinal;
    } else {
      replicas_ -= run.count;
      runs_.erase(it);
    }
    ordinal = run_end;
  }
}

}  // namespace podless::runtime
