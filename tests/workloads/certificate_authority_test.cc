#include "workloads/certificate_authority.h"

#include <doctest/doctest.h>
#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"
#include "workloads/chain_verifier.h"
#include "workloads/pem_file.h"

using namespace podless::workloads;
using podless::ErrorCode;
using podless::Result;
using std::chrono::hours;
using std::chrono::seconds;

namespace {

struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-ca") {}
};

// Writes a file only its owner may read, as a key file must be.
void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
  out.close();
  REQUIRE(chmod(path.c_str(), 0600) == 0);
}

using podless::testing::ReadFile;

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs a shell command with stderr folded into stdout.
CommandResult Run(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) result.output.append(buf, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// `openssl verify` with the stock tool: the bundle as CA file, the SVID's
// intermediates as untrusted certificates.
CommandResult OpensslVerify(const TempDir& dir, const std::string& bundle_pem, const Svid& svid) {
  WriteText(dir / "bundle.pem", bundle_pem);
  WriteText(dir / "leaf.pem", CertificateToPem(svid.ParseLeaf().get()));
  std::string command = "/usr/bin/openssl verify -CAfile " + (dir / "bundle.pem");
  if (!svid.intermediates.empty()) {
    std::string chain;
    for (const auto& c : svid.intermediates)
      chain += CertificateDerToPem(CryptoBufferBytes(c.get()));
    WriteText(dir / "untrusted.pem", chain);
    command += " -untrusted " + (dir / "untrusted.pem");
  }
  return Run(command + " " + (dir / "leaf.pem"));
}

std::string Der(X509* cert) {
  uint8_t* der = nullptr;
  int len = i2d_X509(cert, &der);
  std::string out(reinterpret_cast<char*>(der), len);
  OPENSSL_free(der);
  return out;
}

int64_t Now() {
  return std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

size_t CountOccurrences(const std::string& haystack, const std::string& needle) {
  size_t count = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1)) {
    ++count;
  }
  return count;
}

Result<SpiffeId> Verify(const CertificateAuthority& ca, const Svid& svid, int64_t now = Now()) {
  bssl::UniquePtr<X509_STORE> store = ca.NewTrustStore();
  bssl::UniquePtr<STACK_OF(X509)> chain(sk_X509_new_null());
  for (const auto& c : svid.intermediates)
    sk_X509_push(chain.get(), X509_parse_from_buffer(c.get()));
  return VerifySpiffeChain(svid.ParseLeaf().get(), chain.get(), store.get(), ca.trust_domain(),
                           now);
}

}  // namespace

TEST_CASE("CertificateAuthority: an issued SVID passes stock openssl verify") {
  TempDir dir;
  auto ca = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  SpiffeId id = SpiffeId::ForServiceAccount("cluster.local", "shop", "web");
  auto svid = (*ca)->IssueSvid(id, hours(24));
  REQUIRE(svid.ok());
  CHECK((*svid)->intermediates.empty());

  CommandResult verify = OpensslVerify(dir, (*ca)->BundlePem(), **svid);
  CHECK_MESSAGE(verify.exit_code == 0, verify.output);
  CHECK(verify.output.find(": OK") != std::string::npos);

  CommandResult text = Run("/usr/bin/openssl x509 -noout -text -in " + (dir / "leaf.pem"));
  REQUIRE(text.exit_code == 0);
  CHECK_MESSAGE(CountOccurrences(text.output, "URI:") == 1, text.output);
  CHECK(text.output.find("URI:spiffe://cluster.local/ns/shop/sa/web") != std::string::npos);
  CHECK(text.output.find("CA:FALSE") != std::string::npos);
  CHECK(text.output.find("Digital Signature") != std::string::npos);
  CHECK(text.output.find("Certificate Sign") == std::string::npos);
  CHECK(text.output.find("TLS Web Server Authentication, TLS Web Client Authentication") !=
        std::string::npos);
  CHECK(text.output.find("prime256v1") != std::string::npos);
  CHECK(text.output.find("X509v3 Authority Key Identifier") != std::string::npos);
}

