// Splice: relays bytes both ways between two Streams until both are done,
// propagating half-close (End) and aborts (Reset), with backpressure: a side
// whose peer has more than kHighWatermark queued stops reading until the
// queue drains. Owns itself; deleted when both streams are closed.
#pragma once

#include "proxy/stream.h"

namespace podless::proxy {

// Starts relaying between `a` and `b` (becomes the handler of both).
void StartSplice(Stream* a, Stream* b);

}  // namespace podless::proxy
