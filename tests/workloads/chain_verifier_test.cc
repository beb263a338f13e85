#include "workloads/chain_verifier.h"

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/temp_dir.h"
#include "workloads/certificate_authority.h"
#include "workloads/pem_file.h"

using namespace podless::workloads;
using podless::ErrorCode;
using podless::Result;
using std::chrono::hours;

namespace {

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bssl::UniquePtr<EVP_PKEY> NewKey() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  REQUIRE(EC_KEY_generate_key(ec.get()));
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  REQUIRE(EVP_PKEY_assign_EC_KEY(key.get(), ec.release()));
  return key;
}

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  REQUIRE(ext);
  REQUIRE(X509_add_ext(cert, ext.get(), -1));
}

// What a hand-built test certificate should look like; the defaults make a
// valid SVID leaf.
struct LeafOptions {
  std::string san = "URI:spiffe://cluster.local/ns/a/sa/b";  // empty: no SAN extension
  std::string basic_constraints = "critical,CA:FALSE";
  std::string key_usage = "critical,digitalSignature";
  int64_t not_before = Now() - 60;
  int64_t not_after = Now() + 3600;
  bool self_signed = false;
};

// A test issuer built from a CertificateAuthority's files, so test certificates
// chain to a real podless root.
struct TestIssuer {
  podless::testing::TempDir temp_dir{"podless-cv"};
  std::string dir = temp_dir.path();
  CertificateAuthorityPtr ca;
  bssl::UniquePtr<X509> cert;
  bssl::UniquePtr<EVP_PKEY> key;

  TestIssuer() {
    auto loaded = CertificateAuthority::LoadOrCreate(dir, "cluster.local");
    REQUIRE(loaded.ok());
    ca = std::move(loaded).value();
    auto certs = ReadCertificatesFile(dir + "/ca.crt");
    REQUIRE(certs.ok());
    cert = std::move((*certs)[0]);
    auto k = ReadPrivateKeyFile(dir + "/ca.key");
    REQUIRE(k.ok());
    key = std::move(k).value();
  }

  bssl::UniquePtr<X509> MakeLeaf(const LeafOptions& o) {
    bssl::UniquePtr<EVP_PKEY> leaf_key = NewKey();
    bssl::UniquePtr<X509> leaf(X509_new());
    REQUIRE(X509_set_version(leaf.get(), X509_VERSION_3));
    bssl::UniquePtr<BIGNUM> serial(BN_new());
    REQUIRE(BN_rand(serial.get(), 64, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY));
    REQUIRE(BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(leaf.get())));
    X509_NAME* name = X509_get_subject_name(leaf.get());
    REQUIRE(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                       reinterpret_cast<const uint8_t*>("test"), -1, -1, 0));
    X509* issuer = o.self_signed ? leaf.get() : cert.get();
    REQUIRE(X509_set_issuer_name(leaf.get(), X509_get_subject_name(issuer)));
    bssl::UniquePtr<ASN1_TIME> nb(ASN1_TIME_set(nullptr, o.not_before));
    bssl::UniquePtr<ASN1_TIME> na(ASN1_TIME_set(nullptr, o.not_after));
    REQUIRE(X509_set1_notBefore(leaf.get(), nb.get()));
    REQUIRE(X509_set1_notAfter(leaf.get(), na.get()));
    REQUIRE(X509_set_pubkey(leaf.get(), leaf_key.get()));
    AddExt(leaf.get(), issuer, NID_basic_constraints, o.basic_constraints.c_str());
    if (!o.key_usage.empty()) AddExt(leaf.get(), issuer, NID_key_usage, o.key_usage.c_str());
    if (!o.san.empty()) AddExt(leaf.get(), issuer, NID_subject_alt_name, o.san.c_str());
    REQUIRE(X509_sign(leaf.get(), o.self_signed ? leaf_key.get() : key.get(), EVP_sha256()) > 0);
    return leaf;
  }

  Result<SpiffeId> Verify(X509* leaf, int64_t now = Now(),
                          std::string_view trust_domain = "cluster.local") {
    bssl::UniquePtr<X509_STORE> store = ca->NewTrustStore();
    return VerifySpiffeChain(leaf, nullptr, store.get(), trust_domain, now);
  }
};

void CheckRejected(const Result<SpiffeId>& result, const std::string& reason) {
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ErrorCode::kPermissionDenied);
  CHECK_MESSAGE(result.error().message.find(reason) != std::string::npos, result.error().message);
}

}  // namespace

TEST_CASE("VerifySpiffeChain: accepts a valid SVID and returns its ID") {
  TestIssuer issuer;
  auto hand_built = issuer.Verify(issuer.MakeLeaf({}).get());
  REQUIRE_MESSAGE(hand_built.ok(), hand_built.error().message);
  CHECK(hand_built->ToString() == "spiffe://cluster.local/ns/a/sa/b");

  auto svid =
      issuer.ca->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "shop", "web"), hours(1));
  REQUIRE(svid.ok());
  auto issued = issuer.Verify((*svid)->ParseLeaf().get());
  REQUIRE(issued.ok());
  CHECK(issued->ToString() == "spiffe://cluster.local/ns/shop/sa/web");
}

TEST_CASE("VerifySpiffeChain: rejects an expired certificate") {
  TestIssuer issuer;
  LeafOptions o;
  o.not_before = Now() - 7200;
  o.not_after = Now() - 3600;
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()), "certificate expired");

  // The same with an issued SVID, checked at a time after its expiry.
  auto svid =
      issuer.ca->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(svid.ok());
  CheckRejected(issuer.Verify((*svid)->ParseLeaf().get(), (*svid)->not_after + 1),
                "certificate expired");
}

