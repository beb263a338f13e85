// Cluster::Join: what a node does before it starts — lock, lease, node name,
// workload range, intermediate CA. Written as straight-line code over the
// asynchronous etcd client (Await runs the loop until one call is done),
// since nothing else runs on the loop yet.
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>

#include "proxy/base/log.h"
#include "proxy/base/uv_handle.h"
#include "runtime/cluster/cluster.h"
#include "runtime/state/state_store.h"
#include "workloads/certificate_authority.h"
#include "workloads/ipam.h"
#include "workloads/pem_file.h"

namespace podless::runtime {
namespace {

constexpr char kJoinFile[] = "/cluster-node";
constexpr char kCaCertFile[] = "/cluster-ca.crt";
constexpr char kCaKeyFile[] = "/cluster-ca.key";
// A node's intermediate lives a year (capped by the root); it is re-issued
// at a start once less than a quarter of that is left.
constexpr std::chrono::seconds kIntermediateTtl = std::chrono::hours(24 * 365);

// The etcd client's own errors about its flags name them already
// (--etcd-ca, --etcd-cert, --etcd-key); the others are about --etcd.
Error EtcdFlagError(const Error& error) {
  if (error.message.starts_with("--etcd") || error.message.starts_with("https://")) return error;
  return MakeError(error.code, "--etcd: " + error.message);
}

template <typename T, typename Start>
Result<T> Await(uv_loop_t* loop, Start start) {
  std::optional<Result<T>> out;
  start([&out](Result<T> result) { out = std::move(result); });
  while (!out) uv_run(loop, UV_RUN_ONCE);
  return std::move(*out);
}

// What a state dir remembers of its join: "key=value" lines.
struct JoinRecord {
  std::string node;
  std::string instance_id;
  std::string cidr;
};

Result<std::optional<JoinRecord>> ReadJoinRecord(const std::string& path) {
  auto text = workloads::ReadSmallFile(path, 4096);
  if (!text) {
    if (text.error().code == ErrorCode::kNotFound) return std::optional<JoinRecord>();
    return text.error();
  }
  JoinRecord record;
  size_t start = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    std::string line = text->substr(start, end - start);
    start = end + 1;
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "node") record.node = value;
    if (key == "instance") record.instance_id = value;
    if (key == "cidr") record.cidr = value;
  }
  if (record.node.empty() || record.instance_id.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition, path + ": missing node= or instance= line");
  }
  return std::optional<JoinRecord>(record);
}

Status WriteJoinRecord(const std::string& path, const JoinRecord& record) {
  return workloads::WriteFileAtomically(
      path,
      "node=" + record.node + "\ninstance=" + record.instance_id + "\ncidr=" + record.cidr + "\n");
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size());
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

bool Overlaps(const workloads::Cidr& a, const workloads::Cidr& b) {
  return a.Contains(b.base) || b.Contains(a.base);
}

std::string NameInUse(const std::string& name, const Result<NodeRecord>& holder) {
  std::string who = holder ? " at " + holder->address : "";
  return "node name \"" + name + "\" is in use by another live agent" + who +
         "; choose another --node-name, or stop that agent (its record expires one --lease-ttl "
         "after it stops)";
}

etcdpb::RangeRequest Get(const std::string& key) {
  etcdpb::RangeRequest request;
  request.set_key(key);
  return request;
}

}  // namespace

// Claims nodes/<name> for this instance under the current lease: created if
// absent, taken over if it names this instance (a restart within the TTL),
// refused if another live agent holds the name.
void Cluster::ClaimNode(std::function<void(Status)> done) {
  const std::string key = keys_.Node(self_.name);
  etcdpb::TxnRequest txn;
  CompareAbsent(txn, key);
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(EncodeNodeRecord(self_));
  put->set_lease(lease_);
  txn.add_failure()->mutable_request_range()->set_key(key);
  etcd_->Txn(txn, [this, key, done](Result<etcdpb::TxnResponse> reply) {
    if (!reply) return done(reply.error());
    if (reply->succeeded()) return done({});
    const auto& kvs = reply->responses(0).response_range().kvs();
    if (!kvs.empty()) {
      auto holder = DecodeNodeRecord(kvs[0].value());
      if (!holder || holder->instance_id != self_.instance_id) {
        return done(MakeError(ErrorCode::kAlreadyExists, NameInUse(self_.name, holder)));
      }
    }
    // Ours (a restart of this state dir within the TTL), or gone meanwhile.
    etcdpb::PutRequest again;
    again.set_key(key);
    again.set_value(EncodeNodeRecord(self_));
    again.set_lease(lease_);
    etcd_->Put(again, [done](Result<etcdpb::PutResponse> put) {
      done(put ? Status{} : Status(put.error()));
    });
  });
}

