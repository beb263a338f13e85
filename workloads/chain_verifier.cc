#include "workloads/chain_verifier.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <string>

namespace podless::workloads {
namespace {

Error Denied(std::string reason) {
  return MakeError(ErrorCode::kPermissionDenied, "peer certificate rejected: " + std::move(reason));
}

// Short reasons for the verification failures a peer can provoke; the rest
// fall back to BoringSSL's wording.
std::string DescribeVerifyError(int err, int depth) {
  std::string reason;
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      reason = "certificate expired";
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      reason = "certificate not yet valid";
      break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      reason = "untrusted issuer";
      break;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      // Typically a certificate from another CA with the same name (two
      // podless clusters with the same trust domain), or a tampered one.
      reason = "untrusted issuer: the signature does not verify";
      break;
    case X509_V_ERR_INVALID_CA:
      reason = "issuer is not a CA";
      break;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
      reason = "chain exceeds a path length constraint";
      break;
    default:
      reason = X509_verify_cert_error_string(err);
      break;
  }
  if (depth > 0) reason += " (chain certificate " + std::to_string(depth) + ")";
  return reason;
}

}  // namespace

Result<SpiffeId> VerifySpiffeChain(X509* leaf, const STACK_OF(X509) * intermediates,
                                   X509_STORE* trust, std::string_view trust_domain,
                                   int64_t now_unix) {
  if (leaf == nullptr) return Denied("no certificate");
  if (trust == nullptr) return MakeError(ErrorCode::kInternal, "no trust store");

  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  // X509_STORE_CTX_init takes a non-const stack for historical reasons; it
  // only reads it.
  if (!ctx ||
      !X509_STORE_CTX_init(ctx.get(), trust, leaf, const_cast<STACK_OF(X509)*>(intermediates))) {
    ERR_clear_error();
    return MakeError(ErrorCode::kInternal, "cannot set up certificate verification");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(now_unix));
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    ERR_clear_error();
    return Denied(DescribeVerifyError(err, depth));
  }

  // The chain is trusted; now the leaf must be an X.509-SVID leaf.
  uint32_t flags = X509_get_extension_flags(leaf);
  if (flags & EXFLAG_INVALID) return Denied("malformed extensions");
  if (flags & EXFLAG_CA) return Denied("leaf certificate is a CA");
  if ((flags & EXFLAG_KUSAGE) && (X509_get_key_usage(leaf) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN))) {
    return Denied("leaf certificate has keyCertSign or cRLSign key usage");
  }

  int crit = 0;
  bssl::UniquePtr<GENERAL_NAMES> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, nullptr)));
  ERR_clear_error();
  if (!names && crit == -2) return Denied("more than one subjectAltName extension");
  if (!names && crit != -1) return Denied("malformed subjectAltName");
  const ASN1_IA5STRING* uri = nullptr;
  size_t uri_count = 0;
  if (names) {
    for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
      if (name->type != GEN_URI) continue;
      ++uri_count;
      uri = name->d.uniformResourceIdentifier;
    }
  }
  if (uri_count == 0) return Denied("no URI SAN");
  if (uri_count > 1) return Denied(std::to_string(uri_count) + " URI SANs");

  std::string_view uri_text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                            static_cast<size_t>(ASN1_STRING_length(uri)));
  auto id = SpiffeId::Parse(uri_text);
  if (!id.ok()) return Denied("URI SAN is not a SPIFFE ID: " + id.error().message);
  if (id->trust_domain != trust_domain) {
    return Denied("trust domain " + id->trust_domain + " is not " + std::string(trust_domain));
  }
  if (id->path.empty()) return Denied("SPIFFE ID " + id->ToString() + " has no path");
  return std::move(id).value();
}

}  // namespace podless::workloads
