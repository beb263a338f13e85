// FakeDirectory: an in-memory Directory for the proxy tests, with its own
// CA, and helpers to run a libuv loop inside a test.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "proxy/directory.h"
#include "tests/testing/files.h"
#include "tests/testing/free_port.h"
#include "tests/testing/run_loop.h"
#include "tests/testing/temp_dir.h"
#include "workloads/certificate_authority.h"

namespace podless::proxy::testing {

inline uint32_t Ip(const char* text) {
  in_addr addr{};
  inet_pton(AF_INET, text, &addr);
  return ntohl(addr.s_addr);
}

class FakeDirectory final : public Directory {
 public:
  explicit FakeDirectory(std::string trust_domain = "cluster.local")
      : trust_domain_(std::move(trust_domain)),
        ca_(std::move(workloads::CertificateAuthority::CreateInMemory(trust_domain_)).value()),
        trust_(ca_->NewTrustStore()) {}
  // With a CA kept in `ca_dir` (ca.crt, ca.key), for tests that sign by hand.
  FakeDirectory(const std::string& ca_dir, std::string trust_domain)
      : trust_domain_(std::move(trust_domain)),
        ca_(std::move(workloads::CertificateAuthority::LoadOrCreate(ca_dir, trust_domain_))
                .value()),
        trust_(ca_->NewTrustStore()) {}

  struct Entry {
    LocalReplica replica;
    workloads::WorkloadSpec spec;
    workloads::Labels labels;
    workloads::SvidPtr svid;
  };

  // Adds a hosted replica "<workload>-0" in `ns` with service account `sa`.
  LocalReplica& AddReplica(const char* address, std::string workload, std::string ns,
                           std::string sa, std::vector<workloads::PortSpec> ports,
                           workloads::AppSpec app = workloads::EchoApp{},
                           workloads::Labels labels = {}) {
    auto entry = std::make_unique<Entry>();
    entry->spec.ports = std::move(ports);
    entry->spec.app = std::move(app);
    entry->spec.service_account = sa;
    entry->labels = labels.empty() ? workloads::Labels{{"app", workload}} : std::move(labels);
    entry->replica.address = Ip(address);
    entry->replica.name = workload + "-0";
    entry->replica.workload = workload;
    entry->replica.ns = ns;
    entry->replica.spiffe_id =
        workloads::SpiffeId::ForServiceAccount(trust_domain_, ns, sa).ToString();
    entry->replica.spec = &entry->spec;
    entry->replica.labels = &entry->labels;
    LocalReplica& replica = entry->replica;
    replicas_[replica.address] = std::move(entry);
    return replica;
  }
  void RemoveReplica(const char* address) { replicas_.erase(Ip(address)); }

  void AddPolicy(workloads::AuthorizationPolicy policy) { policies_.push_back(std::move(policy)); }
  void ClearPolicies() { policies_.clear(); }
  void AddCredentials(std::string user, std::string password, const char* address) {
    credentials_[user] = {std::move(password), Ip(address)};
  }
  // A name (or VIP text) resolving to endpoints.
  void AddName(std::string host, Destination destination) { names_[host] = std::move(destination); }
  // Where remote (non-local) endpoints' HBONE is served.
  uint16_t hbone_port = 15008;
  // Replicas reachable at their address but served by "another node": not
  // local, so the proxy dials HBONE to them.
  std::map<uint32_t, std::string> remote_identities;

  workloads::CertificateAuthority& ca() { return *ca_; }
  int certificate_calls = 0;

