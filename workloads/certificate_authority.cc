#include "workloads/certificate_authority.h"

#include <openssl/asn1.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <string_view>

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

// The certificates are written as DER directly (RFC 5280 4.1) rather than
// assembled as an X509 object: BoringSSL's X509 setters and ASN.1 templates
// allocate and re-encode at every step, which cost more than generating the
// key did. Issuance is on the path of every new workload identity.

// Object identifiers, contents octets only.
constexpr uint8_t kOidOrganizationName[] = {0x55, 0x04, 0x0a};
constexpr uint8_t kOidCommonName[] = {0x55, 0x04, 0x03};
constexpr uint8_t kOidEcPublicKey[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
constexpr uint8_t kOidPrime256v1[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr uint8_t kOidEcdsaWithSha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
constexpr uint8_t kOidSha256WithRsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b};
constexpr uint8_t kOidBasicConstraints[] = {0x55, 0x1d, 0x13};
constexpr uint8_t kOidKeyUsage[] = {0x55, 0x1d, 0x0f};
constexpr uint8_t kOidExtKeyUsage[] = {0x55, 0x1d, 0x25};
constexpr uint8_t kOidSubjectAltName[] = {0x55, 0x1d, 0x11};
constexpr uint8_t kOidSubjectKeyId[] = {0x55, 0x1d, 0x0e};
constexpr uint8_t kOidAuthorityKeyId[] = {0x55, 0x1d, 0x23};
constexpr uint8_t kOidServerAuth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
constexpr uint8_t kOidClientAuth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};

// keyUsage BIT STRING contents (unused-bits octet, then the bits; DER drops
// trailing zero bits): digitalSignature (bit 0) for a leaf, keyCertSign and
// cRLSign (bits 5, 6) for a CA.
constexpr uint8_t kLeafKeyUsage[] = {0x07, 0x80};
constexpr uint8_t kCaKeyUsage[] = {0x01, 0x06};

constexpr size_t kP256PointBytes = 65;  // uncompressed: 0x04 || X || Y

// Context-specific tags of RFC 5280's ASN.1 module.
constexpr unsigned kTbsVersionTag = CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0;
constexpr unsigned kTbsExtensionsTag = CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 3;
constexpr unsigned kGeneralNameUriTag = CBS_ASN1_CONTEXT_SPECIFIC | 6;
constexpr unsigned kGeneralNameDnsTag = CBS_ASN1_CONTEXT_SPECIFIC | 2;
constexpr unsigned kGeneralNameIpTag = CBS_ASN1_CONTEXT_SPECIFIC | 7;
constexpr unsigned kAuthorityKeyIdKeyIdTag = CBS_ASN1_CONTEXT_SPECIFIC | 0;

// The Add* helpers append one DER element each. A child CBB's contents reach
// its parent only when the parent is flushed, so each helper flushes its
// parent before returning: the caller may then write to it again.

bool AddBytes(CBB* cbb, std::span<const uint8_t> bytes) {
  return CBB_add_bytes(cbb, bytes.data(), bytes.size());
}

// A primitive element: `tag`, then `contents`.
bool AddElement(CBB* cbb, unsigned tag, std::span<const uint8_t> contents) {
  CBB child;
  return CBB_add_asn1(cbb, &child, tag) && AddBytes(&child, contents) && CBB_flush(cbb);
}