Result<ClusterPtr> Cluster::Join(uv_loop_t* loop, AgentConfig& config) {
  return Join(loop, config, [](uv_loop_t* loop, const AgentConfig& config) -> Result<EtcdKvPtr> {
    auto etcd = EtcdClient::Create(loop, EtcdOptions{.endpoints = config.cluster.etcd_endpoints,
                                                     .tls = config.cluster.etcd_tls});
    if (!etcd) return EtcdFlagError(etcd.error());
    return EtcdKvPtr(std::move(*etcd));
  });
}

Result<ClusterPtr> Cluster::Join(uv_loop_t* loop, AgentConfig& config,
                                 const EtcdConnector& connect) {
  ClusterPtr cluster(new Cluster(loop, config));
  Cluster& c = *cluster;
  const std::string& dir = config.state_dir;

  // Nothing is written to a state dir another user owns or may write.
  if (Status s = StateStore::PrepareDir(dir); !s) return s.error();
  // Held for the agent's life: two agents on one state dir would fight over
  // one node record (the state log has its own lock, taken later).
  const std::string lock_path = dir + "/cluster.lock";
  c.lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (c.lock_fd_ < 0 || flock(c.lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     lock_path + ": another agent is using state dir " + dir);
  }

  auto previous = ReadJoinRecord(dir + kJoinFile);
  if (!previous) return previous.error();
  if (*previous && (*previous)->node != config.node_name) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "state dir " + dir + " belongs to node \"" + (*previous)->node +
                         "\"; run with --node-name " + (*previous)->node +
                         " or use another --state-dir");
  }
  JoinRecord record = previous->value_or(JoinRecord{config.node_name, RandomHex(16), ""});
  c.self_.instance_id = record.instance_id;

  auto etcd = connect(loop, config);
  if (!etcd) return etcd.error();
  c.etcd_ = std::move(*etcd);

  auto lease = Await<etcdpb::LeaseGrantResponse>(loop, [&](auto done) {
    etcdpb::LeaseGrantRequest request;
    request.set_ttl(config.cluster.lease_ttl.count());
    c.etcd_->LeaseGrant(request, done);
  });
  if (!lease) {
    // Offline start: only for a state dir that joined before.
    const bool joined_before = !record.cidr.empty() &&
                               access((dir + kCaCertFile).c_str(), R_OK) == 0 &&
                               access((dir + kCaKeyFile).c_str(), R_OK) == 0;
    if (lease.error().code != ErrorCode::kUnavailable || !joined_before) {
      return MakeError(lease.error().code, "cannot join the cluster: etcd " +
                                               c.etcd_->current_endpoint() + ": " +
                                               lease.error().message);
    }
    proxy::Log(proxy::LogLevel::kWarning, "cluster",
               "etcd unreachable (" + lease.error().message +
                   "); starting from this node's last join (range " + record.cidr +
                   ") and registering once etcd answers");
    c.last_error_ = lease.error().message;
    config.node_cidr = record.cidr;
    config.ca_cert = dir + kCaCertFile;
    config.ca_key = dir + kCaKeyFile;
    c.config_ = config;
    c.self_.cidr = record.cidr;
    return cluster;
  }
  c.lease_ = lease->id();

  // The name first: a second agent with a live node's name must hear that,
  // not about the range it would collide with too.
  auto holder = Await<etcdpb::RangeResponse>(
      loop, [&](auto done) { c.etcd_->Range(Get(c.keys_.Node(config.node_name)), done); });
  if (!holder) return MakeError(holder.error().code, "etcd: " + holder.error().message);
  if (!holder->kvs().empty()) {
    auto other = DecodeNodeRecord(holder->kvs(0).value());
    if (!other || other->instance_id != record.instance_id) {
      return MakeError(ErrorCode::kAlreadyExists, NameInUse(config.node_name, other));
    }
  }

  // The workload range: the one given, the one held before, or a free one.
  std::string cidr = config.node_cidr_set ? config.node_cidr : record.cidr;
  auto claims = Await<etcdpb::RangeResponse>(loop, [&](auto done) {
    etcdpb::RangeRequest request;
    request.set_key(c.keys_.Cidrs());
    request.set_range_end(EtcdPrefixEnd(c.keys_.Cidrs()));
    c.etcd_->Range(request, done);
  });
  if (!claims) return MakeError(claims.error().code, "etcd: " + claims.error().message);
  std::vector<std::pair<workloads::Cidr, std::string>> held;  // by other nodes
  for (const auto& kv : claims->kvs()) {
    std::string name = kv.key().substr(c.keys_.Cidrs().size());
    for (char& ch : name) {
      if (ch == '_') ch = '/';
    }
    auto parsed = workloads::Cidr::Parse(name);
    if (parsed && kv.value() != config.node_name) held.emplace_back(*parsed, kv.value());
  }
  auto free_of_others = [&](const workloads::Cidr& range) -> Status {
    for (const auto& [other, node] : held) {
      if (Overlaps(range, other)) {
        return MakeError(ErrorCode::kAlreadyExists, "workload range " + range.ToString() +
                                                        " overlaps " + other.ToString() +
                                                        " of node \"" + node + "\"");
      }
    }
    return {};
  };
  // Nodes joining together may pick the same free range: the transaction
  // lets one win, the others move on to the next.
  constexpr int kMaxClaimAttempts = 16;
  const bool derived = cidr.empty();
  Result<workloads::Cidr> range = MakeError(ErrorCode::kInternal, "no range");
  for (int attempt = 1;; ++attempt) {
    if (derived) {
      auto cluster_cidr = workloads::Cidr::Parse(config.cluster.cluster_cidr);
      if (!cluster_cidr)
        return MakeError(ErrorCode::kInvalidArgument,
                         "--cluster-cidr: " + cluster_cidr.error().message);
      const int bits = config.cluster.node_cidr_prefix;
      if (bits < cluster_cidr->prefix) {
        return MakeError(ErrorCode::kInvalidArgument, "--node-cidr-prefix " + std::to_string(bits) +
                                                          " is wider than --cluster-cidr " +
                                                          cluster_cidr->ToString());
      }
      const uint64_t step = uint64_t{1} << (32 - bits);
      for (uint64_t base = cluster_cidr->base; base < cluster_cidr->base + cluster_cidr->Size();
           base += step) {
        workloads::Cidr candidate{static_cast<uint32_t>(base), static_cast<uint8_t>(bits)};
        if (free_of_others(candidate)) {
          cidr = candidate.ToString();
          break;
        }
      }
      if (cidr.empty()) {
        return MakeError(ErrorCode::kResourceExhausted,
                         "--cluster-cidr " + cluster_cidr->ToString() + ": every /" +
                             std::to_string(bits) + " range is claimed by another node");
      }
    }
    range = workloads::Cidr::Parse(cidr);
    if (!range)
      return MakeError(ErrorCode::kInvalidArgument, "--node-cidr: " + range.error().message);
    if (Status s = free_of_others(*range); !s) return s.error();
    auto claim = Await<etcdpb::TxnResponse>(loop, [&](auto done) {
      const std::string key = c.keys_.Cidr(range->ToString());
      etcdpb::TxnRequest txn;
      CompareAbsent(txn, key);
      auto* put = txn.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(config.node_name);
      txn.add_failure()->mutable_request_range()->set_key(key);
      c.etcd_->Txn(txn, done);
    });
    if (!claim) return MakeError(claim.error().code, "etcd: " + claim.error().message);
    if (claim->succeeded()) break;
    const auto& kvs = claim->responses(0).response_range().kvs();
    if (kvs.empty() || kvs[0].value() == config.node_name) break;  // ours already
    if (!derived || attempt == kMaxClaimAttempts) {
      return MakeError(
          ErrorCode::kAlreadyExists,
          "workload range " + range->ToString() + " is claimed by node \"" + kvs[0].value() + "\"");
    }
    // Another node took this range a moment ago: try the next free one.
    held.emplace_back(*range, kvs[0].value());
    cidr.clear();
  }
  record.cidr = range->ToString();
  config.node_cidr = record.cidr;

  // The node's intermediate CA, signed by the cluster root.
  auto root_reply = Await<etcdpb::RangeResponse>(
      loop, [&](auto done) { c.etcd_->Range(Get(c.keys_.RootCert()), done); });
  if (!root_reply) return MakeError(root_reply.error().code, "etcd: " + root_reply.error().message);
  if (root_reply->kvs().empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the cluster has no CA yet (no " + c.keys_.RootCert() +
                         " in etcd): create it once with `podless ca init --etcd URL --out DIR`");
  }
  const std::string root_pem = root_reply->kvs(0).value();
  const std::string cert_path = dir + kCaCertFile, key_path = dir + kCaKeyFile;
  auto existing =
      workloads::CertificateAuthority::LoadFromFiles(cert_path, key_path, config.trust_domain);
  const bool reuse = existing && (*existing)->BundlePem() == root_pem &&
                     (*existing)->not_after() - time(nullptr) > kIntermediateTtl.count() / 4;
  if (!reuse) {
    workloads::CertificateAuthorityPtr root;
    if (!config.ca_cert.empty()) {
      auto loaded = workloads::CertificateAuthority::LoadFromFiles(config.ca_cert, config.ca_key,
                                                                   config.trust_domain);
      if (!loaded) return loaded.error();
      root = std::move(*loaded);
    } else {
      auto key_reply = Await<etcdpb::RangeResponse>(
          loop, [&](auto done) { c.etcd_->Range(Get(c.keys_.RootKey()), done); });
      if (!key_reply)
        return MakeError(key_reply.error().code, "etcd: " + key_reply.error().message);
      if (key_reply->kvs().empty()) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "cannot sign this node's intermediate CA: the cluster root key is not in "
                         "etcd; pass the root with --ca-cert/--ca-key (from `podless ca init "
                         "--out DIR`) or create the cluster with --store-root-key");
      }
      auto loaded = workloads::CertificateAuthority::LoadFromPem(
          root_pem, key_reply->kvs(0).value(), "etcd " + c.keys_.RootCert(), config.trust_domain);
      if (!loaded) return loaded.error();
      root = std::move(*loaded);
    }
    if (root->BundlePem() != root_pem) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "--ca-cert is not the cluster root in etcd (" + c.keys_.RootCert() + ")");
    }
    auto intermediate = root->IssueIntermediate(config.node_name, kIntermediateTtl);
    if (!intermediate) return intermediate.error();
    if (Status s = workloads::WriteFileAtomically(key_path, (*intermediate)->PrivateKeyPem()); !s) {
      return s.error();
    }
    if (Status s = workloads::WriteFileAtomically(
            cert_path, (*intermediate)->CertificateChainPem() + root_pem, 0644);
        !s) {
      return s.error();
    }
  }
  config.ca_cert = cert_path;
  config.ca_key = key_path;
  if (Status s = WriteJoinRecord(dir + kJoinFile, record); !s) return s.error();

  c.self_.cidr = record.cidr;
  c.config_ = config;
  auto claimed = Await<bool>(loop, [&](auto done) {
    c.ClaimNode([done](Status s) { done(s ? Result<bool>(true) : Result<bool>(s.error())); });
  });
  if (!claimed) return claimed.error();
  return cluster;
}

