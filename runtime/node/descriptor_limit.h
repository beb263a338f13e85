// The agent holds a descriptor per connection, listener and supervised
// pipe: at start it raises its soft RLIMIT_NOFILE to the hard limit (a
// shell's default soft limit, 1024, would cap a node at a few hundred
// connections), as proxies do. The processes it supervises get the soft
// limit it found instead (SupervisorOptions::rlimit_nofile), so a workload
// sees the system's default (select() fails above 1024).
#pragma once

#include <cstdint>

namespace podless::runtime {

struct DescriptorLimit {
  uint64_t before = 0;  // the soft limit the agent started with
  uint64_t now = 0;     // after raising it (equal when it could not)
};

DescriptorLimit RaiseDescriptorLimit();

}  // namespace podless::runtime
