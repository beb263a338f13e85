// libuv writes to sockets with write(2), which raises SIGPIPE when the peer
// has gone, and SIGPIPE's default action ends the process. Both ends of the
// agent's gRPC need the EPIPE error instead: the API server, whose client may
// vanish mid-response, and the CLI's client, whose agent may stop mid-call
// (it then says UNAVAILABLE and why).
#pragma once

#include <signal.h>

namespace podless::runtime {

// Ignores SIGPIPE unless the program has chosen a disposition of its own.
inline void IgnoreSigpipeUnlessHandled() {
  struct sigaction current = {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
}

}  // namespace podless::runtime
