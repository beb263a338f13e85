#include "workloads/certificate_authority.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "workloads/pem_file.h"

namespace podless::workloads {
namespace {

constexpr int64_t kDay = 86400;
constexpr int64_t kRootLifetimeSeconds = 3652 * kDay;  // 10 years, leap days included
// Backdating notBefore absorbs small clock differences between nodes, so a
// certificate issued here is not "not yet valid" on a peer a few seconds behind.
constexpr int64_t kClockSkewSeconds = 60;
// X.520 ub-common-name: BoringSSL refuses a longer CN.
constexpr size_t kMaxCommonNameLength = 64;
constexpr size_t kSerialBytes = 16;

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error Internal(const std::string& what) {
  uint32_t err = ERR_get_error();
  ERR_clear_error();
  std::string detail;
  if (err != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    detail = std::string(": ") + buf;
  }
  return MakeError(ErrorCode::kInternal, what + detail);
}

std::string HexLower(const uint8_t* data, size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (size_t i = 0; i < len; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0xf]);
  }
  return out;
}

std::string FormatUnixTime(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm_utc;
  if (gmtime_r(&tt, &tm_utc) == nullptr) return std::to_string(t);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
  return buf;
}

Result<bssl::UniquePtr<EVP_PKEY>> NewP256Key() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (!ec || !key || !EC_KEY_generate_key(ec.get()) ||
      !EVP_PKEY_assign_EC_KEY(key.get(), ec.get())) {
    return Internal("cannot generate a P-256 key");
  }
  ec.release();  // owned by key now
  return key;
}

// RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING.
std::vector<uint8_t> KeyIdentifier(X509* cert) {
  const ASN1_BIT_STRING* bits = X509_get0_pubkey_bitstr(cert);
  if (bits == nullptr) return {};
  std::vector<uint8_t> out(SHA_DIGEST_LENGTH);
  SHA1(ASN1_STRING_get0_data(bits), static_cast<size_t>(ASN1_STRING_length(bits)), out.data());
  return out;
}

bool AddExtension(X509* cert, int nid, void* value, bool critical) {
  return X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0, X509V3_ADD_DEFAULT) == 1;
}

bssl::UniquePtr<X509_NAME> PodlessName(const std::string& common_name) {
  bssl::UniquePtr<X509_NAME> name(X509_NAME_new());
  if (!name) return nullptr;
  static constexpr char kOrg[] = "podless";
  if (!X509_NAME_add_entry_by_NID(name.get(), NID_organizationName, MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(kOrg), -1, -1, 0)) {
    return nullptr;
  }
  if (!common_name.empty() && common_name.size() <= kMaxCommonNameLength &&
      !X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(common_name.data()),
                                  static_cast<int>(common_name.size()), -1, 0)) {
    return nullptr;
  }
  return name;
}

// What differs between the certificates podless makes.
struct CertificateFields {
  std::string common_name;  // omitted when empty or too long for a CN
  std::string uri_san;      // omitted when empty
  bool is_ca = false;
  int path_len = -1;  // CA only; -1 = unlimited
  int64_t not_before = 0;
  int64_t not_after = 0;
};

struct Issuer {
  X509* cert = nullptr;  // null: self-signed
  EVP_PKEY* key = nullptr;
  const std::vector<uint8_t>* key_id = nullptr;  // AKI; empty: omitted
};

