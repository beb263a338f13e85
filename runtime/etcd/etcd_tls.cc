#include "runtime/etcd/etcd_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <utility>

#include "workloads/pem_file.h"

namespace podless::runtime {
namespace {

constexpr uint8_t kAlpnH2[] = {2, 'h', '2'};

bool IsHttps(const std::string& url) { return url.starts_with("https://"); }

// The oldest error on the queue (the cause; later ones are consequences).
std::string SslErrorText(uint32_t code) {
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

// Alerts about the client's certificate: what etcd with --client-cert-auth
// sends when it gets none or one it does not trust.
bool IsCertificateAlert(int alert) {
  switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

// A certificate verification result as an operator can act on it.
std::string VerifyFailure(const EtcdTlsFiles& files, long result, const std::string& host) {
  const std::string text = X509_verify_cert_error_string(result);
  switch (result) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return "hostname mismatch: etcd's certificate does not name \"" + host + "\"";
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "IP address mismatch: etcd's certificate has no IP address " + host;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return text + " (no CA in --etcd-ca " + files.ca_file + " signed etcd's certificate)";
    default:
      return text;
  }
}

}  // namespace

Status CheckEtcdTlsFlags(const std::vector<std::string>& endpoints, const EtcdTlsFiles& files) {
  auto bad = [](std::string why) { return MakeError(ErrorCode::kInvalidArgument, std::move(why)); };
  size_t https = 0;
  const std::string* plain = nullptr;
  const std::string* secure = nullptr;
  for (const std::string& url : endpoints) {
    if (IsHttps(url)) {
      ++https;
      secure = &url;
    } else {
      plain = &url;
    }
  }
  if (plain != nullptr && secure != nullptr) {
    return bad("--etcd mixes http:// and https:// endpoints (" + *plain + ", " + *secure +
               "): use https:// for every one, or the client would fall back to cleartext");
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    return bad("--etcd-cert and --etcd-key go together (the client certificate and its key)");
  }
  if (https == 0 && files.any() && !endpoints.empty()) {
    return bad("--etcd-ca, --etcd-cert and --etcd-key are for https:// etcd endpoints; --etcd " +
               endpoints.front() + " is cleartext: use https://");
  }
  if (https > 0 && files.ca_file.empty()) {
    return bad(
        "https:// etcd endpoints need --etcd-ca FILE, the PEM bundle of the CA that signed "
        "etcd's certificate (podless does not trust the system's CA store for etcd)");
  }
  return {};
}

Result<EtcdTlsContextPtr> EtcdTlsContext::Load(const EtcdTlsFiles& files) {
  if (files.ca_file.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "https:// etcd endpoints need --etcd-ca FILE");
  }
  auto cas = workloads::ReadCertificatesFile(files.ca_file);
  if (!cas) return MakeError(cas.error().code, "--etcd-ca: " + cas.error().message);

  std::shared_ptr<EtcdTlsContext> context(new EtcdTlsContext());
  context->files_ = files;
  bssl::UniquePtr<SSL_CTX> owned(SSL_CTX_new(TLS_method()));
  SSL_CTX* ctx = owned.get();
  if (ctx == nullptr || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
      SSL_CTX_set_alpn_protos(ctx, kAlpnH2, sizeof(kAlpnH2)) != 0) {  // 0 is success here
    ERR_clear_error();
    return MakeError(ErrorCode::kInternal, "cannot set up TLS for etcd");
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // Only --etcd-ca: no SSL_CTX_set_default_verify_paths, ever.
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const bssl::UniquePtr<X509>& ca : *cas) {
    if (!X509_STORE_add_cert(store, ca.get())) {
      ERR_clear_error();  // a duplicate in the bundle
    }
  }
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);

  if (!files.cert_file.empty()) {
    auto chain = workloads::ReadCertificatesFile(files.cert_file);
    if (!chain) return MakeError(chain.error().code, "--etcd-cert: " + chain.error().message);
    auto key = workloads::ReadPrivateKeyFile(files.key_file);
    if (!key) return MakeError(key.error().code, "--etcd-key: " + key.error().message);
    bool ok = SSL_CTX_use_certificate(ctx, (*chain)[0].get()) == 1;
    for (size_t i = 1; ok && i < chain->size(); ++i) {
      ok = SSL_CTX_add1_chain_cert(ctx, (*chain)[i].get()) == 1;
    }
    if (!ok) {
      const std::string why = SslErrorText(ERR_get_error());
      ERR_clear_error();
      return MakeError(ErrorCode::kInvalidArgument, "--etcd-cert " + files.cert_file + ": " + why);
    }
    if (SSL_CTX_use_PrivateKey(ctx, key->get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      return MakeError(ErrorCode::kInvalidArgument, "--etcd-key " + files.key_file +
                                                        " is not the private key of --etcd-cert " +
                                                        files.cert_file);
    }
  }
  context->context_ = proxy::TlsContext::CreateCustomClient(
      std::move(owned), [files](const SSL* ssl, uint32_t error, const std::string& host) {
        return DescribeEtcdTlsFailure(files, ssl, error, host);
      });
  return EtcdTlsContextPtr(std::move(context));
}

std::string DescribeEtcdTlsFailure(const EtcdTlsFiles& files, const SSL* ssl, uint32_t code,
                                   const std::string& host) {
  const long verify = SSL_get_verify_result(ssl);
  if (ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
      verify != X509_V_OK) {
    return "certificate verify failed: " + VerifyFailure(files, verify, host);
  }
  const int reason = ERR_GET_REASON(code);
  if (ERR_GET_LIB(code) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
      reason < SSL_AD_REASON_OFFSET + 256) {
    const int alert = reason - SSL_AD_REASON_OFFSET;
    std::string text = std::string("etcd ended the handshake with the alert \"") +
                       SSL_alert_desc_string_long(alert) + "\"";
    if (IsCertificateAlert(alert)) {
      text += files.cert_file.empty()
                  ? " (etcd requires a client certificate: pass --etcd-cert and --etcd-key)"
                  : " (etcd does not accept the client certificate " + files.cert_file +
                        ": is it signed by etcd's --trusted-ca-file?)";
    }
    return text;
  }
  if (code == 0) return "the connection failed (no TLS error recorded)";
  return SslErrorText(code);
}

}  // namespace podless::runtime
