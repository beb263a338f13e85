// TLS for the etcd client's https:// endpoints, the way Kubernetes components
// talk to etcd: etcd's certificate is verified against an operator-given CA
// bundle (--etcd-ca, never the system trust store) and against the host or IP
// address of the endpoint URL; a client certificate (--etcd-cert/--etcd-key)
// is presented when given, as etcd requires with --client-cert-auth.
//
// This file holds only the profile: the SSL_CTX and the wording of its
// failures. The TLS session itself is the data plane's proxy::TlsStream, run
// with this profile instead of HBONE's (TlsContext::CreateCustomClient and
// TlsStream::ConnectToName, which checks the endpoint's host), over the
// connection's proxy::TcpStream (runtime/etcd/etcd_connection.cc).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/tls_stream.h"
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

  // The profile for proxy::TlsStream::ConnectToName.
  const std::shared_ptr<const proxy::TlsContext>& stream_context() const { return context_; }
  const EtcdTlsFiles& files() const { return files_; }

 private:
  EtcdTlsContext() = default;
  std::shared_ptr<const proxy::TlsContext> context_;
  EtcdTlsFiles files_;
};
using EtcdTlsContextPtr = std::shared_ptr<const EtcdTlsContext>;

// Why a TLS call with etcd failed (`error` from the error queue, 0 if none),
// as an operator can act on it: a verification failure names the host or the
// --etcd-ca file, an alert about our certificate says what to pass. With no
// prefix ("certificate verify failed: hostname mismatch: ...").
std::string DescribeEtcdTlsFailure(const EtcdTlsFiles& files, const SSL* ssl, uint32_t error,
                                   const std::string& host);

}  // namespace podless::runtime
