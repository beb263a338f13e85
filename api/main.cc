// The `podless` binary: `podless run` is the node agent; every other verb is
// a client of its local API.
#include <string>
#include <vector>

#include "api/cli.h"

int main(int argc, char** argv) {
  return podless::api::CliMain(std::vector<std::string>(argv + 1, argv + argc));
}
