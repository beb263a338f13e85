// `podless kubeconfig`: a kubeconfig for the agent's Kubernetes API, with an
// admin client certificate the agent's CA signs on request. The agent makes
// it (it holds the CA key) and hands it over on its API socket, which only
// the agent's owner may use (0600): whoever may call the local API may
// already change everything, so the admin certificate grants nothing more.
#pragma once

#include <string>
#include <string_view>

#include "api/grpc_server.h"
#include "workloads/certificate_authority.h"

namespace podless::api::kube {

// The gRPC method (request and response are google.protobuf.StringValue:
// the server address HOST:PORT, "" for the agent's own --kube-address; the
// kubeconfig YAML).
inline constexpr const char* kKubeconfigMethod = "/podless.v1.Kube/Kubeconfig";

// The kubeconfig text: cluster "podless" at https://<address> trusting
// `ca_pem`, user "podless-admin" with the certificate chain and key, context
// "podless" (namespace default) current. An address on 0.0.0.0 is reached
// on 127.0.0.1.
std::string KubeconfigYaml(std::string_view address, std::string_view ca_pem,
                           std::string_view cert_pem, std::string_view key_pem);

// Serves kKubeconfigMethod: issues a new admin certificate per call.
// `kube_address` is the agent's --kube-address ("" when the API is off:
// then the caller must name an address).
void RegisterKubeconfigMethod(GrpcServer& server, const workloads::CertificateAuthority& ca,
                              std::string kube_address);

}  // namespace podless::api::kube
