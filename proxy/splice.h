// Splice: relays bytes both ways between two Streams until both are done,
// propagating half-close (End) and aborts (Reset), with backpressure: a side
// whose peer has more than kHighWatermark queued stops reading until the
// queue drains. Owns itself; deleted when both streams are closed.
//
// With an idle timeout, a splice that relays no byte either way (and whose
// queues drain nothing) for that long resets both streams and counts it:
// a connection held open and silent cannot keep its descriptors forever.
#pragma once

#include <cstdint>
#include <memory>

#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/base/stream.h"
#include "proxy/http_request_gate.h"

namespace podless::proxy {

struct SpliceOptions {
  // Both set: reset both streams after idle_timeout_ms without a byte.
  Dispatcher* dispatcher = nullptr;
  uint64_t idle_timeout_ms = 0;      // 0: never
  Counter* idle_timeouts = nullptr;  // counted when it fires; may be null
  // Set: the bytes from `a` (a client) to `b` (a backend) pass this gate
  // request by request. A refused request stops `a`'s bytes; the gate's
  // response is written to `a` at once, or, when earlier requests went to
  // `b`, after `b` has answered them (b is half-closed and its end awaited);
  // then `a` is ended.
  std::shared_ptr<HttpRequestGate> request_gate;
};

// Starts relaying between `a` and `b` (becomes the handler of both).
void StartSplice(Stream* a, Stream* b, SpliceOptions options = {});

}  // namespace podless::proxy
