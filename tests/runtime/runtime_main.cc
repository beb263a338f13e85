// The runtime tests' main: doctest, and the sandbox launcher for argv[1] ==
// "__sandbox", so the supervisor's tests spawn this binary as the agent
// spawns itself.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "runtime/process/sandbox.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == podless::runtime::kSandboxVerb) {
    return podless::runtime::RunSandbox(std::vector<std::string>(argv + 2, argv + argc));
  }
  return doctest::Context(argc, argv).run();
}