// Builds, signs and re-parses a certificate. Re-parsing from DER makes the
// result exactly what a peer will see, and leaves it with no lazily-updated
// encoding caches, so it can be read from several threads.
Result<bssl::UniquePtr<X509>> BuildCertificate(const CertificateFields& f, EVP_PKEY* subject_key,
                                               const Issuer& issuer, std::string* serial_hex) {
  bssl::UniquePtr<X509> cert(X509_new());
  if (!cert || !X509_set_version(cert.get(), X509_VERSION_3)) return Internal("X509_new");

  // A random, positive 128-bit serial (RFC 5280 allows 20 octets; CAs are asked
  // for at least 64 random bits). The top byte is kept in 0x01..0x7f so the
  // DER integer is always 16 bytes and positive.
  uint8_t serial[kSerialBytes];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  if (serial[0] == 0) serial[0] = 1;
  bssl::UniquePtr<BIGNUM> serial_bn(BN_bin2bn(serial, sizeof serial, nullptr));
  bssl::UniquePtr<ASN1_INTEGER> serial_asn1(serial_bn ? BN_to_ASN1_INTEGER(serial_bn.get(), nullptr)
                                                      : nullptr);
  if (!serial_asn1 || !X509_set_serialNumber(cert.get(), serial_asn1.get())) {
    return Internal("cannot set the serial number");
  }
  if (serial_hex != nullptr) *serial_hex = HexLower(serial, sizeof serial);

  bssl::UniquePtr<X509_NAME> subject = PodlessName(f.common_name);
  if (!subject || !X509_set_subject_name(cert.get(), subject.get())) {
    return Internal("cannot set the subject name");
  }
  X509_NAME* issuer_name = issuer.cert ? X509_get_subject_name(issuer.cert) : subject.get();
  if (!X509_set_issuer_name(cert.get(), issuer_name)) return Internal("cannot set the issuer");

  bssl::UniquePtr<ASN1_TIME> not_before(ASN1_TIME_set(nullptr, static_cast<time_t>(f.not_before)));
  bssl::UniquePtr<ASN1_TIME> not_after(ASN1_TIME_set(nullptr, static_cast<time_t>(f.not_after)));
  if (!not_before || !not_after || !X509_set1_notBefore(cert.get(), not_before.get()) ||
      !X509_set1_notAfter(cert.get(), not_after.get())) {
    return Internal("cannot set the validity period");
  }
  if (!X509_set_pubkey(cert.get(), subject_key)) return Internal("cannot set the public key");

  // basicConstraints (critical).
  bssl::UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
  if (!bc) return Internal("BASIC_CONSTRAINTS_new");
  bc->ca = f.is_ca ? 0xff : 0;
  if (f.is_ca && f.path_len >= 0) {
    bc->pathlen = ASN1_INTEGER_new();
    if (!bc->pathlen || !ASN1_INTEGER_set(bc->pathlen, f.path_len)) return Internal("pathlen");
  }
  if (!AddExtension(cert.get(), NID_basic_constraints, bc.get(), true)) {
    return Internal("cannot add basicConstraints");
  }

  // keyUsage (critical): SPIFFE allows only digitalSignature on an EC leaf;
  // a CA signs certificates and CRLs.
  bssl::UniquePtr<ASN1_BIT_STRING> ku(ASN1_BIT_STRING_new());
  if (!ku) return Internal("ASN1_BIT_STRING_new");
  bool ku_ok = f.is_ca ? ASN1_BIT_STRING_set_bit(ku.get(), 5, 1) &&   // keyCertSign
                             ASN1_BIT_STRING_set_bit(ku.get(), 6, 1)  // cRLSign
                       : ASN1_BIT_STRING_set_bit(ku.get(), 0, 1);     // digitalSignature
  if (!ku_ok || !AddExtension(cert.get(), NID_key_usage, ku.get(), true)) {
    return Internal("cannot add keyUsage");
  }

  if (!f.is_ca) {
    bssl::UniquePtr<EXTENDED_KEY_USAGE> eku(sk_ASN1_OBJECT_new_null());
    if (!eku || !sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_server_auth)) ||
        !sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_client_auth)) ||
        !AddExtension(cert.get(), NID_ext_key_usage, eku.get(), false)) {
      return Internal("cannot add extendedKeyUsage");
    }
  }

  if (!f.uri_san.empty()) {
    bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
    bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
    bssl::UniquePtr<ASN1_IA5STRING> uri(ASN1_IA5STRING_new());
    if (!names || !name || !uri ||
        !ASN1_STRING_set(uri.get(), f.uri_san.data(), static_cast<int>(f.uri_san.size()))) {
      return Internal("cannot build the URI SAN");
    }
    GENERAL_NAME_set0_value(name.get(), GEN_URI, uri.release());
    if (!sk_GENERAL_NAME_push(names.get(), name.get())) return Internal("sk_GENERAL_NAME_push");
    name.release();  // owned by names now
    // Not critical: the subject is never empty (O=podless).
    if (!AddExtension(cert.get(), NID_subject_alt_name, names.get(), false)) {
      return Internal("cannot add subjectAltName");
    }
  }

  std::vector<uint8_t> own_key_id = KeyIdentifier(cert.get());
  bssl::UniquePtr<ASN1_OCTET_STRING> ski(ASN1_OCTET_STRING_new());
  if (!ski || own_key_id.empty() ||
      !ASN1_OCTET_STRING_set(ski.get(), own_key_id.data(), static_cast<int>(own_key_id.size())) ||
      !AddExtension(cert.get(), NID_subject_key_identifier, ski.get(), false)) {
    return Internal("cannot add subjectKeyIdentifier");
  }
  const std::vector<uint8_t>& aki_id = issuer.cert ? *issuer.key_id : own_key_id;
  if (!aki_id.empty()) {
    bssl::UniquePtr<AUTHORITY_KEYID> aki(AUTHORITY_KEYID_new());
    if (!aki) return Internal("AUTHORITY_KEYID_new");
    aki->keyid = ASN1_OCTET_STRING_new();
    if (!aki->keyid ||
        !ASN1_OCTET_STRING_set(aki->keyid, aki_id.data(), static_cast<int>(aki_id.size())) ||
        !AddExtension(cert.get(), NID_authority_key_identifier, aki.get(), false)) {
      return Internal("cannot add authorityKeyIdentifier");
    }
  }

  EVP_PKEY* signing_key = issuer.cert ? issuer.key : subject_key;
  if (X509_sign(cert.get(), signing_key, EVP_sha256()) <= 0) {
    return Internal("cannot sign the certificate");
  }

  uint8_t* der = nullptr;
  int der_len = i2d_X509(cert.get(), &der);
  if (der_len <= 0) return Internal("cannot encode the certificate");
  const uint8_t* p = der;
  bssl::UniquePtr<X509> parsed(d2i_X509(nullptr, &p, der_len));
  OPENSSL_free(der);
  if (!parsed) return Internal("cannot re-parse the certificate");
  X509_get_extension_flags(parsed.get());  // fill the extension cache now, on this thread
  return parsed;
}

