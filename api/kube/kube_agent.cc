#include "api/kube/kube_agent.h"

#include <cstdlib>
#include <ctime>

#include "api/kube/kube_logs.h"
#include "api/kube/kube_server.h"
#include "api/kube/kube_watch.h"
#include "api/kube/kubeconfig.h"
#include "api/kube/runtime_source.h"
#include "runtime/node/node.h"
#include "runtime/state/config.h"

namespace podless::api::kube {
namespace {

class KubeExtension final : public AgentExtension {
 public:
  KubeExtension(RuntimeService& service, runtime::Node& node)
      : source_(service), feed_(node.agent(), service), logs_(node.agent(), &node.supervisor()) {}

  Status Start(const AgentContext& context) {
    KubeServerOptions options;
    options.address = context.config.kube_address;
    auto server = KubeServer::Start(context.loop, source_, context.node.agent().ca(), options);
    if (!server) return server.error();
    server_ = std::move(server).value();
    WatchOptions watch;
    // Tests shorten the bookmark interval (the API server's is about a minute).
    if (const char* ms = std::getenv("PODLESS_KUBE_BOOKMARK_MS"); ms != nullptr && *ms != 0) {
      watch.bookmark_interval_ms = std::strtoull(ms, nullptr, 10);
    }
    hub_ = std::make_unique<WatchHub>(
        context.loop, source_, feed_, [] { return static_cast<int64_t>(time(nullptr)); }, watch);
    server_->api().SetWatchHub(hub_.get());
    server_->api().SetLogSource(&logs_);
    return {};
  }

  // "" when not serving.
  std::string address() const { return server_ ? server_->address() : ""; }

  // AgentExtension
  void Close() override {
    if (server_) server_->Close();  // cancels every watch and log stream
    hub_.reset();
  }
  std::string Describe() const override {
    return server_ ? "Kubernetes API https://" + server_->address() : "Kubernetes API off";
  }

 private:
  RuntimeObjectSource source_;
  AgentChangeFeed feed_;
  AgentLogSource logs_;
  std::unique_ptr<WatchHub> hub_;
  KubeServerPtr server_;  // last: destroyed first, before what it serves
};

}  // namespace

Result<std::unique_ptr<AgentExtension>> StartKubeApi(const AgentContext& context) {
  auto extension = std::make_unique<KubeExtension>(context.service, context.node);
  if (!context.config.kube_address.empty()) {
    if (Status s = extension->Start(context); !s) return s.error();
  }
  // The kubeconfig names the address really bound (a port 0 was given one).
  RegisterKubeconfigMethod(context.api, context.node.agent().ca(), extension->address());
  return std::unique_ptr<AgentExtension>(std::move(extension));
}

}  // namespace podless::api::kube
