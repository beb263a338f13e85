// ReplicaIndex: the agent's replicas by address, kept as runs of
// consecutive addresses. The pool hands a workload's replicas consecutive
// addresses (mostly), so a workload of a million replicas is a few entries,
// and scaling it up or down changes O(runs) entries, not O(replicas): the
// change is entered while the proxy's workers wait (StateLock exclusive), so
// its cost is their latency.
//
// An entry names the workload's stored version (its entry in the state
// store, which keeps its address while the key lives) and the ordinal of the
// run's first replica; ordinal i of a run starting at address a is at
// a + (i - first ordinal), which is addresses[i] of the workload.
//
//   ReplicaIndex::Staged runs = index.Stage(stored.addresses, kept);  // may throw bad_alloc
//   ... commit ...
//   index.Remove(old.addresses, kept);                                // noexcept
//   index.Add(&stored, runs);                                         // noexcept
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "runtime/state/state_store.h"

namespace podless::runtime {

// A replica as the agent indexes it: its workload and ordinal.
struct ReplicaRef {
  const StoredObject* workload = nullptr;
  uint32_t ordinal = 0;
};

class ReplicaIndex {
 public:
  struct Run {
    const StoredObject* workload = nullptr;
    uint32_t first_ordinal = 0;
    uint32_t count = 0;
  };
  using Map = std::map<uint32_t, Run>;  // by the run's first address
  // Entries made before a commit, moved in after it without allocating.
  using Staged = std::vector<Map::node_type>;

  std::optional<ReplicaRef> Find(uint32_t address) const;
  uint64_t size() const { return replicas_; }  // replicas, not runs
  size_t runs() const { return runs_.size(); }

  // The entries of ordinals [from, addresses.size()) of a workload version.
  // Allocates (std::bad_alloc propagates); changes nothing.
  static Staged Stage(const std::vector<uint32_t>& addresses, uint32_t from);
  // Enters staged runs for `workload`; allocates nothing.
  void Add(const StoredObject* workload, Staged& staged) noexcept;
  // Stage and Add in one step (loading the state, where a failure is fatal).
  void Insert(const StoredObject* workload, uint32_t from = 0);
  // Takes out ordinals [from, addresses.size()), `addresses` being those of
  // the version indexed; a run that starts before `from` is shortened in
  // place. Allocates nothing.
  void Remove(const std::vector<uint32_t>& addresses, uint32_t from) noexcept;

 private:
  Map runs_;
  uint64_t replicas_ = 0;
};

}  // namespace podless::runtime
