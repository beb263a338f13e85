// Stream: the byte-stream abstraction every connection-like thing in the
// proxy core presents (a plaintext TCP connection, an HBONE CONNECT stream,
// one end of an in-memory pipe), so an app or a splice serves any of them.
//
// Threading and reentrancy rules (they keep lifetimes simple):
// - Everything runs on the loop thread.
// - A stream never calls its handler from inside a method the handler called
//   (Write/End/Reset/SetReadPaused); it calls back only from loop events.
// - A stream owns itself. It stops calling its handler and is destroyed by
//   its transport after OnClosed(), or after the handler called Reset();
//   after either the handler must not touch the stream again.
#pragma once

#include <cstddef>
#include <string_view>

namespace podless::proxy {

// Above this many queued bytes a writer should pause its source and wait for
// OnWritable() (backpressure); below kLowWatermark OnWritable() fires.
inline constexpr size_t kHighWatermark = 1 << 20;
inline constexpr size_t kLowWatermark = 256 << 10;

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  // Bytes from the peer; valid only during the call.
  virtual void OnData(std::string_view bytes) = 0;
  // The peer sends no more bytes (TCP FIN, HTTP/2 END_STREAM).
  virtual void OnEnd() = 0;
  // The stream is over: both directions finished (reset = false) or aborted
  // (reset = true). The last call the handler gets.
  virtual void OnClosed(bool reset) = 0;
  // The queued bytes fell below kLowWatermark after having exceeded it.
  virtual void OnWritable() {}
};

class Stream {
 public:
  virtual ~Stream() = default;
  // Must be called once before the stream delivers anything.
  virtual void SetHandler(StreamHandler* handler) = 0;
  // Queues bytes (copied) for the peer.
  virtual void Write(std::string_view bytes) = 0;
  // Half-close: the peer gets FIN / END_STREAM after the queued bytes.
  virtual void End() = 0;
  // Aborts both directions (TCP RST-like close, HTTP/2 RST_STREAM). No
  // callback follows.
  virtual void Reset() = 0;
  // Bytes written but not yet handed to the kernel / the HTTP/2 session.
  virtual size_t QueuedBytes() const = 0;
  // Stops (true) or resumes (false) delivering OnData; with HTTP/2 the flow
  // control window stays closed while paused.
  virtual void SetReadPaused(bool paused) = 0;
};

}  // namespace podless::proxy
