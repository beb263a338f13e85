// Svid: an X.509-SVID (a certificate whose URI SAN is a SPIFFE ID) together
// with its private key. Immutable once issued and shared between threads as
// SvidPtr, so a rotation swaps the pointer and never touches an SVID in use.
#pragma once

#include <openssl/evp.h>
#include <openssl/pool.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "workloads/spiffe_id.h"

namespace podless::workloads {

struct Svid {
  SpiffeId id;
  bssl::UniquePtr<EVP_PKEY> private_key;
  // The certificates as DER, the form TLS sends and the Workload API
  // carries. Kept unparsed: BoringSSL's parsed X509 costs about 5 KiB, the
  // DER about 560 bytes, and the agent caches thousands of SVIDs
  // (runtime/identity/svid_cache.h). ParseLeaf() gives an X509 where one is needed.
  bssl::UniquePtr<CRYPTO_BUFFER> leaf;
  // The leaf's issuer chain up to, not including, the root; empty when the
  // root signed the leaf. Shared (up-referenced) with the issuing CA.
  std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> intermediates;
  std::string serial_hex;  // lowercase hex of the serial number
  int64_t not_before = 0;  // unix seconds
  int64_t not_after = 0;   // unix seconds

  // The leaf, then the intermediates: what a TLS peer is sent.
  std::string CertificateChainPem() const;
  // The leaf parsed (null only if the DER were damaged, which issuance rules out).
  bssl::UniquePtr<X509> ParseLeaf() const;
  // PKCS#8 "PRIVATE KEY".
  std::string PrivateKeyPem() const;
  // DER forms, as the SPIFFE Workload API carries them.
  std::vector<uint8_t> LeafDer() const;
  std::vector<uint8_t> PrivateKeyPkcs8Der() const;
};

using SvidPtr = std::shared_ptr<const Svid>;

// Converts an ASN.1 time to unix seconds; false if it cannot be decoded.
bool Asn1TimeToUnix(const ASN1_TIME* time, int64_t* out);

}  // namespace podless::workloads