bool IsCa(X509* cert) {
  uint32_t flags = X509_get_extension_flags(cert);
  if ((flags & EXFLAG_CA) == 0) return false;
  return (flags & EXFLAG_KUSAGE) == 0 || (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) != 0;
}

// The SPIFFE trust domain named by a CA certificate's URI SAN, if it has one.
std::string TrustDomainOfCa(X509* cert) {
  int crit = 0;
  bssl::UniquePtr<GENERAL_NAMES> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, nullptr)));
  if (!names) return {};
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    std::string_view uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.ia5)),
                         static_cast<size_t>(ASN1_STRING_length(name->d.ia5)));
    auto id = SpiffeId::Parse(uri);
    if (id.ok()) return id->trust_domain;
  }
  return {};
}

bssl::UniquePtr<X509> UpRef(X509* cert) {
  X509_up_ref(cert);
  return bssl::UniquePtr<X509>(cert);
}

}  // namespace

struct CertificateAuthority::LeafSpec {
  SpiffeId id;
  std::string common_name;
  bool is_ca = false;
  std::chrono::seconds ttl{0};
};

CertificateAuthority::~CertificateAuthority() = default;

Result<bssl::UniquePtr<X509>> CertificateAuthority::NewRootCertificate(
    EVP_PKEY* key, const std::string& trust_domain) {
  CertificateFields f;
  f.common_name = "podless root CA " + trust_domain;
  if (f.common_name.size() > kMaxCommonNameLength) f.common_name = "podless root CA";
  f.uri_san = SpiffeId{trust_domain, ""}.ToString();
  f.is_ca = true;
  int64_t now = NowUnix();
  f.not_before = now - kClockSkewSeconds;
  f.not_after = now + kRootLifetimeSeconds;
  return BuildCertificate(f, key, Issuer{}, nullptr);
}

