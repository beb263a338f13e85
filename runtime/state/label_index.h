// LabelIndex: the agent's workloads by (namespace, label key, value), so a
// Service's selection costs the shortest list its selector names instead of
// a scan of its namespace (a million workloads: ~130 ms on the first
// connection after every change, per worker).
//
// A list is kept per label, keyed by a 64-bit hash of (namespace, key,
// value); a collision only adds candidates, which Select filters with the
// selector itself. A change is computed in full off the lock the workers read
// under (Prepare builds each touched list anew) and applied under it without
// allocating (Apply swaps the lists in), like the rest of a commit (see
// Agent::ApplyObjects).
//
//   LabelIndex::Change change;
//   change.Remove(old_entry, ns, old_labels);
//   change.Add(new_entry, ns, new_labels);
//   LabelIndex::Prepared prepared = index.Prepare(change);  // may throw bad_alloc
//   index.Apply(prepared);                                  // noexcept
#pragma once

#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

#include "runtime/state/state_store.h"
#include "workloads/model.h"

namespace podless::runtime {

class LabelIndex {
 public:
  using List = std::vector<const StoredObject*>;

  // The workloads of `ns` that have every label of `selector`, in the
  // store's order (by name); none for an empty selector (as Kubernetes: a Service
  // without a selector has no endpoints of its own).
  List Select(std::string_view ns, const workloads::Labels& selector) const;

  // Entries added and taken out by one commit, by list.
  class Change {
   public:
    void Remove(const StoredObject* entry, std::string_view ns, const workloads::Labels& labels);
    void Add(const StoredObject* entry, std::string_view ns, const workloads::Labels& labels);
    bool empty() const { return lists_.empty(); }

   private:
    friend class LabelIndex;
    struct Edit {
      List removed;
      List added;
    };
    std::map<uint64_t, Edit> lists_;
  };

  // The touched lists as they will be; reads the index, changes nothing.
  class Prepared {
   private:
    friend class LabelIndex;
    struct Replacement {
      uint64_t key = 0;
      List list;
      std::map<uint64_t, List>::node_type node;  // a list the index does not have yet
    };
    std::vector<Replacement> lists_;
  };
  Prepared Prepare(const Change& change) const;
  void Apply(Prepared& prepared) noexcept;
  // Prepare and Apply in one step, where allocating under the lock is fine
  // (loading the state, the cluster's mirror).
  void Update(const Change& change);

  size_t lists() const { return lists_.size(); }

 private:
  static uint64_t KeyOf(std::string_view ns, std::string_view key, std::string_view value);
  std::map<uint64_t, List> lists_;
};

}  // namespace podless::runtime