TEST_CASE("CertificateAuthority: the root is a well-formed CA") {
  TempDir dir;
  auto ca = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  WriteText(dir / "root.pem", (*ca)->BundlePem());
  CommandResult text = Run("/usr/bin/openssl x509 -noout -text -in " + (dir / "root.pem"));
  REQUIRE(text.exit_code == 0);
  CHECK(text.output.find("CA:TRUE") != std::string::npos);
  CHECK(text.output.find("Certificate Sign, CRL Sign") != std::string::npos);
  CHECK(text.output.find("O = podless, CN = podless root CA cluster.local") != std::string::npos);
  CHECK(text.output.find("URI:spiffe://cluster.local") != std::string::npos);
  CHECK(text.output.find("X509v3 Subject Key Identifier") != std::string::npos);
  // Ten years, give or take the clock-skew backdating.
  CHECK((*ca)->not_after() - Now() > 3650LL * 86400 - 120);
}

TEST_CASE("CertificateAuthority: SVID fields, serials and DER forms") {
  auto ca = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  int64_t before = Now();
  auto svid = (*ca)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(svid.ok());
  const Svid& s = **svid;
  CHECK(s.id.ToString() == "spiffe://cluster.local/ns/a/sa/b");
  CHECK(s.serial_hex.size() == 32);
  CHECK(s.not_before >= before - 61);
  CHECK(s.not_before <= Now() - 59);
  CHECK(s.not_after - s.not_before == 3600 + 60);

  // The PKCS#8 DER key parses and belongs to the leaf.
  std::vector<uint8_t> key_der = s.PrivateKeyPkcs8Der();
  REQUIRE_FALSE(key_der.empty());
  CBS cbs;
  CBS_init(&cbs, key_der.data(), key_der.size());
  bssl::UniquePtr<EVP_PKEY> key(EVP_parse_private_key(&cbs));
  REQUIRE(key);
  CHECK(X509_check_private_key(s.ParseLeaf().get(), key.get()) == 1);
  CHECK(s.PrivateKeyPem().find("-----BEGIN PRIVATE KEY-----") == 0);

  std::vector<uint8_t> leaf_der = s.LeafDer();
  const uint8_t* p = leaf_der.data();
  bssl::UniquePtr<X509> leaf(d2i_X509(nullptr, &p, static_cast<long>(leaf_der.size())));
  REQUIRE(leaf);
  CHECK(X509_cmp(leaf.get(), s.ParseLeaf().get()) == 0);

  auto other = (*ca)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(other.ok());
  CHECK((*other)->serial_hex != s.serial_hex);
}

TEST_CASE("CertificateAuthority: SVID lifetime is capped at the CA's expiry") {
  auto ca = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  auto svid = (*ca)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"),
                               hours(24 * 365 * 20));
  REQUIRE(svid.ok());
  CHECK((*svid)->not_after == (*ca)->not_after());
}

TEST_CASE("CertificateAuthority: refuses IDs of another trust domain and bad lifetimes") {
  auto ca = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  auto foreign = (*ca)->IssueSvid(SpiffeId::ForServiceAccount("example.org", "a", "b"), hours(1));
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.error().code == ErrorCode::kInvalidArgument);
  CHECK(foreign.error().message.find("trust domain example.org is not cluster.local") !=
        std::string::npos);

  auto bad_id = (*ca)->IssueSvid(SpiffeId{"cluster.local", "/a//b"}, hours(1));
  CHECK_FALSE(bad_id.ok());
  auto no_path = (*ca)->IssueSvid(SpiffeId{"cluster.local", ""}, hours(1));
  CHECK_FALSE(no_path.ok());
  auto zero_ttl =
      (*ca)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), seconds(0));
  CHECK_FALSE(zero_ttl.ok());

  CHECK_FALSE(CertificateAuthority::CreateInMemory("Bad_TD").ok());
}

TEST_CASE("CertificateAuthority: a certificate from another CA fails verification") {
  TempDir dir;
  auto ca = CertificateAuthority::CreateInMemory("cluster.local");
  auto other = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  REQUIRE(other.ok());
  auto svid = (*other)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(svid.ok());

  CommandResult verify = OpensslVerify(dir, (*ca)->BundlePem(), **svid);
  CHECK(verify.exit_code != 0);

  auto peer = Verify(**ca, **svid);
  REQUIRE_FALSE(peer.ok());
  CHECK(peer.error().message.find("untrusted issuer") != std::string::npos);
  CHECK(Verify(**other, **svid).ok());
}

