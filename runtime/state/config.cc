#include "runtime/state/config.h"

#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>

#include "workloads/names.h"

namespace podless::runtime {
namespace {

// More worker loops than this only add memory (each has its own pools).
constexpr uint32_t kMaxWorkers = 256;

struct Flag {
  const char* name;
  const char* value_name;  // nullptr for a boolean flag
  const char* help;
  std::function<Status(AgentConfig&, const std::string&)> set;
};

Status SetString(std::string& field, const std::string& value) {
  field = value;
  return {};
}

// A timeout flag: a duration, or 0 (off).
Status SetTimeoutMs(uint64_t& field, const char* flag, const std::string& value) {
  if (value == "0") {
    field = 0;
    return {};
  }
  auto d = ParseDuration(value);
  if (!d) return MakeError(d.error().code, std::string(flag) + ": " + d.error().message);
  field = static_cast<uint64_t>(d->count()) * 1000;
  return {};
}

// A limit flag: a count, or 0 (off).
Status SetCount(uint32_t& field, const char* flag, const std::string& value) {
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(flag) + ": expected a number, got \"" + value + "\"");
  }
  field = n;
  return {};
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      {"--state-dir", "DIR", "state directory (state log, CA, API socket) [./podless-state]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.state_dir, v); }},
      {"--api-socket", "PATH", "local gRPC API socket, mode 0600 [<state-dir>/api.sock]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.api_socket, v); }},
      {"--admin-address", "HOST:PORT",
       "admin server: /healthz /ready /metrics /config_dump [127.0.0.1:15000]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.admin_address, v); }},
      {"--kube-address", "HOST:PORT|off",
       "the Kubernetes API for kubectl (HTTPS, client certificates: podless kubeconfig) "
       "[127.0.0.1:6443]",
       [](AgentConfig& c, const std::string& v) -> Status {
         c.kube_address = v == "off" ? "" : v;
         return {};
       }},
      {"--node-cidr", "CIDR", "workload addresses of this node [127.64.0.0/10]",
       [](AgentConfig& c, const std::string& v) {
         c.node_cidr_set = true;
         return SetString(c.node_cidr, v);
       }},
      {"--workload-uids", "FIRST-LAST",
       "uids a root agent runs exec workloads as, one per workload [61184-65519]",
       [](AgentConfig& c, const std::string& v) -> Status {
         auto range = ParseUidRange(v);
         if (!range)
           return MakeError(range.error().code, "--workload-uids: " + range.error().message);
         c.workload_uid_first = range->first;
         c.workload_uid_last = range->second;
         return {};
       }},
      {"--service-cidr", "CIDR", "Service virtual IPs [127.128.0.0/16]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.service_cidr, v); }},
      {"--trust-domain", "NAME", "SPIFFE trust domain [cluster.local]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.trust_domain, v); }},
      {"--root-namespace", "NAME",
       "AuthorizationPolicies here apply to every namespace; \"\" for none [istio-system]",
       [](AgentConfig& c, const std::string& v) -> Status {
         if (std::string why = workloads::Dns1123LabelError(v); !v.empty() && !why.empty()) {
           return MakeError(ErrorCode::kInvalidArgument,
                            "--root-namespace: invalid namespace \"" + v + "\": " + why);
         }
         return SetString(c.root_namespace, v);
       }},
      {"--svid-ttl", "DURATION", "X.509-SVID lifetime, rotated at half life [24h]",
       [](AgentConfig& c, const std::string& v) -> Status {
         auto d = ParseDuration(v);
         if (!d) return MakeError(d.error().code, "--svid-ttl: " + d.error().message);
         if (d->count() < 60) {
           return MakeError(ErrorCode::kInvalidArgument, "--svid-ttl: must be at least 1m");
         }
         c.svid_ttl = *d;
         return {};
       }},
      {"--eager-certificates", nullptr, "issue SVIDs when replicas are created, not on first use",
       [](AgentConfig& c, const std::string&) -> Status {
         c.eager_certificates = true;
         return {};
       }},
      {"--svid-cache-size", "N",
       "SVIDs (with their keys) kept in memory; the least recently used are dropped and "
       "re-issued on next use [100000]",
       [](AgentConfig& c, const std::string& v) -> Status {
         if (auto s = SetCount(c.svid_cache_size, "--svid-cache-size", v); !s) return s;
         if (c.svid_cache_size == 0) {
           return MakeError(ErrorCode::kInvalidArgument, "--svid-cache-size: must be at least 1");
         }
         return {};
       }},
      {"--ca-cert", "FILE", "operator CA certificate (PEM) instead of the generated root",
       [](AgentConfig& c, const std::string& v) { return SetString(c.ca_cert, v); }},
      {"--ca-key", "FILE", "private key of --ca-cert (PEM)",
       [](AgentConfig& c, const std::string& v) { return SetString(c.ca_key, v); }},
      {"--node-name", "NAME", "this node's name [the hostname]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.node_name, v); }},
      {"--hbone-address", "HOST:PORT", "inbound HBONE (mTLS HTTP/2 CONNECT) [0.0.0.0:15008]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.hbone_address, v); }},
      {"--outbound-address", "HOST:PORT",
       "outbound entry for workloads (HTTP proxy + SOCKS5) [127.0.0.1:15001]",
       [](AgentConfig& c, const std::string& v) { return SetString(c.outbound_address, v); }},
      {"--log-level", "LEVEL",
       "what the agent logs to stderr: error, warn, info or debug (debug adds a line per "
       "connection accepted and closed, with its conn=ID) [info]",
       [](AgentConfig& c, const std::string& v) -> Status {
         auto level = proxy::ParseLogLevel(v);
         if (!level) {
           return MakeError(ErrorCode::kInvalidArgument,
                            "--log-level: \"" + v + "\" is not one of error, warn, info, debug");
         }
         c.log_level = *level;
         return {};
       }},
      {"--workers", "N",
       "proxy worker threads, each with its own loop; 0: the proxy runs on the main loop "
       "[one per core]",
       [](AgentConfig& c, const std::string& v) -> Status {
         if (auto s = SetCount(c.workers, "--workers", v); !s) return s;
         if (c.workers > kMaxWorkers) {
           return MakeError(ErrorCode::kInvalidArgument,
                            "--workers: at most " + std::to_string(kMaxWorkers));
         }
         return {};
       }},
      {"--hbone-idle-timeout", "DURATION", "close pooled HBONE connections idle this long [60s]",
       [](AgentConfig& c, const std::string& v) -> Status {
         auto d = ParseDuration(v);
         if (!d) return MakeError(d.error().code, "--hbone-idle-timeout: " + d.error().message);
         c.proxy.pool.idle_timeout_ms = static_cast<uint64_t>(
             std::chrono::duration_cast<std::chrono::milliseconds>(*d).count());
         return {};
       }},
      {"--no-local-short-circuit", nullptr,
       "send traffic between local workloads over HBONE too (testing, benchmarks)",
       [](AgentConfig& c, const std::string&) -> Status {
         c.local_short_circuit = false;
         return {};
       }},
      {"--etcd", "URL[,URL...]",
       "join the cluster whose state is in this etcd (http://HOST:PORT, or https:// with "
       "--etcd-ca)",
       [](AgentConfig& c, const std::string& v) -> Status {
         size_t start = 0;
         while (start <= v.size()) {
           size_t comma = v.find(',', start);
           if (comma == std::string::npos) comma = v.size();
           if (comma > start) c.cluster.etcd_endpoints.push_back(v.substr(start, comma - start));
           start = comma + 1;
         }
         if (c.cluster.etcd_endpoints.empty()) {
           return MakeError(ErrorCode::kInvalidArgument, "--etcd: no URL given");
         }
         return {};
       }},
      {"--etcd-ca", "FILE",
       "cluster: CA bundle (PEM) that signed etcd's certificate; required for https:// "
       "(the system trust store is not used)",
       [](AgentConfig& c, const std::string& v) {
         return SetString(c.cluster.etcd_tls.ca_file, v);
       }},
      {"--etcd-cert", "FILE", "cluster: client certificate (PEM) for etcd's --client-cert-auth",
       [](AgentConfig& c, const std::string& v) {
         return SetString(c.cluster.etcd_tls.cert_file, v);
       }},
      {"--etcd-key", "FILE",
       "cluster: private key of --etcd-cert (PEM; owned by this uid, mode 0600 or 0400)",
       [](AgentConfig& c, const std::string& v) {
         return SetString(c.cluster.etcd_tls.key_file, v);
       }},
      {"--node-address", "IP", "cluster: the address other nodes reach this node at",
       [](AgentConfig& c, const std::string& v) { return SetString(c.cluster.node_address, v); }},
      {"--cluster-cidr", "CIDR",
       "cluster: claim a free per-node range of this CIDR (without --node-cidr)",
       [](AgentConfig& c, const std::string& v) { return SetString(c.cluster.cluster_cidr, v); }},
      {"--node-cidr-prefix", "BITS", "cluster: the prefix length of those ranges [24]",
       [](AgentConfig& c, const std::string& v) -> Status {
         int bits = 0;
         auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), bits);
         if (ec != std::errc() || end != v.data() + v.size() || bits < 8 || bits > 30) {
           return MakeError(ErrorCode::kInvalidArgument,
                            "--node-cidr-prefix: must be a number from 8 to 30, got \"" + v + "\"");
         }
         c.cluster.node_cidr_prefix = bits;
         return {};
       }},
      {"--lease-ttl", "DURATION",
       "cluster: this node's records vanish this long after it dies [10s]",
       [](AgentConfig& c, const std::string& v) -> Status {
         auto d = ParseDuration(v);
         if (!d) return MakeError(d.error().code, "--lease-ttl: " + d.error().message);
         if (d->count() < 2)
           return MakeError(ErrorCode::kInvalidArgument, "--lease-ttl: at least 2s");
         c.cluster.lease_ttl = *d;
         return {};
       }},
      {"--etcd-prefix", "PREFIX", "cluster: the etcd key prefix of this cluster [/podless/]",
       [](AgentConfig& c, const std::string& v) -> Status {
         if (v.empty() || v.back() != '/') {
           return MakeError(ErrorCode::kInvalidArgument, "--etcd-prefix: must end with /");
         }
         return SetString(c.cluster.etcd_prefix, v);
       }},
      {"--hbone-handshake-timeout", "DURATION", "TLS handshakes must finish within this [10s]",
       [](AgentConfig& c, const std::string& v) -> Status {
         // Never off: a handshake that may hang forever holds a socket forever.
         if (v == "0") {
           return MakeError(ErrorCode::kInvalidArgument, "--hbone-handshake-timeout: must be > 0");
         }
         uint64_t ms = 0;
         if (Status s = SetTimeoutMs(ms, "--hbone-handshake-timeout", v); !s) return s;
         c.proxy.SetHandshakeTimeout(ms);
         return {};
       }},
      {"--hbone-preface-timeout", "DURATION",
       "after TLS, the HTTP/2 preface must arrive within this [10s]",
       [](AgentConfig& c, const std::string& v) {
         return SetTimeoutMs(c.proxy.hbone.preface_timeout_ms, "--hbone-preface-timeout", v);
       }},
      {"--stream-stall-timeout", "DURATION",
       "reset an HBONE stream whose peer reads nothing for this long [30s]",
       [](AgentConfig& c, const std::string& v) {
         return SetTimeoutMs(c.proxy.hbone.stream_stall_timeout_ms, "--stream-stall-timeout", v);
       }},
      {"--hbone-server-idle-timeout", "DURATION",
       "GOAWAY and close inbound HBONE connections with no stream this long [5m]",
       [](AgentConfig& c, const std::string& v) {
         return SetTimeoutMs(c.proxy.hbone.idle_timeout_ms, "--hbone-server-idle-timeout", v);
       }},
      {"--write-stall-timeout", "DURATION",
       "drop a connection whose peer reads nothing for this long [30s]",
       [](AgentConfig& c, const std::string& v) -> Status {
         uint64_t ms = 0;
         if (Status s = SetTimeoutMs(ms, "--write-stall-timeout", v); !s) return s;
         c.proxy.SetWriteStallTimeout(ms);
         return {};
       }},
      {"--outbound-request-timeout", "DURATION",
       "outbound entry: the proxy request must arrive within this [10s]",
       [](AgentConfig& c, const std::string& v) {
         return SetTimeoutMs(c.proxy.outbound.request_timeout_ms, "--outbound-request-timeout", v);
       }},
      {"--app-request-timeout", "DURATION",
       "in-proxy HTTP apps: a request must arrive within this of connecting or of the last "
       "response, else the connection is reset [30s]",
       [](AgentConfig& c, const std::string& v) {
         return SetTimeoutMs(c.proxy.inbound.app_request_timeout_ms, "--app-request-timeout", v);
       }},
      {"--plaintext-idle-timeout", "DURATION",
       "plaintext workload ports: reset a connection to a forward target or an exec process "
       "that carries no byte either way for this long [1h]",
       [](AgentConfig& c, const std::string& v) {
         return SetTimeoutMs(c.proxy.inbound.plaintext_idle_timeout_ms, "--plaintext-idle-timeout",
                             v);
       }},
      {"--max-hbone-connections-per-peer", "N",
       "HBONE connections one peer (its /24; all of 127/8 as one) may hold [4096]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.proxy.hbone.max_connections_per_peer, "--max-hbone-connections-per-peer",
                         v);
       }},
      {"--max-plaintext-connections-per-peer", "N",
       "connections to plaintext workload ports one peer (its /24; all of 127/8 as one) may "
       "hold [4096]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.proxy.plaintext.max_connections_per_peer,
                         "--max-plaintext-connections-per-peer", v);
       }},
      {"--max-plaintext-address-sockets", "N",
       "workload ports are served on each replica's own address (leaving the port to other "
       "programs elsewhere) up to this many sockets in all; a port past it goes to 0.0.0.0 "
       "[128]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.max_plaintext_address_sockets, "--max-plaintext-address-sockets", v);
       }},
      {"--max-hbone-streams-per-connection", "N",
       "concurrent streams per HBONE connection (SETTINGS_MAX_CONCURRENT_STREAMS) [1000]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.proxy.hbone.max_streams_per_connection,
                         "--max-hbone-streams-per-connection", v);
       }},
      {"--max-outbound-connections-per-workload", "N",
       "outbound-entry connections one replica may hold [1024]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.proxy.outbound.max_connections_per_workload,
                         "--max-outbound-connections-per-workload", v);
       }},
      {"--max-unauthenticated-connections", "N",
       "HBONE connections in the TLS handshake plus outbound-entry ones before their "
       "credentials, node-wide [a quarter of RLIMIT_NOFILE]",
       [](AgentConfig& c, const std::string& v) -> Status {
         uint32_t max = 0;
         if (Status s = SetCount(max, "--max-unauthenticated-connections", v); !s) return s;
         c.proxy.SetMaxUnauthenticatedConnections(max);
         return {};
       }},
      {"--max-objects", "N",
       "objects (Workloads, Services, policies) the agent holds; more are refused [2000000]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.limits.max_objects, "--max-objects", v);
       }},
      {"--max-replicas", "N", "workload replicas the agent holds; more are refused [4000000]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.limits.max_replicas, "--max-replicas", v);
       }},
      {"--max-apply-objects", "N", "objects in one apply or RegisterBatch call [100000]",
       [](AgentConfig& c, const std::string& v) {
         return SetCount(c.limits.max_apply_objects, "--max-apply-objects", v);
       }},
      {"--apply", "FILE|DIR", "apply this manifest once the agent is ready (repeatable)",
       [](AgentConfig& c, const std::string& v) -> Status {
         c.apply_at_start.push_back(v);
         return {};
       }},
  };
  return flags;
}

}  // namespace

