#include "api/kube/kube_agent.h"

#include "api/kube/kube_server.h"
#include "api/kube/kubeconfig.h"
#include "api/kube/runtime_source.h"
#include "runtime/node/node.h"
#include "runtime/state/config.h"

namespace podless::api::kube {
namespace {

class KubeExtension final : public AgentExtension {
 public:
  explicit KubeExtension(RuntimeService& service) : source_(service) {}

  Status Start(const AgentContext& context) {
    KubeServerOptions options;
    options.address = context.config.kube_address;
    auto server = KubeServer::Start(context.loop, source_, context.node.agent().ca(), options);
    if (!server) return server.error();
    server_ = std::move(server).value();
    return {};
  }

  // "" when not serving.
  std::string address() const { return server_ ? server_->address() : ""; }

  // AgentExtension
  void Close() override {
    if (server_) server_->Close();
  }
  std::string Describe() const override {
    return server_ ? "Kubernetes API https://" + server_->address() : "Kubernetes API off";
  }

 private:
  RuntimeObjectSource source_;
  KubeServerPtr server_;
};

}  // namespace

Result<std::unique_ptr<AgentExtension>> StartKubeApi(const AgentContext& context) {
  auto extension = std::make_unique<KubeExtension>(context.service);
  if (!context.config.kube_address.empty()) {
    if (Status s = extension->Start(context); !s) return s.error();
  }
  // The kubeconfig names the address really bound (a port 0 was given one).
  RegisterKubeconfigMethod(context.api, context.node.agent().ca(), extension->address());
  return std::unique_ptr<AgentExtension>(std::move(extension));
}

}  // namespace podless::api::kube
