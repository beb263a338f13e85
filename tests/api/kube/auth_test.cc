#include "api/kube/auth.h"

#include <doctest.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <string>

#include "workloads/certificate_authority.h"

namespace podless::api::kube {
namespace {

using namespace std::chrono_literals;
namespace wl = workloads;

struct Fixture {
  wl::CertificateAuthorityPtr ca =
      wl::CertificateAuthority::CreateInMemory("cluster.local").value();
  wl::CertificateAuthorityPtr other =
      wl::CertificateAuthority::CreateInMemory("cluster.local").value();
  bssl::UniquePtr<X509_STORE> trust = ca->NewTrustStore();
  int64_t now = static_cast<int64_t>(time(nullptr));

  AuthDecision Decide(const wl::SvidPtr& svid, int64_t at = 0) {
    bssl::UniquePtr<X509> leaf = svid->ParseLeaf();
    return Authenticate(leaf.get(), nullptr, trust.get(), at == 0 ? now : at);
  }
};

TEST_CASE("KubeAuth: the agent's admin certificate is served") {
  Fixture f;
  auto admin = f.ca->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(admin.ok());
  AuthDecision decision = f.Decide(*admin);
  CHECK(decision.outcome == AuthOutcome::kAdmin);
  CHECK(decision.user == "podless-admin");
  CHECK(decision.http_status() == 200);
}

TEST_CASE("KubeAuth: no certificate is 401") {
  Fixture f;
  AuthDecision decision = Authenticate(nullptr, nullptr, f.trust.get(), f.now);
  CHECK(decision.outcome == AuthOutcome::kNoCertificate);
  CHECK(decision.http_status() == 401);
}

TEST_CASE("KubeAuth: an admin certificate of another CA is 401") {
  Fixture f;
  auto foreign = f.other->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(foreign.ok());
  AuthDecision decision = f.Decide(*foreign);
  CHECK(decision.outcome == AuthOutcome::kUntrusted);
  CHECK(decision.http_status() == 401);
  CHECK(decision.reason.find("not signed by this agent's CA") != std::string::npos);
}

TEST_CASE("KubeAuth: an expired admin certificate is 401") {
  Fixture f;
  auto admin = f.ca->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(admin.ok());
  CHECK(f.Decide(*admin, f.now + 2 * 3600).outcome == AuthOutcome::kUntrusted);
}

TEST_CASE("KubeAuth: a workload's SVID or another name of the agent's CA is 403") {
  Fixture f;
  auto svid = f.ca->IssueSvid(wl::SpiffeId{"cluster.local", "/ns/default/sa/web"}, 1h);
  REQUIRE(svid.ok());
  AuthDecision decision = f.Decide(*svid);
  CHECK(decision.outcome == AuthOutcome::kNotAdmin);
  CHECK(decision.http_status() == 403);
  CHECK(decision.user == "spiffe://cluster.local/ns/default/sa/web");

  auto other_name = f.ca->IssueTlsCertificate("someone", {}, {}, 1h);
  REQUIRE(other_name.ok());
  CHECK(f.Decide(*other_name).outcome == AuthOutcome::kNotAdmin);
  // The API server's own certificate is no client's.
  auto server =
      f.ca->IssueTlsCertificate("podless-kube-apiserver", {"localhost"}, {0x7f000001}, 1h);
  REQUIRE(server.ok());
  CHECK(f.Decide(*server).outcome == AuthOutcome::kNotAdmin);
}

TEST_CASE("KubeAuth: the server certificate names localhost and 127.0.0.1, and no SPIFFE ID") {
  Fixture f;
  auto server = f.ca->IssueTlsCertificate("podless-kube-apiserver", {"localhost"},
                                          {0x7f000001, 0x0a000001}, 1h);
  REQUIRE(server.ok());
  bssl::UniquePtr<X509> leaf = (*server)->ParseLeaf();
  CHECK(X509_check_host(leaf.get(), "localhost", 9, 0, nullptr) == 1);
  CHECK(X509_check_ip_asc(leaf.get(), "127.0.0.1", 0) == 1);
  CHECK(X509_check_ip_asc(leaf.get(), "10.0.0.1", 0) == 1);
  CHECK(X509_check_ip_asc(leaf.get(), "127.0.0.2", 0) == 0);
  bssl::UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf.get(), NID_subject_alt_name, nullptr, nullptr)));
  REQUIRE(names);
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    CHECK(sk_GENERAL_NAME_value(names.get(), i)->type != GEN_URI);
  }
  auto ctx = NewServerContext(*f.ca, {"localhost", "127.0.0.1", "0.0.0.0"});
  CHECK(ctx.ok());
}

}  // namespace
}  // namespace podless::api::kube
