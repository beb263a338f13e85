#include "runtime/node.h"

namespace podless::runtime {

Node::Node(uv_loop_t* loop, const AgentConfig& config)
    : loop_(loop), config_(config), metrics_(std::make_unique<proxy::Registry>()) {}

Node::~Node() { Shutdown(); }

Result<NodePtr> Node::Start(uv_loop_t* loop, const AgentConfig& config) {
  NodePtr node(new Node(loop, config));
  if (Status s = node->Init(); !s) return s.error();
  return node;
}

Status Node::Init() {
  auto agent = Agent::Open(config_);
  if (!agent) return agent.error();
  agent_ = std::move(*agent);
  RegisterMetrics();

  admin_ = std::make_unique<AdminServer>(loop_);
  AddAdminRoutes();
  if (Status s = admin_->Listen(config_.admin_address); !s) {
    return MakeError(s.error().code, "admin server: " + s.error().message);
  }
  return {};
}

void Node::RegisterMetrics() {
  Agent* agent = agent_.get();
  metrics_->AddCallbackGauge("podless_workloads", "Workload objects hosted by this agent.",
                             [agent] { return static_cast<double>(agent->workload_count()); });
  metrics_->AddCallbackGauge("podless_replicas", "Workload replicas hosted by this agent.",
                             [agent] { return static_cast<double>(agent->replica_count()); });
  metrics_->AddCallbackGauge(
      "podless_certificates_cached", "X.509-SVIDs currently cached (one per identity in use).",
      [agent] { return static_cast<double>(agent->certificates_cached()); });
  proxy::Counter& issued =
      metrics_->AddCounter("podless_certificates_issued_total", "X.509-SVIDs issued.")
          .WithLabels(std::span<const std::string>());
  agent_->OnCertificateIssued([&issued] { issued.Inc(); });
  metrics_->AddCallbackGauge("process_resident_memory_bytes", "Resident memory of the agent.",
                             proxy::ProcessResidentBytes);
}

void Node::AddAdminRoutes() {
  admin_->AddRoute("/healthz", [](const proxy::Http1Request&) {
    return AdminResponse{200, "text/plain; charset=utf-8", "ok\n"};
  });
  admin_->AddRoute("/ready", [this](const proxy::Http1Request&) {
    if (!ready_) return AdminResponse{503, "text/plain; charset=utf-8", "starting\n"};
    return AdminResponse{200, "text/plain; charset=utf-8", "ready\n"};
  });
  admin_->AddRoute("/metrics", [this](const proxy::Http1Request&) {
    return AdminResponse{200, proxy::kPrometheusContentType, metrics_->Render()};
  });
  admin_->AddRoute("/config_dump", [this](const proxy::Http1Request&) {
    return AdminResponse{200, "application/json", agent_->ConfigDumpJson() + "\n"};
  });
}

void Node::Shutdown() {
  ready_ = false;
  if (admin_) admin_->Close();
}

}  // namespace podless::runtime
