// TLS for the etcd client's https:// endpoints, the way Kubernetes components
// talk to etcd: etcd's certificate is verified against an operator-given CA
// bundle (--etcd-ca, never the system trust store) and against the host or IP
// address of the endpoint URL; a client certificate (--etcd-cert/--etcd-key)
// is presented when given, as etcd requires with --client-cert-auth.
//
// Why not proxy::TlsStream: it speaks the HBONE profile (TLS 1.3 only, SPIFFE
// identities checked against the mesh's trust store, a Dispatcher and a
// proxy::Stream transport). etcd needs host-name checks against another CA
// and TLS 1.2 too, on EtcdConnection's own socket. So this is only the SSL
// object over two memory BIOs; EtcdConnection moves the ciphertext between
// them and its socket (runtime/etcd/etcd_connection.cc).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/result.h"

namespace podless::runtime {

// The files behind --etcd-ca, --etcd-cert and --etcd-key (`podless run` and
// `podless ca init` take the same flags; errors name them).
struct EtcdTlsFiles {
  std::string ca_file = {};    // PEM bundle: the CA(s) that signed etcd's certificate
  std::string cert_file = {};  // PEM client certificate, then its intermediates
  std::string key_file = {};   // its private key: owned by this uid, no group/other access
  bool any() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
};

// Checks, without reading anything, that the endpoints and the files go
// together: the endpoints are all http:// or all https://; https:// needs
// --etcd-ca; --etcd-cert and --etcd-key come together; the files are for
// https:// only (a cleartext endpoint would silently ignore them).
// INVALID_ARGUMENT saying which rule is broken.
Status CheckEtcdTlsFlags(const std::vector<std::string>& endpoints, const EtcdTlsFiles& files);

// One SSL_CTX for every connection of a client: TLS 1.2 or 1.3, ALPN "h2",
// peer verification on, the --etcd-ca certificates as the only trust
// anchors (each one of them, as in Go's crypto/tls, which etcd operators
// know: an intermediate in the bundle is trusted as such).
class EtcdTlsContext {
 public:
  // Reads and checks the files once (the key file must pass
  // workloads::CheckPrivateKeyFile). Errors name the flag and the file.
  static Result<std::shared_ptr<const EtcdTlsContext>> Load(const EtcdTlsFiles& files);

  SSL_CTX* ctx() const { return ctx_.get(); }
  const EtcdTlsFiles& files() const { return files_; }

 private:
  EtcdTlsContext() = default;
  bssl::UniquePtr<SSL_CTX> ctx_;
  EtcdTlsFiles files_;
};
using EtcdTlsContextPtr = std::shared_ptr<const EtcdTlsContext>;

// The client side of one TLS connection, over memory BIOs. Nothing here
// touches a socket: the owner Feeds what it read and writes TakeOutgoing.
class EtcdTlsSession {
 public:
  // `host` is the endpoint URL's host (a name or an IP literal, without
  // brackets): the certificate must name it (a DNS SAN, or an IP SAN for a
  // literal). A name also goes out as SNI.
  static Result<std::unique_ptr<EtcdTlsSession>> Create(EtcdTlsContextPtr context,
                                                        const std::string& host);
  EtcdTlsSession(const EtcdTlsSession&) = delete;
  EtcdTlsSession& operator=(const EtcdTlsSession&) = delete;

  // Ciphertext read from the socket.
  void Feed(std::string_view ciphertext);
  // Advances the handshake: false while it needs more from the peer, true
  // once it is complete and etcd agreed to HTTP/2 (ALPN h2). An error says
  // why it failed ("certificate verify failed: hostname mismatch: ...").
  Result<bool> Handshake();
  // Appends the plaintext that is ready to `out`. An error (the reason, with
  // no prefix) once the session failed (an alert from etcd, e.g. refusing the
  // client certificate, which TLS 1.3 reports only after the client's side of
  // the handshake is done) or etcd closed it.
  Status Read(std::string& out);
  Status Write(std::string_view plaintext);
  // Ciphertext to send (handshake flights, records, alerts); empties it.
  std::string TakeOutgoing();

 private:
  EtcdTlsSession(EtcdTlsContextPtr context, std::string host);
  // Why the last SSL call failed (from the error queue, the verify result or
  // etcd's alert), for an error message; clears the error queue.
  std::string FailureReason();
  // A certificate verification result as an operator can act on it.
  std::string VerifyFailure(long result) const;

  EtcdTlsContextPtr context_;  // for the file names in errors
  std::string host_;
  bssl::UniquePtr<SSL> ssl_;
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
};
using EtcdTlsSessionPtr = std::unique_ptr<EtcdTlsSession>;

}  // namespace podless::runtime
