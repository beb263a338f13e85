// Who may use the Kubernetes API: clients whose TLS certificate the agent's
// CA signed for its admin (CN podless-admin, no SPIFFE ID). The TLS
// handshake accepts any certificate, or none, so that the refusal is an HTTP
// answer kubectl can print (401 Unauthorized, 403 Forbidden), as the
// Kubernetes API server does; nothing is served before this decision.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "workloads/certificate_authority.h"
#include "workloads/result.h"

namespace podless::api::kube {

// The common name of the admin client certificate `podless kubeconfig` gets.
inline constexpr const char* kAdminCommonName = "podless-admin";
// The kubeconfig's certificates live this long (Kubernetes' kubeadm gives
// its admin a year).
inline constexpr std::chrono::seconds kAdminCertificateTtl{365 * 24 * 3600};

enum class AuthOutcome {
  kAdmin,          // served
  kNoCertificate,  // 401: anonymous
  kUntrusted,      // 401: the agent's CA did not sign it (or it expired)
  kNotAdmin,       // 403: a certificate of the agent's CA, but not the admin's
};

struct AuthDecision {
  AuthOutcome outcome = AuthOutcome::kNoCertificate;
  std::string user;    // the certificate's CN (or its SPIFFE ID)
  std::string reason;  // for the Status message and the log
  int http_status() const;
};

// Decides for a client certificate `leaf` (null: none was sent), the
// certificates the client sent after it (`chain`, may be null) and the
// agent's roots `trust`, at `now` (unix seconds).
AuthDecision Authenticate(X509* leaf, STACK_OF(X509) * chain, X509_STORE* trust, int64_t now);
// The same for a finished server-side handshake.
AuthDecision Authenticate(SSL* ssl, X509_STORE* trust, int64_t now);

// The server's TLS context: TLS 1.2 and 1.3, a certificate of the agent's CA
// for `hosts` (IPv4 addresses become IP SANs, the rest DNS SANs), ALPN
// h2 or http/1.1, a client certificate asked for and checked by Authenticate.
Result<bssl::UniquePtr<SSL_CTX>> NewServerContext(const workloads::CertificateAuthority& ca,
                                                  const std::vector<std::string>& hosts);

}  // namespace podless::api::kube