  // Directory
  const LocalReplica* FindLocalReplica(uint32_t address) const override {
    auto it = replicas_.find(address);
    return it == replicas_.end() ? nullptr : &it->second->replica;
  }
  // Issues inline (a test's loop has nothing else to serve).
  void CertificateAsync(const LocalReplica& replica,
                        std::function<void(Result<workloads::SvidPtr>)> done) override {
    done(Certificate(replica));
  }
  Result<workloads::SvidPtr> Certificate(const LocalReplica& replica) {
    ++certificate_calls;
    auto& entry = *replicas_.at(replica.address);
    if (!entry.svid) {
      auto id = workloads::SpiffeId::Parse(replica.spiffe_id);
      if (!id.ok()) return id.error();
      auto svid = ca_->IssueSvid(*id, std::chrono::hours(1));
      if (!svid.ok()) return svid.error();
      entry.svid = *svid;
    }
    return entry.svid;
  }
  X509_STORE* TrustStore() const override { return trust_.get(); }
  const std::string& TrustDomain() const override { return trust_domain_; }
  std::vector<const workloads::AuthorizationPolicy*> PoliciesFor(
      const LocalReplica& replica) const override {
    std::vector<const workloads::AuthorizationPolicy*> out;
    for (const auto& p : policies_) {
      if (p.metadata.ns == replica.ns) out.push_back(&p);
    }
    return out;
  }
  const LocalReplica* Authenticate(std::string_view user,
                                   std::string_view password) const override {
    auto it = credentials_.find(std::string(user));
    if (it == credentials_.end() || it->second.first != password) return nullptr;
    return FindLocalReplica(it->second.second);
  }
  Result<Destination> Resolve(std::string_view host, uint16_t port) override {
    auto named = names_.find(std::string(host));
    if (named != names_.end()) {
      Destination d;  // (not copyable: it may own an EndpointSet)
      d.service = named->second.service;
      d.endpoints = named->second.endpoints;
      for (auto& e : d.endpoints) {
        if (e.port == 0) e.port = port;
      }
      return d;
    }
    in_addr addr{};
    std::string text(host);
    if (inet_pton(AF_INET, text.c_str(), &addr) != 1) {
      return MakeError(ErrorCode::kNotFound, "unknown host " + text);
    }
    uint32_t address = ntohl(addr.s_addr);
    Destination d;
    d.service = text;
    Endpoint e;
    e.address = address;
    e.port = port;
    e.hbone_port = hbone_port;
    if (const LocalReplica* r = FindLocalReplica(address)) {
      e.spiffe_id = r->spiffe_id;
      e.workload = r->workload;
      e.ns = r->ns;
      e.local = !force_remote;
    } else if (auto it = remote_identities.find(address); it != remote_identities.end()) {
      e.spiffe_id = it->second;
    }
    d.endpoints.push_back(e);
    return d;
  }
  // Treat hosted replicas as remote (dial HBONE to ourselves).
  bool force_remote = false;
  // (replica address, port) that a STRICT PeerAuthentication closes to plaintext.
  std::set<std::pair<uint32_t, uint16_t>> strict_ports;
  bool PlaintextAllowed(const LocalReplica& replica, uint16_t port) const override {
    return strict_ports.count({replica.address, port}) == 0;
  }

 private:
  std::string trust_domain_;
  workloads::CertificateAuthorityPtr ca_;
  bssl::UniquePtr<X509_STORE> trust_;
  std::map<uint32_t, std::unique_ptr<Entry>> replicas_;
  std::vector<workloads::AuthorizationPolicy> policies_;
  std::map<std::string, std::pair<std::string, uint32_t>> credentials_;
  std::map<std::string, Destination> names_;
};

using podless::testing::FreePort;
using podless::testing::FreeWildcardPort;

// tests/testing/run_loop.h's RunUntil with the proxy tests' 5 s default.
inline bool RunUntil(uv_loop_t* loop, const std::function<bool()>& done, int timeout_ms = 5000) {
  return podless::testing::RunUntil(loop, done, std::chrono::milliseconds(timeout_ms));
}

// Runs `loop` while `blocking` (e.g. a subprocess) runs on another thread;
// returns when it has finished.
inline void RunLoopDuring(uv_loop_t* loop, const std::function<void()>& blocking) {
  std::atomic<bool> finished{false};
  std::thread worker([&] {
    blocking();
    finished = true;
  });
  RunUntil(
      loop, [&] { return finished.load(); }, 60000);
  worker.join();
}

// Runs a shell command, returns its stdout.
inline std::string Capture(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  return out;
}

using podless::testing::WriteFile;

// A temp dir removed at scope exit (tests/testing/temp_dir.h).
struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-proxy-test") {}
};

}  // namespace podless::proxy::testing
