// CertificateAuthority: the node's signing identity. It issues X.509-SVIDs to
// workloads and intermediate CAs to other nodes, and provides the trust bundle
// every peer chain is verified against.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "workloads/result.h"
#include "workloads/spiffe_id.h"
#include "workloads/svid.h"

namespace podless::workloads {

class CertificateAuthority;
using CertificateAuthorityPtr = std::unique_ptr<CertificateAuthority>;

class CertificateAuthority {
 public:
  // Loads <dir>/ca.crt and <dir>/ca.key if present; otherwise creates a
  // self-signed root (ECDSA P-256, 10 years, CA:TRUE, keyCertSign|cRLSign,
  // SKI/AKI, O=podless, URI SAN spiffe://<td>) and writes both files (mode
  // 0600, atomically; the key first, so a crash between the two leaves a key
  // the next start reuses). A corrupt or mismatched file is an error naming it.
  // `dir` must pass CheckPrivateDirectory and ca.key CheckPrivateKeyFile
  // (workloads/pem_file.h), and ca.key must not be a symbolic link: a CA that
  // someone else could have put there is never used.
  static Result<CertificateAuthorityPtr> LoadOrCreate(const std::string& dir,
                                                      const std::string& trust_domain);

  // An operator-provided CA (--ca-cert/--ca-key). The certificate must be a CA
  // and match the key. The certificate file holds the signing certificate,
  // optionally followed by its chain up to a self-signed root; the chain must
  // verify now. The key file must pass CheckPrivateKeyFile.
  static Result<CertificateAuthorityPtr> LoadFromFiles(const std::string& cert_path,
                                                       const std::string& key_path,
                                                       const std::string& trust_domain);

  // The same from PEM text held in memory (a cluster root kept in etcd);
  // `source` names where it came from, for errors.
  static Result<CertificateAuthorityPtr> LoadFromPem(std::string_view cert_pem,
                                                     std::string_view key_pem,
                                                     const std::string& source,
                                                     const std::string& trust_domain);

  // A fresh root that lives in memory only (tests).
  static Result<CertificateAuthorityPtr> CreateInMemory(const std::string& trust_domain);

  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  const std::string& trust_domain() const { return trust_domain_; }
  // The root certificate(s), PEM: the trust bundle.
  std::string BundlePem() const;
  const std::vector<bssl::UniquePtr<X509>>& roots() const { return roots_; }
  // The certificate that signs, and when it (or any certificate above it) expires.
  X509* signing_certificate() const { return signing_cert_.get(); }
  int64_t not_after() const { return not_after_; }

  // A new P-256 key and leaf: exactly one URI SAN (id), CN = id when it fits,
  // keyUsage digitalSignature, EKU serverAuth+clientAuth, CA:FALSE, random
  // 128-bit serial, notBefore = now - 60 s (clock skew), notAfter = now + ttl
  // capped at the CA's own expiry, SKI and AKI. Thread-safe: the CA's state is
  // read-only after construction, so worker threads may issue concurrently.
  Result<SvidPtr> IssueSvid(const SpiffeId& id, std::chrono::seconds ttl) const;

  // A new P-256 key and intermediate CA certificate for another node
  // (CN = node_name, CA:TRUE pathlen:0, URI SAN spiffe://<td>). The returned
  // Svid's id is the trust domain's ID (empty path).
  Result<SvidPtr> IssueIntermediate(const std::string& node_name, std::chrono::seconds ttl) const;

  // A TLS certificate that names no SPIFFE identity (the Kubernetes API's
  // server certificate, and its admin clients'): O=podless, CN=common_name,
  // DNS and IPv4 (host byte order) SANs, no URI SAN (so no SPIFFE peer ever
  // accepts it), EKU serverAuth+clientAuth, CA:FALSE. The Svid's id is the
  // trust domain's (empty path).
  Result<SvidPtr> IssueTlsCertificate(const std::string& common_name,
                                      const std::vector<std::string>& dns_names,
                                      const std::vector<uint32_t>& ipv4_addresses,
                                      std::chrono::seconds ttl) const;
  // A store trusting roots(), for TLS verification.
  bssl::UniquePtr<X509_STORE> NewTrustStore() const;

 private:
  CertificateAuthority() = default;

  // Validates and adopts a signing certificate, its chain (ending in a root)
  // and key. `cert_source`/`key_source` name the files in errors.
  static Result<CertificateAuthorityPtr> FromParts(std::vector<bssl::UniquePtr<X509>> chain,
                                                   bssl::UniquePtr<EVP_PKEY> key,
                                                   const std::string& cert_source,
                                                   const std::string& key_source,
                                                   const std::string& trust_domain);

  // Builds a fresh self-signed root over `key`.
  static Result<bssl::UniquePtr<X509>> NewRootCertificate(EVP_PKEY* key,
                                                          const std::string& trust_domain);

  // Issues a certificate for a new key, signed by this CA.
  struct LeafSpec;
  Result<SvidPtr> Issue(const LeafSpec& spec) const;

  std::string trust_domain_;
  bssl::UniquePtr<EVP_PKEY> signing_key_;
  bssl::UniquePtr<X509> signing_cert_;
  // Certificates between signing_cert_ and the root (exclusive on both ends),
  // plus signing_cert_ itself when it is not the root: what every issued
  // certificate carries as its intermediates.
  std::vector<bssl::UniquePtr<X509>> issued_chain_;
  std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> issued_chain_der_;  // the same, as DER
  std::vector<bssl::UniquePtr<X509>> roots_;
  std::vector<uint8_t> signing_key_id_;  // SKI of signing_cert_, the AKI of what it signs
  int64_t not_after_ = 0;                // earliest notAfter from signing_cert_ up to the root
  // The subject of signing_cert_, DER-encoded once: the issuer of what it signs.
  std::vector<uint8_t> issuer_name_der_;
};

}  // namespace podless::workloads