TEST_CASE("CertificateAuthority: LoadOrCreate persists the root and reloads the same one") {
  TempDir dir;
  std::string state = dir / "state";
  auto created = CertificateAuthority::LoadOrCreate(state, "cluster.local");
  REQUIRE(created.ok());

  struct stat st;
  REQUIRE(stat((state + "/ca.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(stat((state + "/ca.crt").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(ReadFile(state + "/ca.key").find("-----BEGIN PRIVATE KEY-----") == 0);
  // No temporary files are left behind.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(state)) ++entries;
  CHECK(entries == 2);

  auto reloaded = CertificateAuthority::LoadOrCreate(state, "cluster.local");
  REQUIRE(reloaded.ok());
  CHECK(Der((*reloaded)->roots()[0].get()) == Der((*created)->roots()[0].get()));
  CHECK((*reloaded)->BundlePem() == (*created)->BundlePem());

  // The reloaded CA signs with the same key: its SVIDs verify against the
  // original bundle.
  auto svid =
      (*reloaded)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(svid.ok());
  CHECK(Verify(**created, **svid).ok());
}

TEST_CASE("CertificateAuthority: LoadOrCreate errors name the corrupt or missing file") {
  TempDir dir;
  std::string state = dir.path();
  REQUIRE(CertificateAuthority::LoadOrCreate(state, "cluster.local").ok());
  std::string good_cert = ReadFile(state + "/ca.crt");
  std::string good_key = ReadFile(state + "/ca.key");

  SUBCASE("corrupt certificate") {
    WriteText(state + "/ca.crt",
              "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(ca.error().message.find(state + "/ca.crt") != std::string::npos,
                  ca.error().message);
  }
  SUBCASE("empty certificate") {
    WriteText(state + "/ca.crt", "");
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.error().message.find(state + "/ca.crt") != std::string::npos);
  }
  SUBCASE("corrupt key") {
    WriteText(state + "/ca.key", good_key.substr(0, good_key.size() / 2));
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(ca.error().message.find(state + "/ca.key") != std::string::npos,
                  ca.error().message);
  }
  SUBCASE("key of another CA") {
    TempDir other;
    REQUIRE(CertificateAuthority::LoadOrCreate(other.path(), "cluster.local").ok());
    WriteText(state + "/ca.key", ReadFile(other / "ca.key"));
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(ca.error().message.find("does not match") != std::string::npos,
                  ca.error().message);
    CHECK(ca.error().message.find(state + "/ca.key") != std::string::npos);
  }
  SUBCASE("key missing") {
    std::filesystem::remove(state + "/ca.key");
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.error().message.find(state + "/ca.key is missing") != std::string::npos);
  }
  SUBCASE("started with another trust domain") {
    auto ca = CertificateAuthority::LoadOrCreate(state, "example.org");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(
        ca.error().message.find("trust domain cluster.local, not example.org") != std::string::npos,
        ca.error().message);
  }
}

TEST_CASE("CertificateAuthority: a CA directory or key others may touch is never used") {
  TempDir dir;
  std::string state = dir / "state";
  REQUIRE(CertificateAuthority::LoadOrCreate(state, "cluster.local").ok());
  const std::string key = state + "/ca.key";

  SUBCASE("ca.key readable by others") {
    REQUIRE(chmod(key.c_str(), 0644) == 0);
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    INFO(ca.error().message);
    CHECK(ca.error().message.find("private key " + key + " is owned by uid ") == 0);
    CHECK(ca.error().message.find("with mode 0644") != std::string::npos);
    CHECK(ca.error().message.find("chmod 0600 " + key) != std::string::npos);
  }
  SUBCASE("ca.key writable by the group") {
    REQUIRE(chmod(key.c_str(), 0620) == 0);
    CHECK_FALSE(CertificateAuthority::LoadOrCreate(state, "cluster.local").ok());
  }
  SUBCASE("ca.key a symbolic link") {
    std::filesystem::rename(key, dir / "elsewhere.key");
    std::filesystem::create_symlink(dir / "elsewhere.key", key);
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(ca.error().message.find(key + " is a symbolic link") != std::string::npos,
                  ca.error().message);
  }
  SUBCASE("the directory writable by others") {
    REQUIRE(chmod(state.c_str(), 0777) == 0);
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(ca.error().message.find("CA directory " + state + " is owned by uid ") == 0,
                  ca.error().message);
  }
  SUBCASE("the directory and key of another user") {
    if (geteuid() != 0) return;  // only root can give files away
    REQUIRE(chown(key.c_str(), 65534, 65534) == 0);
    auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(ca.error().message.find(key + " is owned by uid 65534") != std::string::npos,
                  ca.error().message);
    REQUIRE(chown(state.c_str(), 65534, 65534) == 0);
    ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(ca.error().message.find(state + " is owned by uid 65534") != std::string::npos,
                  ca.error().message);
  }
  SUBCASE("an operator's --ca-key readable by others") {
    auto root = CertificateAuthority::CreateInMemory("cluster.local");
    REQUIRE(root.ok());
    auto intermediate = (*root)->IssueIntermediate("node-a", hours(24));
    REQUIRE(intermediate.ok());
    WriteText(dir / "c.pem", (*intermediate)->CertificateChainPem() + (*root)->BundlePem());
    WriteText(dir / "k.pem", (*intermediate)->PrivateKeyPem());
    REQUIRE(
        CertificateAuthority::LoadFromFiles(dir / "c.pem", dir / "k.pem", "cluster.local").ok());
    REQUIRE(chmod((dir / "k.pem").c_str(), 0640) == 0);
    auto ca = CertificateAuthority::LoadFromFiles(dir / "c.pem", dir / "k.pem", "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK_MESSAGE(
        ca.error().message.find("private key " + (dir / "k.pem") + " is owned by uid ") == 0,
        ca.error().message);
    // An operator's key may be reached through a link (a mounted secret).
    REQUIRE(chmod((dir / "k.pem").c_str(), 0600) == 0);
    std::filesystem::create_symlink(dir / "k.pem", dir / "link.pem");
    CHECK(
        CertificateAuthority::LoadFromFiles(dir / "c.pem", dir / "link.pem", "cluster.local").ok());
  }
}

TEST_CASE("CertificateAuthority: a key left without its certificate gets a new root over it") {
  TempDir dir;
  std::string state = dir.path();
  REQUIRE(CertificateAuthority::LoadOrCreate(state, "cluster.local").ok());
  std::string key_before = ReadFile(state + "/ca.key");
  std::filesystem::remove(state + "/ca.crt");
  auto ca = CertificateAuthority::LoadOrCreate(state, "cluster.local");
  REQUIRE(ca.ok());
  CHECK(ReadFile(state + "/ca.key") == key_before);
  CHECK(std::filesystem::exists(state + "/ca.crt"));
}

TEST_CASE("CertificateAuthority: LoadFromFiles signs through an operator's intermediate") {
  TempDir dir;
  auto root = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(root.ok());
  auto intermediate = (*root)->IssueIntermediate("node-a", hours(24 * 30));
  REQUIRE(intermediate.ok());
  CHECK((*intermediate)->id.ToString() == "spiffe://cluster.local");

  // The operator's file: the signing certificate, then its chain to the root.
  WriteText(dir / "ca.crt", (*intermediate)->CertificateChainPem() + (*root)->BundlePem());
  WriteText(dir / "ca.key", (*intermediate)->PrivateKeyPem());
  auto ca = CertificateAuthority::LoadFromFiles(dir / "ca.crt", dir / "ca.key", "cluster.local");
  REQUIRE_MESSAGE(ca.ok(), ca.error().message);
  CHECK((*ca)->BundlePem() == (*root)->BundlePem());
  CHECK((*ca)->not_after() == (*intermediate)->not_after);

  auto svid =
      (*ca)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "ns1", "sa1"), hours(1));
  REQUIRE(svid.ok());
  REQUIRE((*svid)->intermediates.size() == 1);
  CHECK(CRYPTO_BUFFER_len((*svid)->intermediates[0].get()) ==
        CRYPTO_BUFFER_len((*intermediate)->leaf.get()));
  CHECK(std::memcmp(CRYPTO_BUFFER_data((*svid)->intermediates[0].get()),
                    CRYPTO_BUFFER_data((*intermediate)->leaf.get()),
                    CRYPTO_BUFFER_len((*intermediate)->leaf.get())) == 0);

  CommandResult verify = OpensslVerify(dir, (*root)->BundlePem(), **svid);
  CHECK_MESSAGE(verify.exit_code == 0, verify.output);
  CHECK(verify.output.find(": OK") != std::string::npos);
  auto peer = Verify(**root, **svid);
  REQUIRE_MESSAGE(peer.ok(), peer.error().message);
  CHECK(peer->ToString() == "spiffe://cluster.local/ns/ns1/sa/sa1");

  // The intermediate has pathLen 0, so it cannot make another CA.
  CHECK_FALSE((*ca)->IssueIntermediate("node-b", hours(1)).ok());
}

