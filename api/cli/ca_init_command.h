// `podless ca init`: creates a cluster's root CA and publishes it in etcd
// (runtime/cluster/cluster.h, InitClusterCa). Talks to etcd, not to an agent.
#pragma once

#include <string>
#include <vector>

namespace podless::api {

// Returns the exit code: 0 done, 1 failed (reason printed), 2 bad flags.
int CaInitCommand(const std::vector<std::string>& args);

}  // namespace podless::api
