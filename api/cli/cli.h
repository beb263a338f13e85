// The `podless` command line: every verb but `run` is a client of the local
// API (the same gRPC calls any program can make).
#pragma once

#include <string>
#include <vector>

namespace podless::api {

// argv without the program name. Returns the process exit code.
int CliMain(const std::vector<std::string>& args);

}  // namespace podless::api
