#include "runtime/cluster/cluster_view.h"

namespace podless::runtime {
namespace {

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

}  // namespace

Status ClusterView::Put(std::string_view key, std::string_view value) {
  if (StartsWith(key, keys_.Nodes())) {
    auto record = DecodeNodeRecord(value);
    if (!record)
      return MakeError(record.error().code, std::string(key) + ": " + record.error().message);
    nodes_[record->name] = std::move(*record);
    return {};
  }
  if (!StartsWith(key, keys_.Workloads())) return {};
  auto record = DecodeWorkloadRecord(value);
  if (!record)
    return MakeError(record.error().code, std::string(key) + ": " + record.error().message);
  if (record->node == self_) return {};
  Delete(key);
  RemoteWorkload workload;
  workload.not_ready.insert(record->not_ready.begin(), record->not_ready.end());
  workload.record = std::move(*record);
  auto [it, inserted] = workloads_.emplace(std::string(key), std::move(workload));
  Index(it->second);
  return {};
}

void ClusterView::Delete(std::string_view key) {
  if (StartsWith(key, keys_.Nodes())) {
    nodes_.erase(std::string(key.substr(keys_.Nodes().size())));
    return;
  }
  auto it = workloads_.find(std::string(key));
  if (it == workloads_.end()) return;
  Unindex(it->second);
  workloads_.erase(it);
}

void ClusterView::Clear() {
  nodes_.clear();
  workloads_.clear();
  by_address_.clear();
}

const NodeRecord* ClusterView::FindNode(const std::string& name) const {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

const RemoteReplica* ClusterView::FindReplica(uint32_t address) const {
  auto it = by_address_.find(address);
  return it == by_address_.end() ? nullptr : &it->second;
}

size_t ClusterView::WorkloadCountOf(const std::string& node) const {
  const std::string prefix = keys_.NodeWorkloads(node);
  size_t count = 0;
  for (auto it = workloads_.lower_bound(prefix);
       it != workloads_.end() && StartsWith(it->first, prefix); ++it) {
    ++count;
  }
  return count;
}

std::vector<const RemoteWorkload*> ClusterView::Select(const std::string& ns,
                                                       const workloads::Labels& selector) const {
  std::vector<const RemoteWorkload*> out;
  if (selector.empty()) return out;  // a Service without selector selects nothing
  for (const auto& [key, remote] : workloads_) {
    const workloads::Workload& workload = remote.record.workload;
    if (workload.metadata.ns == ns && workloads::LabelsMatch(selector, workload.metadata.labels)) {
      out.push_back(&remote);
    }
  }
  return out;
}

void ClusterView::Index(const RemoteWorkload& workload) {
  const auto& addresses = workload.record.addresses;
  for (uint32_t ordinal = 0; ordinal < addresses.size(); ++ordinal) {
    by_address_[addresses[ordinal]] = RemoteReplica{&workload, ordinal};
  }
}

void ClusterView::Unindex(const RemoteWorkload& workload) {
  for (uint32_t address : workload.record.addresses) {
    auto it = by_address_.find(address);
    if (it != by_address_.end() && it->second.workload == &workload) by_address_.erase(it);
  }
}

}  // namespace podless::runtime
