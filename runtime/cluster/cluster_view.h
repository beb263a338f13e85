// ClusterView: this node's picture of the rest of the cluster, built from
// etcd (a consistent read, then the watch from its revision): the other
// nodes and the workloads they host. Routing reads it (runtime/
// proxy_directory.h); the cluster layer (runtime/cluster/cluster.h) writes it.
//
// It holds other nodes' records only: this node's own workloads are the
// Agent's, which is authoritative for them. Cluster-wide objects (Services,
// AuthorizationPolicies) are mirrored into the Agent, not kept here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/cluster/cluster_records.h"
#include "workloads/result.h"

namespace podless::runtime {

struct RemoteWorkload {
  WorkloadRecord record;
  std::unordered_set<uint32_t> not_ready;  // ordinals
  bool ready(uint32_t ordinal) const { return !not_ready.contains(ordinal); }
};

struct RemoteReplica {
  const RemoteWorkload* workload = nullptr;
  uint32_t ordinal = 0;
};

class ClusterView {
 public:
  ClusterView(ClusterKeys keys, std::string self)
      : keys_(std::move(keys)), self_(std::move(self)) {}

  // A put or delete seen in etcd under nodes/ or workloads/ (other keys are
  // ignored). A record that does not decode is an error naming the key; the
  // view keeps its previous state for that key.
  Status Put(std::string_view key, std::string_view value);
  void Delete(std::string_view key);
  // Forgets everything (before a re-list).
  void Clear();

  const std::map<std::string, NodeRecord>& nodes() const { return nodes_; }  // self included
  const NodeRecord* FindNode(const std::string& name) const;
  // Other nodes' workloads, keyed by their etcd key (node/ns/name order).
  const std::map<std::string, RemoteWorkload>& workloads() const { return workloads_; }
  // The replica of another node at `address`, or null.
  const RemoteReplica* FindReplica(uint32_t address) const;
  size_t WorkloadCountOf(const std::string& node) const;
  // Other nodes' workloads in `ns` whose labels `selector` matches (a
  // Service's endpoints). A scan of the remote workloads: fine for the few
  // thousand a view holds; an index by namespace and label would replace it.
  std::vector<const RemoteWorkload*> Select(const std::string& ns,
                                            const workloads::Labels& selector) const;

 private:
  void Index(const RemoteWorkload& workload);
  void Unindex(const RemoteWorkload& workload);

  ClusterKeys keys_;
  std::string self_;
  std::map<std::string, NodeRecord> nodes_;
  std::map<std::string, RemoteWorkload> workloads_;
  std::unordered_map<uint32_t, RemoteReplica> by_address_;
};

}  // namespace podless::runtime
