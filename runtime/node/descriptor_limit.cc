#include "runtime/node/descriptor_limit.h"

#include <sys/resource.h>

namespace podless::runtime {

DescriptorLimit RaiseDescriptorLimit() {
  DescriptorLimit out;
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return out;
  out.before = out.now = files.rlim_cur;
  if (files.rlim_cur >= files.rlim_max) return out;
  rlimit raised = files;
  raised.rlim_cur = files.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) out.now = raised.rlim_cur;
  return out;
}

}  // namespace podless::runtime