TEST_CASE("VerifySpiffeChain: rejects a certificate that is not yet valid") {
  TestIssuer issuer;
  LeafOptions o;
  o.not_before = Now() + 3600;
  o.not_after = Now() + 7200;
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()), "certificate not yet valid");
}

TEST_CASE("VerifySpiffeChain: rejects a leaf without a URI SAN") {
  TestIssuer issuer;
  LeafOptions no_san;
  no_san.san = "";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(no_san).get()), "no URI SAN");
  LeafOptions dns_only;
  dns_only.san = "DNS:web.shop.svc";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(dns_only).get()), "no URI SAN");
}

TEST_CASE("VerifySpiffeChain: rejects a leaf with two URI SANs") {
  TestIssuer issuer;
  LeafOptions o;
  o.san = "URI:spiffe://cluster.local/ns/a/sa/b,URI:spiffe://cluster.local/ns/a/sa/c";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()), "2 URI SANs");
}

TEST_CASE("VerifySpiffeChain: rejects a foreign trust domain") {
  TestIssuer issuer;
  LeafOptions o;
  o.san = "URI:spiffe://example.org/ns/a/sa/b";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()),
                "trust domain example.org is not cluster.local");
}

TEST_CASE("VerifySpiffeChain: rejects a URI SAN that is not a SPIFFE ID") {
  TestIssuer issuer;
  LeafOptions o;
  o.san = "URI:https://cluster.local/ns/a/sa/b";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()), "not a SPIFFE ID");
  o.san = "URI:spiffe://cluster.local";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()), "has no path");
}

TEST_CASE("VerifySpiffeChain: rejects a CA certificate as the leaf") {
  TestIssuer issuer;
  LeafOptions o;
  o.basic_constraints = "critical,CA:TRUE";
  o.key_usage = "critical,digitalSignature,keyCertSign";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()), "leaf certificate is a CA");

  LeafOptions signer;
  signer.key_usage = "critical,digitalSignature,keyCertSign";
  CheckRejected(issuer.Verify(issuer.MakeLeaf(signer).get()), "keyCertSign");
}

TEST_CASE("VerifySpiffeChain: rejects untrusted and self-signed leaves") {
  TestIssuer issuer;
  TestIssuer stranger;
  CheckRejected(issuer.Verify(stranger.MakeLeaf({}).get()), "untrusted issuer");
  LeafOptions o;
  o.self_signed = true;
  CheckRejected(issuer.Verify(issuer.MakeLeaf(o).get()), "untrusted issuer");
  CheckRejected(issuer.Verify(nullptr), "no certificate");
}

TEST_CASE("ParsePemCertificates: reads PEM chains and DER, rejects garbage") {
  TestIssuer issuer;
  auto svid =
      issuer.ca->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(svid.ok());
  std::string chain = (*svid)->CertificateChainPem() + issuer.ca->BundlePem();

  auto parsed = ParsePemCertificates(chain);
  REQUIRE(parsed.ok());
  CHECK(parsed->size() == 2);
  // Text around and between blocks, and other block types, are skipped.
  auto noisy = ParsePemCertificates("subject=...\n" + chain + (*svid)->PrivateKeyPem() + "bye\n");
  REQUIRE(noisy.ok());
  CHECK(noisy->size() == 2);

  std::vector<uint8_t> der = (*svid)->LeafDer();
  std::string der_text(der.begin(), der.end());
  auto from_der = ParsePemCertificates(der_text + der_text);
  REQUIRE(from_der.ok());
  CHECK(from_der->size() == 2);

  CHECK_FALSE(ParsePemCertificates("").ok());
  CHECK_FALSE(ParsePemCertificates("hello").ok());
  CHECK_FALSE(ParsePemCertificates("-----BEGIN CERTIFICATE-----\n").ok());
  CHECK_FALSE(ParsePemCertificates(chain.substr(0, chain.size() / 3)).ok());
  CHECK_FALSE(ParsePemCertificates(der_text.substr(0, der_text.size() - 1)).ok());
  CHECK_FALSE(ParsePemCertificates(std::string(2 << 20, 'A')).ok());
}

TEST_CASE("ParsePemCertificates: survives mutated input and verifies what it parses") {
  TestIssuer issuer;
  auto svid =
      issuer.ca->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(svid.ok());
  std::vector<uint8_t> der = (*svid)->LeafDer();
  std::string pem = (*svid)->CertificateChainPem();
  bssl::UniquePtr<X509_STORE> store = issuer.ca->NewTrustStore();

  std::mt19937 rng(12345);
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string input = (i % 2 == 0) ? std::string(der.begin(), der.end()) : pem;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      input[rng() % input.size()] = static_cast<char>(rng());
    }
    if (rng() % 8 == 0) input.resize(rng() % input.size());
    auto certs = ParsePemCertificates(input);
    if (!certs.ok()) continue;
    auto id = VerifySpiffeChain((*certs)[0].get(), nullptr, store.get(), "cluster.local", Now());
    // A mutation that leaves a verifiable certificate (say, a byte replaced
    // by itself) cannot have changed whose it is.
    if (id.ok()) {
      ++accepted;
      CHECK(id->ToString() == "spiffe://cluster.local/ns/a/sa/b");
    }
  }
  // Almost every mutation breaks the encoding or the signature.
  CHECK(accepted < 300);
}