uint32_t DefaultWorkers() { return std::min<uint32_t>(uv_available_parallelism(), kMaxWorkers); }

std::string RunUsage() {
  std::string out =
      "usage: podless run [flags]\n\n"
      "Runs the node agent. Every flag has an embedded default, shown in brackets.\n\n";
  for (const Flag& f : Flags()) {
    std::string left =
        std::string("  ") + f.name + (f.value_name ? std::string(" ") + f.value_name : "");
    if (left.size() < 32) left.resize(32, ' ');
    out += left + " " + f.help + "\n";
  }
  out += "  --help                           this text\n";
  return out;
}

Result<AgentConfig> ParseRunFlags(const std::vector<std::string>& args) {
  AgentConfig config;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--help" || arg == "-h")
      return MakeError(ErrorCode::kFailedPrecondition, RunUsage());
    std::string value;
    bool has_inline_value = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline_value = true;
    }
    const Flag* flag = nullptr;
    for (const Flag& f : Flags()) {
      if (arg == f.name) flag = &f;
    }
    if (flag == nullptr) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "unknown flag \"" + arg + "\" (see podless run --help)");
    }
    if (flag->value_name != nullptr && !has_inline_value) {
      if (i + 1 >= args.size()) {
        return MakeError(ErrorCode::kInvalidArgument, arg + ": missing value " + flag->value_name);
      }
      value = args[++i];
    }
    if (Status s = flag->set(config, value); !s) return s.error();
  }
  if (config.ca_cert.empty() != config.ca_key.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "--ca-cert and --ca-key go together");
  }
  if (config.cluster.enabled()) {
    if (config.cluster.node_address.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--etcd needs --node-address (the IP other nodes reach this node at)");
    }
    if (!config.node_cidr_set && config.cluster.cluster_cidr.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--etcd needs --node-cidr or --cluster-cidr: every node needs its own "
                       "range of workload addresses, routed to it by the network");
    }
    if (Status s = CheckEtcdTlsFlags(config.cluster.etcd_endpoints, config.cluster.etcd_tls); !s) {
      return s.error();
    }
  } else if (!config.cluster.node_address.empty() || !config.cluster.cluster_cidr.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--node-address and --cluster-cidr are cluster flags: add --etcd URL");
  } else if (config.cluster.etcd_tls.any()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--etcd-ca, --etcd-cert and --etcd-key are cluster flags: add --etcd URL");
  }
  if (config.node_name.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0') {
      config.node_name = host;
    } else {
      config.node_name = "node";
    }
  }
  if (config.cluster.enabled() && !workloads::IsDns1123Subdomain(config.node_name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--node-name: " + workloads::Dns1123SubdomainError(config.node_name));
  }
  return config;
}

Result<std::chrono::seconds> ParseDuration(std::string_view text) {
  static const std::map<std::string_view, double> kUnits = {
      {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};
  if (text.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty duration");
  double total = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    uint64_t number = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), number);
    if (ec != std::errc() || end == rest.data()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "bad duration \"" + std::string(text) + "\" (examples: 24h, 90m, 1h30m)");
    }
    rest.remove_prefix(end - rest.data());
    size_t unit_len = 0;
    while (unit_len < rest.size() && std::isalpha(static_cast<unsigned char>(rest[unit_len]))) {
      ++unit_len;
    }
    auto unit = kUnits.find(rest.substr(0, unit_len));
    if (unit == kUnits.end()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "bad duration \"" + std::string(text) + "\": unit must be ms, s, m, h or d");
    }
    total += static_cast<double>(number) * unit->second;
    rest.remove_prefix(unit_len);
  }
  return std::chrono::seconds(static_cast<int64_t>(total + 0.999));
}

}  // namespace podless::runtime
