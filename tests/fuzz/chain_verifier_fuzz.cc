// Fuzzes what the proxy does with a peer's certificate chain after the TLS
// handshake: parse it (workloads::ParsePemCertificates, PEM or DER), verify it
// as an X.509-SVID against a fixed in-memory root (workloads::
// VerifySpiffeChain), and parse SPIFFE IDs. The seeds in
// corpus/chain_verifier_fuzz/ are signed by kFuzzRootPem (valid until 2126).
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "workloads/chain_verifier.h"
#include "workloads/pem_file.h"
#include "workloads/spiffe_id.h"

using namespace podless::workloads;

namespace {

// A P-256 root for trust domain cluster.local (made with the openssl CLI;
// its key is not kept: the fuzzer only verifies).
constexpr char kFuzzRootPem[] = R"(
-----BEGIN CERTIFICATE-----
MIIBxTCCAWugAwIBAgIUO6OeZ2eIiBKrrpSA+bN9Ny0zgBkwCgYIKoZIzj0EAwIw
LjEQMA4GA1UECgwHcG9kbGVzczEaMBgGA1UEAwwRcG9kbGVzcyBmdXp6IHJvb3Qw
IBcNMjYxMTI1MjIzMTU0WhgPMjEyNjExMDEyMjMxNTRaMC4xEDAOBgNVBAoMB3Bv
ZGxlc3MxGjAYBgNVBAMMEXBvZGxlc3MgZnV6eiByb290MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEvrwjjvMQMYVb3buYmu7XFnMZK7W7hmBOIYP5YLtfeAt+t3eE
V9ZG07pBHSIAUS3IAdJYb06NO/3gSltF2daNuKNlMGMwDwYDVR0TAQH/BAUwAwEB
/zAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFGWWG20w/hBNGQYEqHKJZ740mVa9
MCEGA1UdEQQaMBiGFnNwaWZmZTovL2NsdXN0ZXIubG9jYWwwCgYIKoZIzj0EAwID
SAAwRQIgezUCJmtOZGOK46Uygx77lMUoYKFGYcVtFYeZalEUPeACIQC2TaMVbuy5
TzsJNl2sf3TZ3mPX0tkg/WE4MQiHtUXUbQ==
-----END CERTIFICATE-----
)";

// 2027-01-15: inside every seed certificate's validity.
constexpr int64_t kNow = 1800000000;

X509_STORE* TrustStore() {
  static X509_STORE* store = [] {
    auto roots = ParsePemCertificates(kFuzzRootPem);
    if (!roots.ok()) abort();
    X509_STORE* s = X509_STORE_new();
    for (auto& root : *roots) X509_STORE_add_cert(s, root.get());
    return s;
  }();
  return store;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto id = SpiffeId::Parse(input);
  if (id.ok()) {
    auto again = SpiffeId::Parse(id->ToString());
    if (!again.ok() || !(*again == *id)) abort();
  }

  auto certs = ParsePemCertificates(input);
  if (!certs.ok()) return 0;
  if (certs->empty()) abort();  // documented: no certificate is an error
  bssl::UniquePtr<STACK_OF(X509)> intermediates(sk_X509_new_null());
  for (size_t i = 1; i < certs->size(); ++i) {
    sk_X509_push(intermediates.get(), (*certs)[i].get());  // borrowed: no free on pop
  }
  auto verified = VerifySpiffeChain((*certs)[0].get(), intermediates.get(), TrustStore(),
                                    "cluster.local", kNow);
  // The stack borrows its elements: empty it before it is freed.
  while (sk_X509_num(intermediates.get()) > 0) sk_X509_pop(intermediates.get());
  if (verified.ok()) {
    if (verified->trust_domain != "cluster.local") abort();
  } else if (verified.error().code != podless::ErrorCode::kPermissionDenied) {
    fprintf(stderr, "unexpected error code: %s\n", verified.error().message.c_str());
    abort();
  }
  return 0;
}