Status InitClusterCa(const ClusterCaInit& options) {
  if (options.out_dir.empty())
    return MakeError(ErrorCode::kInvalidArgument, "--out DIR is required");
  auto root = workloads::CertificateAuthority::LoadOrCreate(options.out_dir, options.trust_domain);
  if (!root) return root.error();
  const std::string cert_pem = (*root)->BundlePem();
  auto key_pem = workloads::ReadSmallFile(options.out_dir + "/ca.key");
  if (!key_pem) return key_pem.error();

  proxy::UvLoop loop;
  auto etcd = EtcdClient::Create(
      loop.get(), EtcdOptions{.endpoints = options.etcd_endpoints, .tls = options.etcd_tls});
  if (!etcd) return EtcdFlagError(etcd.error());
  const ClusterKeys keys{options.etcd_prefix};
  auto reply = Await<etcdpb::TxnResponse>(loop.get(), [&](auto done) {
    etcdpb::TxnRequest txn;
    CompareAbsent(txn, keys.RootCert());
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(keys.RootCert());
    put->set_value(cert_pem);
    if (options.store_root_key) {
      auto* put_key = txn.add_success()->mutable_request_put();
      put_key->set_key(keys.RootKey());
      put_key->set_value(*key_pem);
    }
    txn.add_failure()->mutable_request_range()->set_key(keys.RootCert());
    (*etcd)->Txn(txn, done);
  });
  Status result;
  if (!reply) {
    result = MakeError(reply.error().code,
                       "etcd " + (*etcd)->current_endpoint() + ": " + reply.error().message);
  } else if (!reply->succeeded()) {
    const auto& kvs = reply->responses(0).response_range().kvs();
    if (kvs.empty() || kvs[0].value() != cert_pem) {
      result = MakeError(ErrorCode::kAlreadyExists,
                         "the cluster already has another root CA (" + keys.RootCert() +
                             " in etcd); `podless ca init` runs once per cluster");
    }
  }
  (*etcd)->Close();
  etcd->reset();
  uv_run(loop.get(), UV_RUN_DEFAULT);
  return result;
}

}  // namespace podless::runtime
