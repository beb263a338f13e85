// ResponseStream: the body of a streamed Kubernetes API response (a watch,
// `logs -f`), between the producer that writes it (a watch subscription, a
// log follower) and the connection that sends it (HTTP/1.1 chunks, HTTP/2
// DATA frames).
//
// Bounded: the producer writes into a queue the connection drains as fast
// as the client reads (the connection stops draining while its transport
// holds more than proxy::kHighWatermark). A client that does not read lets
// the queue pass `limit` (one write into an empty queue is always taken);
// then the stream is cut as the API server cuts a slow watcher: the
// producer is let go (its release callback runs, which frees its
// subscription), the queued bytes are dropped and the connection ends the
// response. When the client goes (connection closed, RST_STREAM, server
// Close()) the connection calls Cancel(), which lets the producer go too.
// Everything runs on the loop thread; both sides hold a shared_ptr.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace podless::api::kube {

class ResponseStream {
 public:
  // Default limit of queued bytes: a few hundred watch events. With
  // WatchHub's limit on open watches this bounds what watchers can hold.
  static constexpr size_t kDefaultLimit = 1 << 20;

  explicit ResponseStream(size_t limit = kDefaultLimit) : limit_(limit) {}
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;
  ~ResponseStream() { ReleaseProducer(); }

  // Producer side. Queues bytes; false once the stream is over (ended,
  // cancelled, or cut now because the queue passed the limit): the producer
  // stops writing.
  bool Write(std::string_view bytes);
  // No more bytes: the connection ends the response once the queue drained.
  void End();
  // Told once when the stream no longer wants bytes (client gone, cut, or
  // after End()); it releases what the producer holds for this stream.
  void OnRelease(std::function<void()> release) { release_ = std::move(release); }

  // Connection side. Told, synchronously from Write()/End(), when bytes
  // were queued or the stream ended, so the connection sends them.
  void SetReadable(std::function<void()> readable) { readable_ = std::move(readable); }
  // Up to `max` queued bytes, taken off the queue.
  std::string Take(size_t max);
  size_t queued() const { return queue_.size() - taken_; }
  // Ended (or cut) and nothing left to send: the response is complete.
  bool finished() const { return over_ && queued() == 0; }
  // The queue passed the limit (the client did not read).
  bool cut() const { return cut_; }
  // The client went: the producer is let go, nothing more is sent.
  void Cancel();

 private:
  void ReleaseProducer();
  void Notify();

  size_t limit_;
  std::string queue_;
  size_t taken_ = 0;  // bytes of queue_ already taken (compacted lazily)
  bool over_ = false;
  bool cut_ = false;
  std::function<void()> release_;
  std::function<void()> readable_;
};

using ResponseStreamPtr = std::shared_ptr<ResponseStream>;

}  // namespace podless::api::kube