Result<CertificateAuthorityPtr> CertificateAuthority::FromParts(
    std::vector<bssl::UniquePtr<X509>> chain, bssl::UniquePtr<EVP_PKEY> key,
    const std::string& cert_source, const std::string& key_source,
    const std::string& trust_domain) {
  auto invalid = [](std::string message) {
    return MakeError(ErrorCode::kInvalidArgument, std::move(message));
  };
  if (chain.empty()) return invalid(cert_source + ": no certificate");
  X509* signing = chain.front().get();

  int key_type = EVP_PKEY_id(key.get());
  if (key_type != EVP_PKEY_EC && key_type != EVP_PKEY_RSA) {
    return invalid(key_source + ": unsupported key type (podless signs with EC or RSA keys)");
  }
  bool matches = X509_check_private_key(signing, key.get()) == 1;
  ERR_clear_error();
  if (!matches) {
    return invalid("the key in " + key_source + " does not match the certificate in " +
                   cert_source);
  }

  for (size_t i = 0; i < chain.size(); ++i) {
    if (X509_get_extension_flags(chain[i].get()) & EXFLAG_INVALID) {
      return invalid(cert_source + ": certificate " + std::to_string(i + 1) +
                     " has malformed extensions");
    }
    if (!IsCa(chain[i].get())) {
      return invalid(cert_source + ": certificate " + std::to_string(i + 1) +
                     " is not a CA (it needs basicConstraints CA:TRUE and, if keyUsage is "
                     "present, keyCertSign)");
    }
    if (i + 1 < chain.size() &&
        X509_check_issued(chain[i + 1].get(), chain[i].get()) != X509_V_OK) {
      return invalid(cert_source + ": certificate " + std::to_string(i + 2) +
                     " did not issue certificate " + std::to_string(i + 1) +
                     " (the file must hold the signing certificate, then its chain in order)");
    }
  }
  X509* root = chain.back().get();
  if ((X509_get_extension_flags(root) & EXFLAG_SS) == 0) {
    return invalid(cert_source +
                   ": the chain does not end in a self-signed root (append the "
                   "issuing certificates up to the root)");
  }

  // The chain must verify now, signatures and validity periods included.
  {
    bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
    bssl::UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
    bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
    if (!store || !untrusted || !ctx || !X509_STORE_add_cert(store.get(), root)) {
      return Internal("cannot build a trust store");
    }
    for (size_t i = 1; i + 1 < chain.size(); ++i) {
      if (!sk_X509_push(untrusted.get(), chain[i].get())) return Internal("sk_X509_push");
      X509_up_ref(chain[i].get());
    }
    if (!X509_STORE_CTX_init(ctx.get(), store.get(), signing, untrusted.get())) {
      return Internal("X509_STORE_CTX_init");
    }
    X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(NowUnix()));
    if (X509_verify_cert(ctx.get()) != 1) {
      int err = X509_STORE_CTX_get_error(ctx.get());
      ERR_clear_error();
      return invalid(
          cert_source + ": the CA chain does not verify: " + X509_verify_cert_error_string(err) +
          " (certificate " + std::to_string(X509_STORE_CTX_get_error_depth(ctx.get()) + 1) + ")");
    }
  }

  std::string ca_domain = TrustDomainOfCa(signing);
  if (!ca_domain.empty() && ca_domain != trust_domain) {
    return invalid(cert_source + ": the CA belongs to trust domain " + ca_domain + ", not " +
                   trust_domain + " (is --trust-domain right?)");
  }

  CertificateAuthorityPtr ca(new CertificateAuthority());
  ca->trust_domain_ = trust_domain;
  ca->not_after_ = INT64_MAX;
  for (const auto& cert : chain) {
    int64_t not_after = 0;
    if (!Asn1TimeToUnix(X509_get0_notAfter(cert.get()), &not_after)) {
      return invalid(cert_source + ": cannot decode a notAfter time");
    }
    ca->not_after_ = std::min(ca->not_after_, not_after);
  }
  // The AKI of what this CA signs must equal its SKI; without an SKI the AKI
  // is left out rather than made up.
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(signing)) {
    const uint8_t* data = ASN1_STRING_get0_data(ski);
    ca->signing_key_id_.assign(data, data + ASN1_STRING_length(ski));
  }
  ca->signing_key_ = std::move(key);
  ca->signing_cert_ = UpRef(signing);
  for (size_t i = 0; i + 1 < chain.size(); ++i) ca->issued_chain_.push_back(UpRef(chain[i].get()));
  ca->roots_.push_back(std::move(chain.back()));
  return ca;
}

