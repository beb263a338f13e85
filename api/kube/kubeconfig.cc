#include "api/kube/kubeconfig.h"

#include <google/protobuf/wrappers.pb.h>
#include <openssl/base64.h>

#include <vector>

#include "api/kube/auth.h"

namespace podless::api::kube {
namespace {

std::string Base64(std::string_view data) {
  size_t length = 0;
  EVP_EncodedLength(&length, data.size());
  std::string out(length, '\0');
  const size_t written =
      EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                      reinterpret_cast<const uint8_t*>(data.data()), data.size());
  out.resize(written);
  return out;
}

}  // namespace

std::string KubeconfigYaml(std::string_view address, std::string_view ca_pem,
                           std::string_view cert_pem, std::string_view key_pem) {
  std::string server(address);
  if (server.rfind("0.0.0.0:", 0) == 0) server = "127.0.0.1:" + server.substr(8);
  std::string out;
  out += "apiVersion: v1\n";
  out += "kind: Config\n";
  out += "clusters:\n";
  out += "- name: podless\n";
  out += "  cluster:\n";
  out += "    server: https://" + server + "\n";
  out += "    certificate-authority-data: " + Base64(ca_pem) + "\n";
  out += "users:\n";
  out += std::string("- name: ") + kAdminCommonName + "\n";
  out += "  user:\n";
  out += "    client-certificate-data: " + Base64(cert_pem) + "\n";
  out += "    client-key-data: " + Base64(key_pem) + "\n";
  out += "contexts:\n";
  out += "- name: podless\n";
  out += "  context:\n";
  out += "    cluster: podless\n";
  out += std::string("    user: ") + kAdminCommonName + "\n";
  out += "    namespace: default\n";
  out += "current-context: podless\n";
  out += "preferences: {}\n";
  return out;
}

void RegisterKubeconfigMethod(GrpcServer& server, const workloads::CertificateAuthority& ca,
                              std::string kube_address) {
  using google::protobuf::StringValue;
  server.AddUnary<StringValue, StringValue>(
      kKubeconfigMethod,
      [&ca, kube_address](const CallContext&, const StringValue& request) -> Result<StringValue> {
        const std::string address = request.value().empty() ? kube_address : request.value();
        if (address.empty()) {
          return MakeError(ErrorCode::kFailedPrecondition,
                           "this agent serves no Kubernetes API (--kube-address off); name the "
                           "server with --kube-address");
        }
        auto svid = ca.IssueTlsCertificate(kAdminCommonName, {}, {}, kAdminCertificateTtl);
        if (!svid) return svid.error();
        StringValue response;
        response.set_value(KubeconfigYaml(address, ca.BundlePem(), (*svid)->CertificateChainPem(),
                                          (*svid)->PrivateKeyPem()));
        return response;
      });
}

}  // namespace podless::api::kube
