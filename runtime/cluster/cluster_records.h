// What a podless cluster keeps in etcd: the key layout and the records.
//
// Every key starts with the cluster prefix (--etcd-prefix, "/podless/"):
//   nodes/<node>                  NodeRecord, under the node's lease
//   workloads/<node>/<ns>/<name>  WorkloadRecord, under the node's lease
//   objects/<Kind>/<ns>/<name>    ClusterObjectRecord (Services, AuthorizationPolicies)
//   vips/<a.b.c.d>                "<ns>/<name>" of the Service holding that VIP
//   cidrs/<a.b.c.d>_<bits>        the node holding that workload range
//   ca/root.crt, ca/root.key      the cluster root (the key only if the operator chose so)
// Node-owned records live under the node's lease, so they vanish when the node
// dies; cluster-wide objects do not.
//
// Records use the bounds-checked byte encoding of workloads/object_codec.h
// (objects are embedded in their state-store encoding), with a leading
// version byte so a later build can keep reading them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::runtime {

struct NodeRecord {
  std::string name;
  std::string address;  // where other nodes reach it
  uint16_t hbone_port = 15008;
  std::string cidr;         // its workload addresses
  std::string instance_id;  // random, kept in its state dir: "is this me?"
  int64_t started_at = 0;   // unix seconds
  bool operator==(const NodeRecord&) const = default;
};

struct WorkloadRecord {
  std::string node;
  workloads::Workload workload;
  std::vector<uint32_t> addresses;  // replica ordinal i at index i
  std::vector<uint32_t> not_ready;  // ordinals whose readiness probe fails
  bool operator==(const WorkloadRecord&) const = default;
};

struct ClusterObjectRecord {
  workloads::Object object;  // a Service or an AuthorizationPolicy
  uint32_t vip = 0;          // Services: the cluster-wide VIP
};

std::string EncodeNodeRecord(const NodeRecord& record);
Result<NodeRecord> DecodeNodeRecord(std::string_view bytes);
std::string EncodeWorkloadRecord(const WorkloadRecord& record);
Result<WorkloadRecord> DecodeWorkloadRecord(std::string_view bytes);
std::string EncodeClusterObjectRecord(const ClusterObjectRecord& record);
Result<ClusterObjectRecord> DecodeClusterObjectRecord(std::string_view bytes);

// Keys, each under `prefix`.
struct ClusterKeys {
  std::string prefix;

  std::string Nodes() const { return prefix + "nodes/"; }
  std::string Node(std::string_view node) const { return Nodes() + std::string(node); }
  std::string Workloads() const { return prefix + "workloads/"; }
  std::string NodeWorkloads(std::string_view node) const {
    return Workloads() + std::string(node) + "/";
  }
  std::string Workload(std::string_view node, const workloads::ObjectKey& key) const {
    return NodeWorkloads(node) + key.ns + "/" + key.name;
  }
  std::string Objects() const { return prefix + "objects/"; }
  std::string Object(const workloads::ObjectKey& key) const {
    return Objects() + workloads::KindName(key.kind) + "/" + key.ns + "/" + key.name;
  }
  std::string Vips() const { return prefix + "vips/"; }
  std::string Vip(uint32_t vip) const;
  std::string Cidrs() const { return prefix + "cidrs/"; }
  std::string Cidr(std::string_view cidr) const;  // "10.1.2.0/24" -> ".../10.1.2.0_24"
  std::string RootCert() const { return prefix + "ca/root.crt"; }
  std::string RootKey() const { return prefix + "ca/root.key"; }
};

// Cluster-wide kinds live in etcd; workloads belong to their node.
bool IsClusterKind(workloads::Kind kind);

}  // namespace podless::runtime