Result<CertificateAuthorityPtr> CertificateAuthority::CreateInMemory(
    const std::string& trust_domain) {
  if (auto st = ValidateTrustDomain(trust_domain); !st.ok()) return st.error();
  auto key = NewP256Key();
  if (!key.ok()) return key.error();
  auto root = NewRootCertificate(key->get(), trust_domain);
  if (!root.ok()) return root.error();
  std::vector<bssl::UniquePtr<X509>> chain;
  chain.push_back(std::move(root).value());
  return FromParts(std::move(chain), std::move(key).value(), "new root CA", "new root CA key",
                   trust_domain);
}

Result<CertificateAuthorityPtr> CertificateAuthority::LoadOrCreate(
    const std::string& dir, const std::string& trust_domain) {
  if (auto st = ValidateTrustDomain(trust_domain); !st.ok()) return st.error();
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cannot create " + dir + ": " + std::strerror(errno));
  }
  const std::string cert_path = dir + "/ca.crt";
  const std::string key_path = dir + "/ca.key";

  auto cert_text = ReadSmallFile(cert_path);
  if (!cert_text.ok() && cert_text.error().code != ErrorCode::kNotFound) return cert_text.error();
  auto key_text = ReadSmallFile(key_path);
  if (!key_text.ok() && key_text.error().code != ErrorCode::kNotFound) return key_text.error();

  if (cert_text.ok() && !key_text.ok()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     key_path + " is missing but " + cert_path +
                         " exists: restore the key, or remove both to create a new CA");
  }

  bssl::UniquePtr<EVP_PKEY> key;
  if (key_text.ok()) {
    auto parsed = ParsePemPrivateKey(*key_text, key_path);
    if (!parsed.ok()) return parsed.error();
    key = std::move(parsed).value();
  } else {
    auto fresh = NewP256Key();
    if (!fresh.ok()) return fresh.error();
    key = std::move(fresh).value();
    // The key goes to disk first: if we crash before the certificate is
    // written, the next start finds the key alone and builds the root over it.
    if (auto st = WriteFileAtomically(key_path, PrivateKeyToPkcs8Pem(key.get()), 0600); !st.ok()) {
      return st.error();
    }
  }

  std::vector<bssl::UniquePtr<X509>> chain;
  if (cert_text.ok()) {
    auto parsed = ParsePemCertificates(*cert_text);
    if (!parsed.ok()) {
      return MakeError(ErrorCode::kInvalidArgument, cert_path + ": " + parsed.error().message);
    }
    chain = std::move(parsed).value();
  } else {
    auto root = NewRootCertificate(key.get(), trust_domain);
    if (!root.ok()) return root.error();
    if (auto st = WriteFileAtomically(cert_path, CertificateToPem(root->get()), 0600); !st.ok()) {
      return st.error();
    }
    chain.push_back(std::move(root).value());
  }
  return FromParts(std::move(chain), std::move(key), cert_path, key_path, trust_domain);
}

Result<CertificateAuthorityPtr> CertificateAuthority::LoadFromFiles(
    const std::string& cert_path, const std::string& key_path, const std::string& trust_domain) {
  if (auto st = ValidateTrustDomain(trust_domain); !st.ok()) return st.error();
  auto chain = ReadCertificatesFile(cert_path);
  if (!chain.ok()) return chain.error();
  auto key = ReadPrivateKeyFile(key_path);
  if (!key.ok()) return key.error();
  return FromParts(std::move(chain).value(), std::move(key).value(), cert_path, key_path,
                   trust_domain);
}

