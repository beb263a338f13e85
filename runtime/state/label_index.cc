#include "runtime/state/label_index.h"

#include <algorithm>
#include <iterator>
#include <tuple>

namespace podless::runtime {

uint64_t LabelIndex::KeyOf(std::string_view ns, std::string_view key, std::string_view value) {
  // FNV-1a over the three parts, each ended by a byte no name holds.
  uint64_t hash = 14695981039346656037ull;
  for (std::string_view part : {ns, key, value}) {
    for (unsigned char c : part) hash = (hash ^ c) * 1099511628211ull;
    hash = (hash ^ 0xff) * 1099511628211ull;
  }
  return hash;
}

LabelIndex::List LabelIndex::Select(std::string_view ns, const workloads::Labels& selector) const {
  const List* shortest = nullptr;
  for (const auto& [key, value] : selector) {
    auto it = lists_.find(KeyOf(ns, key, value));
    if (it == lists_.end()) return {};  // nothing has this label
    if (shortest == nullptr || it->second.size() < shortest->size()) shortest = &it->second;
  }
  List out;
  if (shortest == nullptr) return out;  // an empty selector
  for (const StoredObject* entry : *shortest) {
    const workloads::ObjectMeta& meta = workloads::MetaOf(entry->object);
    if (meta.ns == ns && workloads::LabelsMatch(selector, meta.labels)) out.push_back(entry);
  }
  return out;
}

void LabelIndex::Change::Remove(const StoredObject* entry, std::string_view ns,
                                const workloads::Labels& labels) {
  for (const auto& [key, value] : labels) lists_[KeyOf(ns, key, value)].removed.push_back(entry);
}

void LabelIndex::Change::Add(const StoredObject* entry, std::string_view ns,
                             const workloads::Labels& labels) {
  for (const auto& [key, value] : labels) lists_[KeyOf(ns, key, value)].added.push_back(entry);
}

// Lists are kept in the store's order, (namespace, name), so a selection
// lists its workloads as the namespace does, whatever order they came in.
static bool InStoreOrder(const StoredObject* a, const StoredObject* b) {
  const workloads::ObjectMeta& x = workloads::MetaOf(a->object);
  const workloads::ObjectMeta& y = workloads::MetaOf(b->object);
  return std::tie(x.ns, x.name) < std::tie(y.ns, y.name);
}

LabelIndex::Prepared LabelIndex::Prepare(const Change& change) const {
  Prepared prepared;
  prepared.lists_.reserve(change.lists_.size());
  std::map<uint64_t, List> scratch;  // makes the nodes of new lists
  for (const auto& [key, edit] : change.lists_) {
    Prepared::Replacement replacement;
    replacement.key = key;
    auto it = lists_.find(key);
    const size_t now = it != lists_.end() ? it->second.size() : 0;
    List kept;
    kept.reserve(now);
    if (it != lists_.end()) {
      List removed = edit.removed;
      std::sort(removed.begin(), removed.end());
      for (const StoredObject* entry : it->second) {
        if (!std::binary_search(removed.begin(), removed.end(), entry)) kept.push_back(entry);
      }
    }
    List added = edit.added;
    std::sort(added.begin(), added.end(), InStoreOrder);
    List list;
    list.reserve(kept.size() + added.size());
    std::merge(kept.begin(), kept.end(), added.begin(), added.end(), std::back_inserter(list),
               InStoreOrder);
    if (it == lists_.end() && !list.empty()) {
      replacement.node = scratch.extract(scratch.emplace(key, std::move(list)).first);
    } else {
      replacement.list = std::move(list);
    }
    prepared.lists_.push_back(std::move(replacement));
  }
  return prepared;
}

void LabelIndex::Apply(Prepared& prepared) noexcept {
  for (Prepared::Replacement& replacement : prepared.lists_) {
    if (!replacement.node.empty()) {
      lists_.insert(std::move(replacement.node));
      continue;
    }
    auto it = lists_.find(replacement.key);
    if (it == lists_.end()) continue;  // a new list that stayed empty
    if (replacement.list.empty()) {
      lists_.erase(it);
    } else {
      it->second.swap(replacement.list);
    }
  }
  prepared.lists_.clear();
}

void LabelIndex::Update(const Change& change) {
  Prepared prepared = Prepare(change);
  Apply(prepared);
}

}  // namespace podless::runtime
