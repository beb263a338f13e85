// Node: the running agent's loop-bound services around the Agent's state —
// the admin server (/healthz, /ready, /metrics, /config_dump), the metrics
// registry, and the proxy core. The API layer adds the gRPC server on top.
//
// Start() binds everything or fails with the address/path that could not be
// bound; Shutdown() closes every socket the node opened so the loop ends.
#pragma once

#include <uv.h>

#include <memory>

#include "proxy/metrics.h"
#include "runtime/admin_server.h"
#include "runtime/agent.h"
#include "runtime/config.h"

namespace podless::runtime {

class Node;
using NodePtr = std::unique_ptr<Node>;

class Node {
 public:
  // Loads the state (Agent::Open) and binds the admin server.
  static Result<NodePtr> Start(uv_loop_t* loop, const AgentConfig& config);
  ~Node();

  Agent& agent() { return *agent_; }
  proxy::Registry& metrics() { return *metrics_; }
  uv_loop_t* loop() const { return loop_; }
  uint16_t admin_port() const { return admin_->port(); }

  // /ready answers 200 from now on.
  void SetReady() { ready_ = true; }
  // Closes every listener and connection the node owns.
  void Shutdown();

 private:
  Node(uv_loop_t* loop, const AgentConfig& config);
  Status Init();
  void AddAdminRoutes();
  void RegisterMetrics();

  uv_loop_t* loop_;
  AgentConfig config_;
  proxy::RegistryPtr metrics_;
  AgentPtr agent_;
  std::unique_ptr<AdminServer> admin_;
  bool ready_ = false;
};

}  // namespace podless::runtime
