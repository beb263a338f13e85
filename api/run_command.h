// `podless run`: the node agent process. Wires the runtime Node (state,
// admin, proxy) and the gRPC API server onto one libuv loop, applies
// `--apply` manifests, and runs until SIGINT/SIGTERM.
#pragma once

#include <string>
#include <vector>

namespace podless::api {

// Returns the process exit code: 0 after a clean shutdown, 1 when the agent
// cannot start (the reason is printed), 2 for bad flags.
int RunCommand(const std::vector<std::string>& args);

}  // namespace podless::api
