// Records for the cluster tests (cluster_records_test.cc, cluster_view_test.cc).
#pragma once

#include <string>

#include "runtime/cluster/cluster_records.h"

namespace podless::runtime::testing {

inline workloads::Workload MakeWorkload(const std::string& name, uint32_t replicas) {
  workloads::Workload w;
  w.metadata.name = name;
  w.metadata.ns = "shop";
  w.metadata.labels = {{"app", name}};
  w.spec.replicas = replicas;
  w.spec.service_account = name;
  return w;
}

inline WorkloadRecord MakeRecord(const std::string& node, const std::string& name, uint32_t first,
                                 uint32_t replicas) {
  WorkloadRecord record;
  record.node = node;
  record.workload = MakeWorkload(name, replicas);
  for (uint32_t i = 0; i < replicas; ++i) record.addresses.push_back(first + i);
  return record;
}

}  // namespace podless::runtime::testing
