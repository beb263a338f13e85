// The Kubernetes API's HTTP/2 side (ALPN h2, which kubectl's Go client
// prefers): one nghttp2 server session over a connection's TlsStream,
// every request answered by the same function as over HTTP/1.1, once its
// body (if any) is in. A whole body is handed to nghttp2 at once; a
// streamed one (watch, logs -f: KubeResponse::stream) is read as it is
// queued, the data provider deferring while it is empty and resumed when
// the producer writes. The session's flow control, and the transport's high
// watermark, pace both.
#pragma once

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <functional>
#include <map>
#include <string>

#include "api/kube/kube_api.h"
#include "proxy/base/stream.h"
#include "proxy/base/timer.h"

namespace podless::api::kube {

// What KubeServer owns per connection, whichever the protocol.
class KubeConnection : public proxy::StreamHandler {
 public:
  ~KubeConnection() override = default;
  // Ends the connection now (server shutdown, idle); the owner is told
  // through its closed callback.
  virtual void Abort() = 0;
};

class Http2Connection final : public KubeConnection {
 public:
  using AnswerFunction = std::function<KubeResponse(const KubeRequest&)>;
  using ClosedFunction = std::function<void(KubeConnection*)>;

  // Takes `stream` (an established TLS stream) over; the server preface
  // (SETTINGS) goes out at once. A client that sends nothing for
  // `idle_timeout_ms` (its PINGs count) is disconnected.
  Http2Connection(uv_loop_t* loop, proxy::Stream* stream, uint64_t idle_timeout_ms,
                  AnswerFunction answer, ClosedFunction closed);
  ~Http2Connection() override;

  // KubeConnection
  void Abort() override;

  // Request bodies (DATA frames, collected per stream until END_STREAM):
  // at most `limit` bytes (more: 413 at once), whole within `timeout_ms`
  // (else 408). With `accept` false (a client refused), a request with a
  // body is answered when its headers end and its DATA is dropped.
  void SetBodyPolicy(bool accept, size_t limit, uint64_t timeout_ms);

 private:
  struct Request {
    KubeRequest request;
    std::string body;  // the response's
    size_t sent = 0;
    bool answered = false;      // the response is submitted
    bool early = false;         // before the request's end (refused, too large, late)
    uint64_t body_started = 0;  // loop ms when its body began; 0: none coming
    ResponseStreamPtr stream;   // a streamed body instead
  };

  // proxy::StreamHandler
  void OnData(std::string_view bytes) override;
  void OnEnd() override;
  void OnClosed(bool reset) override;
  void OnWritable() override { Flush(); }

  // Hands what nghttp2 has to send to the stream; closes when the session
  // wants neither to read nor to write.
  void Flush();
  void Finish();
  void Respond(int32_t stream_id);
  // Answers a request still receiving its body with `response`.
  void RespondEarly(int32_t stream_id, KubeResponse response);
  void OnBodyData(int32_t stream_id, std::string_view data);
  void CheckBodyTimeouts();
  void ArmIdleTimer();
  void OnIdle();
  // Lets every streamed body's producer go (the connection is over).
  void CancelStreams();

  friend struct Http2Callbacks;
  proxy::Stream* stream_;  // owns itself; null once closed
  AnswerFunction answer_;
  ClosedFunction closed_;
  nghttp2_session* session_ = nullptr;
  uint64_t idle_timeout_ms_;
  proxy::Timer idle_timer_;  // Abort
  uv_loop_t* loop_;
  bool accept_bodies_ = true;
  size_t body_limit_ = 0;
  uint64_t body_timeout_ms_ = 0;
  proxy::Timer body_timer_;  // CheckBodyTimeouts
  std::map<int32_t, Request> requests_;
};

}  // namespace podless::api::kube