bool AddText(CBB* cbb, unsigned tag, std::string_view text) {
  return AddElement(cbb, tag, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

// Every OID here is shorter than 128 octets, so its length is one octet and
// the element is written straight out, without a child CBB to flush.
bool AddOid(CBB* cbb, std::span<const uint8_t> oid) {
  return CBB_add_u8(cbb, CBS_ASN1_OBJECT) && CBB_add_u8(cbb, static_cast<uint8_t>(oid.size())) &&
         AddBytes(cbb, oid);
}

// UTCTime for 1950..2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5).
bool AddTime(CBB* cbb, int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm;
  if (gmtime_r(&tt, &tm) == nullptr) return false;
  int year = tm.tm_year + 1900;
  if (year < 0 || year > 9999) return false;
  bool utc = year >= 1950 && year < 2050;
  // [YY]YYMMDDHHMMSSZ, formatted by hand: two snprintf calls cost about a
  // third as much as all the other DER encoding of a certificate.
  char buf[16];
  size_t n = 0;
  auto two_digits = [&](int v) {
    buf[n++] = static_cast<char>('0' + v / 10);
    buf[n++] = static_cast<char>('0' + v % 10);
  };
  if (!utc) two_digits(year / 100);
  for (int v : {year % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec}) {
    two_digits(v);
  }
  buf[n++] = 'Z';
  return AddText(cbb, utc ? CBS_ASN1_UTCTIME : CBS_ASN1_GENERALIZEDTIME, std::string_view(buf, n));
}

// SET { SEQUENCE { type, UTF8String value } }: one attribute per RDN.
bool AddNameEntry(CBB* name, std::span<const uint8_t> type, std::string_view value) {
  CBB rdn, attribute;
  return CBB_add_asn1(name, &rdn, CBS_ASN1_SET) &&
         CBB_add_asn1(&rdn, &attribute, CBS_ASN1_SEQUENCE) && AddOid(&attribute, type) &&
         AddText(&attribute, CBS_ASN1_UTF8STRING, value) && CBB_flush(name);
}

// O=podless[, CN=common_name]: the CN is left out when empty or longer than
// X.520 allows.
bool AddPodlessName(CBB* cbb, std::string_view common_name) {
  CBB name;
  if (!CBB_add_asn1(cbb, &name, CBS_ASN1_SEQUENCE) ||
      !AddNameEntry(&name, kOidOrganizationName, "podless")) {
    return false;
  }
  if (!common_name.empty() && common_name.size() <= kMaxCommonNameLength &&
      !AddNameEntry(&name, kOidCommonName, common_name)) {
    return false;
  }
  return CBB_flush(cbb);
}

// The SubjectPublicKeyInfo of a P-256 key, and its key identifier (RFC 5280
// 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits). Written by hand
// because EVP_marshal_public_key converts the point to affine coordinates
// twice (a field inversion each time, about a seventh of the cost of a
// signature); this converts it once.
bool AddP256PublicKey(CBB* cbb, const EVP_PKEY* key, uint8_t key_id[SHA_DIGEST_LENGTH]) {
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
  if (ec == nullptr || EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1) {
    return false;
  }
  uint8_t point[kP256PointBytes];
  if (EC_POINT_point2oct(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
                         POINT_CONVERSION_UNCOMPRESSED, point, sizeof point,
                         nullptr) != sizeof point) {
    return false;
  }
  SHA1(point, sizeof point, key_id);
  CBB spki, algorithm, bits;
  return CBB_add_asn1(cbb, &spki, CBS_ASN1_SEQUENCE) &&
         CBB_add_asn1(&spki, &algorithm, CBS_ASN1_SEQUENCE) &&
         AddOid(&algorithm, kOidEcPublicKey) && AddOid(&algorithm, kOidPrime256v1) &&
         CBB_add_asn1(&spki, &bits, CBS_ASN1_BITSTRING) && CBB_add_u8(&bits, 0) &&
         CBB_add_bytes(&bits, point, sizeof point) && CBB_flush(cbb);
}

// What EVP_DigestSign with SHA-256 produces for this key type: ECDSA, or
// RSA PKCS#1 v1.5 (FromParts admits no other signing key).
bool AddSignatureAlgorithm(CBB* cbb, const EVP_PKEY* key) {
  CBB algorithm, null;
  if (!CBB_add_asn1(cbb, &algorithm, CBS_ASN1_SEQUENCE)) return false;
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC:
      if (!AddOid(&algorithm, kOidEcdsaWithSha256)) return false;
      break;
    case EVP_PKEY_RSA:
      if (!AddOid(&algorithm, kOidSha256WithRsa) ||
          !CBB_add_asn1(&algorithm, &null, CBS_ASN1_NULL)) {
        return false;
      }
      break;
    default:
      return false;
  }
  return CBB_flush(cbb);
}

// Appends SEQUENCE { extnID, [critical TRUE], extnValue OCTET STRING }, the
// OCTET STRING's contents written by `write_value(CBB*)`.
template <typename WriteValue>
bool AddExtension(CBB* extensions, std::span<const uint8_t> oid, bool critical,
                  WriteValue&& write_value) {
  CBB extension, value;
  return CBB_add_asn1(extensions, &extension, CBS_ASN1_SEQUENCE) && AddOid(&extension, oid) &&
         (!critical || CBB_add_asn1_bool(&extension, 1)) &&
         CBB_add_asn1(&extension, &value, CBS_ASN1_OCTETSTRING) && write_value(&value) &&
         CBB_flush(extensions);
}

// What differs between the certificates podless makes.
struct CertificateFields {
  std::string common_name;  // omitted when empty or too long for a CN
  std::string uri_san;      // omitted when empty
  std::vector<std::string> dns_sans;
  std::vector<uint32_t> ip_sans;  // IPv4, host byte order
  bool is_ca = false;
  int path_len = -1;  // CA only; -1 = unlimited
  int64_t not_before = 0;
  int64_t not_after = 0;
};

struct Issuer {
  const std::vector<uint8_t>* name_der = nullptr;  // null: self-signed
  EVP_PKEY* key = nullptr;
  const std::vector<uint8_t>* key_id = nullptr;  // AKI; empty: omitted
};

// The extensions, in the order podless has always written them.
bool AddExtensions(CBB* tbs, const CertificateFields& f,
                   std::span<const uint8_t, SHA_DIGEST_LENGTH> own_key_id,
                   std::span<const uint8_t> authority_key_id) {
  CBB tagged, extensions;
  if (!CBB_add_asn1(tbs, &tagged, kTbsExtensionsTag) ||
      !CBB_add_asn1(&tagged, &extensions, CBS_ASN1_SEQUENCE)) {
    return false;
  }
  bool ok = AddExtension(&extensions, kOidBasicConstraints, true, [&](CBB* value) {
    CBB constraints;
    if (!CBB_add_asn1(value, &constraints, CBS_ASN1_SEQUENCE)) return false;
    // cA is DEFAULT FALSE, so a leaf's SEQUENCE is empty.
    if (f.is_ca && !CBB_add_asn1_bool(&constraints, 1)) return false;
    if (f.is_ca && f.path_len >= 0 && !CBB_add_asn1_uint64(&constraints, f.path_len)) {
      return false;
    }
    return CBB_flush(value) != 0;
  });
  // keyUsage (critical): SPIFFE allows only digitalSignature on an EC leaf;
  // a CA signs certificates and CRLs.
  ok = ok && AddExtension(&extensions, kOidKeyUsage, true, [&](CBB* value) {
         return AddElement(value, CBS_ASN1_BITSTRING,
                           f.is_ca ? std::span<const uint8_t>(kCaKeyUsage)
                                   : std::span<const uint8_t>(kLeafKeyUsage));
       });
  if (ok && !f.is_ca) {
    ok = AddExtension(&extensions, kOidExtKeyUsage, false, [](CBB* value) {
      CBB purposes;
      return CBB_add_asn1(value, &purposes, CBS_ASN1_SEQUENCE) &&
             AddOid(&purposes, kOidServerAuth) && AddOid(&purposes, kOidClientAuth) &&
             CBB_flush(value);
    });
  }
  // Not critical: the subject is never empty (O=podless).
  if (ok && (!f.uri_san.empty() || !f.dns_sans.empty() || !f.ip_sans.empty())) {
    ok = AddExtension(&extensions, kOidSubjectAltName, false, [&](CBB* value) {
      CBB names;
      if (!CBB_add_asn1(value, &names, CBS_ASN1_SEQUENCE)) return false;
      if (!f.uri_san.empty() && !AddText(&names, kGeneralNameUriTag, f.uri_san)) return false;
      for (const std::string& dns : f.dns_sans) {
        if (!AddText(&names, kGeneralNameDnsTag, dns)) return false;
      }
      for (uint32_t ip : f.ip_sans) {
        const uint8_t octets[4] = {static_cast<uint8_t>(ip >> 24), static_cast<uint8_t>(ip >> 16),
                                   static_cast<uint8_t>(ip >> 8), static_cast<uint8_t>(ip)};
        if (!AddElement(&names, kGeneralNameIpTag, octets)) return false;
      }
      return CBB_flush(value) != 0;
    });
  }
  ok = ok && AddExtension(&extensions, kOidSubjectKeyId, false, [&](CBB* value) {
         return AddElement(value, CBS_ASN1_OCTETSTRING, own_key_id);
       });
  if (ok && !authority_key_id.empty()) {
    ok = AddExtension(&extensions, kOidAuthorityKeyId, false, [&](CBB* value) {
      CBB aki;
      return CBB_add_asn1(value, &aki, CBS_ASN1_SEQUENCE) &&
             AddElement(&aki, kAuthorityKeyIdKeyIdTag, authority_key_id) && CBB_flush(value);
    });
  }
  return ok && CBB_flush(tbs);
}

// Writes and signs a certificate; its DER.
Result<bssl::UniquePtr<CRYPTO_BUFFER>> BuildCertificateDer(const CertificateFields& f,
                                                           EVP_PKEY* subject_key,
                                                           const Issuer& issuer,
                                                           std::string* serial_hex) {
  const bool self_signed = issuer.key == nullptr;
  EVP_PKEY* signing_key = self_signed ? subject_key : issuer.key;

  // A random, positive 128-bit serial (RFC 5280 allows 20 octets; CAs are asked
  // for at least 64 random bits). The top byte is kept in 0x01..0x7f so the
  // DER integer is always 16 bytes and positive.
  uint8_t serial[kSerialBytes];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  if (serial[0] == 0) serial[0] = 1;
  if (serial_hex != nullptr) *serial_hex = HexLower(serial, sizeof serial);

  bssl::ScopedCBB subject;
  if (!CBB_init(subject.get(), 128) || !AddPodlessName(subject.get(), f.common_name)) {
    return Internal("cannot encode the subject name");
  }
  std::span<const uint8_t> subject_der(CBB_data(subject.get()), CBB_len(subject.get()));
  std::span<const uint8_t> issuer_der = self_signed ? subject_der : *issuer.name_der;

  bssl::ScopedCBB tbs_cbb;
  CBB tbs, version, serial_number, validity;
  uint8_t own_key_id[SHA_DIGEST_LENGTH];
  if (!CBB_init(tbs_cbb.get(), 640) || !CBB_add_asn1(tbs_cbb.get(), &tbs, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&tbs, &version, kTbsVersionTag) || !CBB_add_asn1_uint64(&version, 2) ||  // v3
      !CBB_add_asn1(&tbs, &serial_number, CBS_ASN1_INTEGER) ||
      !CBB_add_bytes(&serial_number, serial, sizeof serial) ||
      !AddSignatureAlgorithm(&tbs, signing_key) || !AddBytes(&tbs, issuer_der) ||
      !CBB_add_asn1(&tbs, &validity, CBS_ASN1_SEQUENCE) || !AddTime(&validity, f.not_before) ||
      !AddTime(&validity, f.not_after) || !AddBytes(&tbs, subject_der) ||
      !AddP256PublicKey(&tbs, subject_key, own_key_id)) {
    return Internal("cannot encode the certificate");
  }
  std::span<const uint8_t> aki_id;
  if (self_signed) {
    aki_id = own_key_id;
  } else if (issuer.key_id != nullptr) {
    aki_id = *issuer.key_id;
  }
  if (!AddExtensions(&tbs, f, own_key_id, aki_id) || !CBB_flush(tbs_cbb.get())) {
    return Internal("cannot encode the certificate extensions");
  }
  std::span<const uint8_t> tbs_der(CBB_data(tbs_cbb.get()), CBB_len(tbs_cbb.get()));

  bssl::ScopedEVP_MD_CTX md_ctx;
  std::vector<uint8_t> signature(EVP_PKEY_size(signing_key));
  size_t signature_len = signature.size();
  if (!EVP_DigestSignInit(md_ctx.get(), nullptr, EVP_sha256(), nullptr, signing_key) ||
      !EVP_DigestSign(md_ctx.get(), signature.data(), &signature_len, tbs_der.data(),
                      tbs_der.size())) {
    return Internal("cannot sign the certificate");
  }

  bssl::ScopedCBB cert_cbb;
  CBB cert, signature_bits;
  uint8_t* der = nullptr;
  size_t der_len = 0;
  if (!CBB_init(cert_cbb.get(), tbs_der.size() + 32 + signature_len) ||
      !CBB_add_asn1(cert_cbb.get(), &cert, CBS_ASN1_SEQUENCE) || !AddBytes(&cert, tbs_der) ||
      !AddSignatureAlgorithm(&cert, signing_key) ||
      !CBB_add_asn1(&cert, &signature_bits, CBS_ASN1_BITSTRING) ||
      !CBB_add_u8(&signature_bits, 0) ||  // no unused bits
      !CBB_add_bytes(&signature_bits, signature.data(), signature_len) ||
      !CBB_finish(cert_cbb.get(), &der, &der_len)) {
    return Internal("cannot encode the certificate");
  }
  bssl::UniquePtr<uint8_t> der_owner(der);
  bssl::UniquePtr<CRYPTO_BUFFER> buffer(CRYPTO_BUFFER_new(der, der_len, nullptr));
  if (!buffer) return Internal("cannot hold the new certificate");
  return buffer;
}

// The same, parsed. Parsing the finished DER makes the result exactly what a
// peer will see, and leaves it with no lazily-updated encoding caches, so it
// can be read from several threads. (The extension cache BoringSSL fills on
// first use is guarded by a lock in the X509.)
Result<bssl::UniquePtr<X509>> BuildCertificate(const CertificateFields& f, EVP_PKEY* subject_key,
                                               const Issuer& issuer, std::string* serial_hex) {
  auto der = BuildCertificateDer(f, subject_key, issuer, serial_hex);
  if (!der) return der.error();
  bssl::UniquePtr<X509> parsed(X509_parse_from_buffer(der->get()));
  if (!parsed) return Internal("cannot parse the new certificate");
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
  bool uri_san = true;  // false: a TLS certificate without a SPIFFE ID
  std::vector<std::string> dns_sans;
  std::vector<uint32_t> ip_sans;
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
  // Encoded once: every certificate this CA signs names it as its issuer.
  {
    uint8_t* name_der = nullptr;
    int name_len = i2d_X509_NAME(X509_get_subject_name(signing), &name_der);
    if (name_len <= 0) return Internal(cert_source + ": cannot encode the subject name");
    ca->issuer_name_der_.assign(name_der, name_der + name_len);
    OPENSSL_free(name_der);
  }
  ca->signing_key_ = std::move(key);
  ca->signing_cert_ = UpRef(signing);
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    ca->issued_chain_.push_back(UpRef(chain[i].get()));
    ca->issued_chain_der_.push_back(CertificateToBuffer(chain[i].get()));
    if (!ca->issued_chain_der_.back()) return Internal(cert_source + ": cannot encode the chain");
  }
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
  if (Status s = CheckPrivateDirectory(dir, "CA directory"); !s) return s.error();
  const std::string cert_path = dir + "/ca.crt";
  const std::string key_path = dir + "/ca.key";

  auto cert_text = ReadSmallFile(cert_path);
  if (!cert_text.ok() && cert_text.error().code != ErrorCode::kNotFound) return cert_text.error();
  auto key_text = ReadPrivateKeyText(key_path, Links::kRefuse);
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
  std::string uri = id.ToString();
  auto checked = SpiffeId::Parse(uri);
  if (!checked.ok()) return checked.error();
  if (id.path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cannot issue an SVID for " + uri + ": a workload's SPIFFE ID needs a path");
  }
  if (id.trust_domain != trust_domain_) {
    return MakeError(ErrorCode::kInvalidArgument, "cannot issue an SVID for " + uri +
                                                      ": trust domain " + id.trust_domain +
                                                      " is not " + trust_domain_);
  }
  return Issue(LeafSpec{id, std::move(uri), false, ttl});
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

Result<SvidPtr> CertificateAuthority::IssueTlsCertificate(
    const std::string& common_name, const std::vector<std::string>& dns_names,
    const std::vector<uint32_t>& ipv4_addresses, std::chrono::seconds ttl) const {
  if (common_name.empty() || common_name.size() > kMaxCommonNameLength) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "common name must be 1 to " + std::to_string(kMaxCommonNameLength) + " bytes");
  }
  LeafSpec spec{SpiffeId{trust_domain_, ""}, common_name, false, ttl};
  spec.uri_san = false;
  spec.dns_sans = dns_names;
  spec.ip_sans = ipv4_addresses;
  return Issue(spec);
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
  if (spec.uri_san) f.uri_san = spec.id.ToString();
  f.dns_sans = spec.dns_sans;
  f.ip_sans = spec.ip_sans;
  f.is_ca = spec.is_ca;
  f.path_len = spec.is_ca ? 0 : -1;
  f.not_before = now - kClockSkewSeconds;
  f.not_after = std::min(now + static_cast<int64_t>(spec.ttl.count()), not_after_);

  auto key = NewP256Key();
  if (!key.ok()) return key.error();
  auto svid = std::make_shared<Svid>();
  auto cert = BuildCertificateDer(f, key->get(),
                                  Issuer{&issuer_name_der_, signing_key_.get(), &signing_key_id_},
                                  &svid->serial_hex);
  if (!cert.ok()) return cert.error();
  svid->id = spec.id;
  svid->private_key = std::move(key).value();
  svid->leaf = std::move(cert).value();
  for (const auto& c : issued_chain_der_) {
    CRYPTO_BUFFER_up_ref(c.get());
    svid->intermediates.emplace_back(c.get());
  }
  svid->not_before = f.not_before;
  svid->not_after = f.not_after;
  return SvidPtr(std::move(svid));
}

}  // namespace podless::workloads
