// The `podless` binary: `podless run` is the node agent; every other verb is
// a client of its local API. `podless __sandbox` is the agent's own launcher
// of sandboxed processes (runtime/process/sandbox.h), not a verb for users.
#include <string>
#include <string_view>
#include <vector>

#include "api/cli/cli.h"
#include "api/kube/kube_agent.h"
#include "runtime/process/sandbox.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == podless::runtime::kSandboxVerb) {
    return podless::runtime::RunSandbox(std::vector<std::string>(argv + 2, argv + argc));
  }
  podless::api::RegisterAgentExtension(podless::api::kube::StartKubeApi);
  return podless::api::CliMain(std::vector<std::string>(argv + 1, argv + argc));
}
