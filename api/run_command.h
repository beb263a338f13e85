// `podless run`: the node agent process. Wires the runtime Node (state,
// admin, proxy) and the gRPC API server onto one libuv loop, applies
// `--apply` manifests, and runs until SIGINT/SIGTERM.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "workloads/result.h"

namespace podless::runtime {
class Node;
struct AgentConfig;
}  // namespace podless::runtime

namespace podless::api {

class GrpcServer;
class RuntimeService;

// A service that rides on the agent beside the local API (the Kubernetes
// API, api/kube/). main() registers its factory, so that this library does
// not depend on the extension's (which depends on this one).
class AgentExtension {
 public:
  virtual ~AgentExtension() = default;
  // Stops serving (SIGINT/SIGTERM). Idempotent.
  virtual void Close() = 0;
  // What the "ready" log line says of it ("Kubernetes API https://...").
  virtual std::string Describe() const = 0;
};

struct AgentContext {
  uv_loop_t* loop;
  runtime::Node& node;
  RuntimeService& service;
  GrpcServer& api;  // the local API: an extension may add methods
  const runtime::AgentConfig& config;
};

// Called once the node and the local API are up, before --apply. An error
// stops the agent from starting (with that message); null: nothing to run.
using AgentExtensionFactory =
    std::function<Result<std::unique_ptr<AgentExtension>>(const AgentContext& context)>;
void RegisterAgentExtension(AgentExtensionFactory factory);

// Returns the process exit code: 0 after a clean shutdown, 1 when the agent
// cannot start (the reason is printed), 2 for bad flags.
int RunCommand(const std::vector<std::string>& args);

}  // namespace podless::api
