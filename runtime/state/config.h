// The agent's configuration: every default is embedded so `podless run`
// works with no flags, and every default has a flag (`podless run --help`).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "proxy/base/log.h"
#include "proxy/proxy_core.h"
#include "runtime/etcd/etcd_tls.h"
#include "runtime/process/uid_allocator.h"
#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::runtime {

// One proxy worker per core the process may use (uv_available_parallelism).
uint32_t DefaultWorkers();

struct AgentConfig {
  std::string state_dir = "./podless-state";
  std::string api_socket;  // empty: <state_dir>/api.sock
  std::string admin_address = "127.0.0.1:15000";
  // The Kubernetes API (HTTPS, api/kube/); empty: not served (--kube-address off).
  std::string kube_address = "127.0.0.1:6443";
  std::string node_cidr = "127.64.0.0/10";
  std::string service_cidr = "127.128.0.0/16";
  // --workload-uids: the uids (and gids) a root agent gives exec workloads,
  // one per workload (runtime/process/uid_allocator.h). systemd's dynamic range.
  uint32_t workload_uid_first = kDefaultWorkloadUidFirst;
  // RLIMIT_NOFILE of supervised processes (0: inherited); `podless run` sets
  // the soft limit it started with (runtime/node/descriptor_limit.h).
  uint64_t workload_rlimit_nofile = 0;
  uint32_t workload_uid_last = kDefaultWorkloadUidLast;
  std::string trust_domain = "cluster.local";
  // AuthorizationPolicies in this namespace apply to every namespace (Istio's
  // root namespace); empty: none does.
  std::string root_namespace = workloads::kDefaultRootNamespace;
  std::chrono::seconds svid_ttl = std::chrono::hours(24);
  bool eager_certificates = false;
  // SVIDs kept in memory (least recently used evicted; re-issued on next use).
  uint32_t svid_cache_size = 100000;
  std::string ca_cert;  // both or neither: an operator-provided CA
  std::string ca_key;
  std::string node_name;  // empty: the hostname
  std::string hbone_address = "0.0.0.0:15008";
  std::string outbound_address = "127.0.0.1:15001";
  std::vector<std::string> apply_at_start;
  // Local destinations go over HBONE too (TLS to our own listener) instead of
  // the in-memory short-circuit: for tests and benchmarks of the full path.
  bool local_short_circuit = true;
  // Proxy worker threads, each with its own loop and listeners sharing the
  // ports (SO_REUSEPORT); 0 runs the proxy on the main loop. Default: one per
  // core (runtime/node/proxy_workers.h).
  uint32_t workers = DefaultWorkers();
  proxy::LogLevel log_level = proxy::LogLevel::kInfo;  // --log-level
  // The proxy's own options, composed (proxy/proxy_core.h ProxyConfig): the
  // flags write into the part that uses each setting (pool idle timeout,
  // timeouts and limits against slow or greedy peers; 0 turns one off). Its
  // listen addresses come from hbone_address and outbound_address at start.
  proxy::ProxyConfig proxy;
  // Workload ports served on each replica's own address, in sockets, before
  // a port goes to the bind address (runtime/node/plaintext_ports.h).
  uint32_t max_plaintext_address_sockets = proxy::kDefaultMaxPlaintextAddressSockets;

  // Admission control: an Apply, Register or RegisterBatch that would go past
  // one of these is refused with RESOURCE_EXHAUSTED before anything is
  // allocated or written (runtime/state/agent.h, Agent::Apply); 0 turns one off.
  // The defaults leave room for twice the 1,000,000-workload density target
  // and for the 4,194,302 addresses of the default /10 node CIDR.
  struct Limits {
    uint32_t max_objects = 2'000'000;      // Workloads + Services + policies held
    uint32_t max_replicas = 4'000'000;     // replicas (node addresses) held
    uint32_t max_apply_objects = 100'000;  // objects in one apply or batch
  } limits;

  // True when --node-cidr was given (cluster mode claims that range instead
  // of carving one out of --cluster-cidr).
  bool node_cidr_set = false;

  // Cluster mode (runtime/cluster/cluster.h); off while etcd_endpoints is empty.
  struct Cluster {
    std::vector<std::string> etcd_endpoints;  // "http://HOST:PORT" or all "https://"
    EtcdTlsFiles etcd_tls;                    // --etcd-ca, --etcd-cert, --etcd-key (https:// only)
    std::string node_address;                 // where other nodes reach this one
    std::string cluster_cidr;                 // split into per-node ranges
    int node_cidr_prefix = 24;                // the size of those ranges
    std::chrono::seconds lease_ttl = std::chrono::seconds(10);
    std::string etcd_prefix = "/podless/";  // every key podless writes starts with it
    bool enabled() const { return !etcd_endpoints.empty(); }
  } cluster;

  std::string ApiSocketPath() const {
    return api_socket.empty() ? state_dir + "/api.sock" : api_socket;
  }
};

// Parses `podless run` flags (argv after "run"). `--help` yields an error
// with code kFailedPrecondition whose message is the usage text.
Result<AgentConfig> ParseRunFlags(const std::vector<std::string>& args);

std::string RunUsage();

// "24h", "90m", "45s", "1h30m", "500ms" (rounded up to whole seconds).
Result<std::chrono::seconds> ParseDuration(std::string_view text);

}  // namespace podless::runtime
