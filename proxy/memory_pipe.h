// MemoryPipe: two Streams connected in memory, for a destination hosted on
// the same node (the outbound short-circuit: no TLS, no socket). What one
// end writes is delivered to the other end's handler on a later loop turn
// (never inside the writer's call), End() arrives as OnEnd(), Reset() as
// OnClosed(true). An end's QueuedBytes() is what its peer has not taken
// yet, so backpressure works as over a socket.
#pragma once

#include <utility>

#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"

namespace podless::proxy {

// Two connected ends; each owns itself like any Stream (freed once both
// are finished).
std::pair<Stream*, Stream*> NewMemoryPipe(Dispatcher& dispatcher);

}  // namespace podless::proxy