Result<CertificateAuthorityPtr> CertificateAuthority::LoadFromPem(std::string_view cert_pem,
                                                                  std::string_view key_pem,
                                                                  const std::string& source,
                                                                  const std::string& trust_domain) {
  if (auto st = ValidateTrustDomain(trust_domain); !st.ok()) return st.error();
  auto chain = ParsePemCertificates(cert_pem);
  if (!chain.ok()) return MakeError(chain.error().code, source + ": " + chain.error().message);
  auto key = ParsePemPrivateKey(key_pem, source + " key");
  if (!key.ok()) return key.error();
  return FromParts(std::move(chain).value(), std::move(key).value(), source, source + " key",
                   trust_domain);
}

std::string CertificateAuthority::BundlePem() const {
  std::string out;
  for (const auto& root : roots_) out += CertificateToPem(root.get());
  return out;
}

bssl::UniquePtr<X509_STORE> CertificateAuthority::NewTrustStore() const {
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  if (!store) return nullptr;
  for (const auto& root : roots_) {
    if (!X509_STORE_add_cert(store.get(), root.get())) return nullptr;
  }
  return store;
}

Result<SvidPtr> CertificateAuthority::IssueSvid(const SpiffeId& id,
                                                std::chrono::seconds ttl) const {
  // Re-parse the ID: its fields may have been filled by hand.
  auto checked = SpiffeId::Parse(id.ToString());
  if (!checked.ok()) return checked.error();
  if (id.path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "cannot issue an SVID for " + id.ToString() +
                                                      ": a workload's SPIFFE ID needs a path");
  }
  if (id.trust_domain != trust_domain_) {
    return MakeError(ErrorCode::kInvalidArgument, "cannot issue an SVID for " + id.ToString() +
                                                      ": trust domain " + id.trust_domain +
                                                      " is not " + trust_domain_);
  }
  return Issue(LeafSpec{id, id.ToString(), false, ttl});
}

Result<SvidPtr> CertificateAuthority::IssueIntermediate(const std::string& node_name,
                                                        std::chrono::seconds ttl) const {
  if (node_name.empty() || node_name.size() > kMaxCommonNameLength) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "node name \"" + EscapeForMessage(node_name) + "\" must be 1 to " +
                         std::to_string(kMaxCommonNameLength) + " bytes");
  }
  for (char c : node_name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    if (!ok) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "node name \"" + EscapeForMessage(node_name) +
                           "\" may hold only letters, digits, '.', '-' and '_'");
    }
  }
  // A signing certificate limited to pathLen 0 may sign only leaves; an
  // intermediate below it would fail every verification.
  if (X509_get_pathlen(signing_cert_.get()) == 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this CA's certificate has pathLenConstraint 0 and cannot sign another CA");
  }
  return Issue(LeafSpec{SpiffeId{trust_domain_, ""}, node_name, true, ttl});
}

Result<SvidPtr> CertificateAuthority::Issue(const LeafSpec& spec) const {
  if (spec.ttl.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument, "certificate lifetime must be positive, got " +
                                                      std::to_string(spec.ttl.count()) + " s");
  }
  int64_t now = NowUnix();
  if (not_after_ <= now) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the CA certificate expired at " + FormatUnixTime(not_after_));
  }
  CertificateFields f;
  f.common_name = spec.common_name;
  f.uri_san = spec.id.ToString();
  f.is_ca = spec.is_ca;
  f.path_len = spec.is_ca ? 0 : -1;
  f.not_before = now - kClockSkewSeconds;
  f.not_after = std::min(now + static_cast<int64_t>(spec.ttl.count()), not_after_);

  auto key = NewP256Key();
  if (!key.ok()) return key.error();
  auto svid = std::make_shared<Svid>();
  auto cert = BuildCertificate(f, key->get(),
                               Issuer{signing_cert_.get(), signing_key_.get(), &signing_key_id_},
                               &svid->serial_hex);
  if (!cert.ok()) return cert.error();
  svid->id = spec.id;
  svid->private_key = std::move(key).value();
  svid->leaf = std::move(cert).value();
  for (const auto& c : issued_chain_) svid->intermediates.push_back(UpRef(c.get()));
  svid->not_before = f.not_before;
  svid->not_after = f.not_after;
  return SvidPtr(std::move(svid));
}

}  // namespace podless::workloads
