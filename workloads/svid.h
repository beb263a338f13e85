// Svid: an X.509-SVID (a certificate whose URI SAN is a SPIFFE ID) together
// with its private key. Immutable once issued and shared between threads as
// SvidPtr, so a rotation swaps the pointer and never touches an SVID in use.
#pragma once

#include <openssl/evp.h>
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
  bssl::UniquePtr<X509> leaf;
  // The leaf's issuer chain up to, not including, the root; empty when the
  // root signed the leaf.
  std::vector<bssl::UniquePtr<X509>> intermediates;
  std::string serial_hex;  // lowercase hex of the serial number
  int64_t not_before = 0;  // unix seconds
  int64_t not_after = 0;   // unix seconds

  // The leaf, then the intermediates: what a TLS peer is sent.
  std::string CertificateChainPem() const;
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
