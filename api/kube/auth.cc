#include "api/kube/auth.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <string_view>

namespace podless::api::kube {
namespace {

std::string CommonName(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                     static_cast<size_t>(ASN1_STRING_length(data)));
}

// The certificate's URI SAN (a workload's SPIFFE ID), or "".
std::string UriSan(X509* cert) {
  bssl::UniquePtr<GENERAL_NAMES> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return "";
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                       static_cast<size_t>(ASN1_STRING_length(uri)));
  }
  return "";
}

// The handshake takes any certificate: Authenticate decides afterwards.
int AcceptAnyCertificate(X509_STORE_CTX*, void*) { return 1; }

// h2 when the client offers it (kubectl's Go client does), else http/1.1.
int SelectAlpn(SSL*, const uint8_t** out, uint8_t* out_len, const uint8_t* in, unsigned in_len,
               void*) {
  for (std::string_view wanted : {std::string_view("h2"), std::string_view("http/1.1")}) {
    for (unsigned i = 0; i < in_len;) {
      const unsigned len = in[i];
      if (i + 1 + len > in_len) break;
      if (len == wanted.size() && std::memcmp(in + i + 1, wanted.data(), len) == 0) {
        *out = in + i + 1;
        *out_len = static_cast<uint8_t>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;  // no ALPN: HTTP/1.1 all the same
}

std::string SslError(const char* what) {
  const uint32_t code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return what;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return std::string(what) + ": " + buf;
}

}  // namespace

int AuthDecision::http_status() const {
  switch (outcome) {
    case AuthOutcome::kAdmin:
      return 200;
    case AuthOutcome::kNotAdmin:
      return 403;
    default:
      return 401;
  }
}

AuthDecision Authenticate(X509* leaf, STACK_OF(X509) * chain, X509_STORE* trust, int64_t now) {
  AuthDecision decision;
  if (leaf == nullptr) {
    decision.outcome = AuthOutcome::kNoCertificate;
    decision.reason =
        "no client certificate (the Kubernetes API needs the one `podless "
        "kubeconfig` writes)";
    return decision;
  }
  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  if (!ctx || !X509_STORE_CTX_init(ctx.get(), trust, leaf, chain)) {
    decision.outcome = AuthOutcome::kUntrusted;
    decision.reason = SslError("cannot verify the client certificate");
    return decision;
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(now));
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(ctx.get()) != 1) {
    decision.outcome = AuthOutcome::kUntrusted;
    decision.reason = std::string("client certificate not signed by this agent's CA: ") +
                      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
    ERR_clear_error();
    return decision;
  }
  const std::string uri = UriSan(leaf);
  decision.user = uri.empty() ? CommonName(leaf) : uri;
  if (uri.empty() && X509_check_ca(leaf) == 0 && decision.user == kAdminCommonName) {
    decision.outcome = AuthOutcome::kAdmin;
    return decision;
  }
  decision.outcome = AuthOutcome::kNotAdmin;
  decision.reason = "User \"" + decision.user + "\" is not the agent's admin";
  return decision;
}

AuthDecision Authenticate(SSL* ssl, X509_STORE* trust, int64_t now) {
  bssl::UniquePtr<X509> leaf(SSL_get_peer_certificate(ssl));
  // Server side: the chain the client sent, without its leaf.
  return Authenticate(leaf.get(), SSL_get_peer_cert_chain(ssl), trust, now);
}

Result<bssl::UniquePtr<SSL_CTX>> NewServerContext(const workloads::CertificateAuthority& ca,
                                                  const std::vector<std::string>& hosts) {
  std::vector<std::string> dns;
  std::vector<uint32_t> ips;
  for (const std::string& host : hosts) {
    in_addr addr{};
    if (inet_pton(AF_INET, host.c_str(), &addr) == 1) {
      if (addr.s_addr != 0) ips.push_back(ntohl(addr.s_addr));
    } else if (!host.empty()) {
      dns.push_back(host);
    }
  }
  auto svid = ca.IssueTlsCertificate("podless-kube-apiserver", dns, ips, kAdminCertificateTtl);
  if (!svid) return svid.error();
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) return MakeError(ErrorCode::kInternal, SslError("SSL_CTX_new"));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  std::vector<CRYPTO_BUFFER*> chain = {(*svid)->leaf.get()};
  for (const auto& cert : (*svid)->intermediates) chain.push_back(cert.get());
  if (!SSL_CTX_set_chain_and_key(ctx.get(), chain.data(), chain.size(), (*svid)->private_key.get(),
                                 nullptr)) {
    return MakeError(ErrorCode::kInternal, SslError("loading the API server's certificate"));
  }
  // Every connection proves its client anew.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx.get(), AcceptAnyCertificate, nullptr);
  SSL_CTX_set_alpn_select_cb(ctx.get(), SelectAlpn, nullptr);
  return ctx;
}

}  // namespace podless::api::kube