TEST_CASE("CertificateAuthority: LoadFromFiles rejects non-CA, incomplete and mismatched input") {
  TempDir dir;
  auto root = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(root.ok());
  auto intermediate = (*root)->IssueIntermediate("node-a", hours(24));
  REQUIRE(intermediate.ok());
  auto leaf = (*root)->IssueSvid(SpiffeId::ForServiceAccount("cluster.local", "a", "b"), hours(1));
  REQUIRE(leaf.ok());

  SUBCASE("a leaf is not a CA") {
    WriteText(dir / "c.pem", (*leaf)->CertificateChainPem() + (*root)->BundlePem());
    WriteText(dir / "k.pem", (*leaf)->PrivateKeyPem());
    auto ca = CertificateAuthority::LoadFromFiles(dir / "c.pem", dir / "k.pem", "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.error().message.find("is not a CA") != std::string::npos);
    CHECK(ca.error().message.find(dir / "c.pem") != std::string::npos);
  }
  SUBCASE("no root in the file") {
    WriteText(dir / "c.pem", (*intermediate)->CertificateChainPem());
    WriteText(dir / "k.pem", (*intermediate)->PrivateKeyPem());
    auto ca = CertificateAuthority::LoadFromFiles(dir / "c.pem", dir / "k.pem", "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.error().message.find("self-signed root") != std::string::npos);
  }
  SUBCASE("key does not match") {
    WriteText(dir / "c.pem", (*intermediate)->CertificateChainPem() + (*root)->BundlePem());
    WriteText(dir / "k.pem", (*leaf)->PrivateKeyPem());
    auto ca = CertificateAuthority::LoadFromFiles(dir / "c.pem", dir / "k.pem", "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.error().message.find("does not match") != std::string::npos);
  }
  SUBCASE("missing file") {
    auto ca = CertificateAuthority::LoadFromFiles(dir / "none.pem", dir / "k.pem", "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.error().code == ErrorCode::kNotFound);
    CHECK(ca.error().message.find(dir / "none.pem") != std::string::npos);
  }
  SUBCASE("chain out of order") {
    auto other_root = CertificateAuthority::CreateInMemory("cluster.local");
    REQUIRE(other_root.ok());
    WriteText(dir / "c.pem", (*intermediate)->CertificateChainPem() + (*other_root)->BundlePem());
    WriteText(dir / "k.pem", (*intermediate)->PrivateKeyPem());
    auto ca = CertificateAuthority::LoadFromFiles(dir / "c.pem", dir / "k.pem", "cluster.local");
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.error().message.find("did not issue") != std::string::npos);
  }
}

TEST_CASE("CertificateAuthority: concurrent issuance from 4 threads is correct") {
  auto ca = CertificateAuthority::CreateInMemory("cluster.local");
  REQUIRE(ca.ok());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::vector<SvidPtr>> issued(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto id = SpiffeId::ForServiceAccount("cluster.local", "ns" + std::to_string(t),
                                              "sa" + std::to_string(i));
        auto svid = (*ca)->IssueSvid(id, hours(1));
        if (svid.ok()) issued[t].push_back(*svid);
      }
    });
  }
  for (auto& th : threads) th.join();

  std::set<std::string> serials;
  for (int t = 0; t < kThreads; ++t) {
    REQUIRE(issued[t].size() == kPerThread);
    for (int i = 0; i < kPerThread; ++i) {
      const Svid& svid = *issued[t][i];
      std::string expected =
          "spiffe://cluster.local/ns/ns" + std::to_string(t) + "/sa/sa" + std::to_string(i);
      CHECK(svid.id.ToString() == expected);
      auto peer = Verify(**ca, svid);
      REQUIRE(peer.ok());
      CHECK(peer->ToString() == expected);
      CHECK(X509_check_private_key(svid.ParseLeaf().get(), svid.private_key.get()) == 1);
      serials.insert(svid.serial_hex);
    }
  }
  CHECK(serials.size() == kThreads * kPerThread);
}
