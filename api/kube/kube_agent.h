// The Kubernetes API as an extension of `podless run` (api/run_command.h):
// main() registers StartKubeApi.
#pragma once

#include <memory>

#include "api/run_command.h"

namespace podless::api::kube {

// Adds the kubeconfig method to the local API and, unless --kube-address is
// off, serves the Kubernetes API there. A port that is taken is an error (the
// agent does not start), as for its other listeners.
Result<std::unique_ptr<AgentExtension>> StartKubeApi(const AgentContext& context);

}  // namespace podless::api::kube
