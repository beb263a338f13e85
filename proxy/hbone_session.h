// HboneSession: one HTTP/2 connection (nghttp2) carrying HBONE CONNECT
// streams, over a Stream transport (a TlsStream; plain TCP in tests).
//
// Server role: every CONNECT request is handed to Callbacks::OnConnectRequest
// with an HboneStream; the callee answers with Respond(status) (200 opens the
// tunnel). Client role: OpenStream() sends `CONNECT ip:port` and reports the
// response status.
//
// Flow control: the local windows are large (4 MiB per stream, 16 MiB per
// connection) and WINDOW_UPDATEs are sent only for bytes the stream's handler
// has taken: a paused handler (SetReadPaused) closes the peer's window, so a
// slow consumer never makes the proxy buffer without bound. Outgoing bytes
// leave only while the transport is below its high watermark.
//
// Memory: an idle stream (a node may hold a hundred thousand) keeps only
// its HboneStream and nghttp2's stream state: its queues give their chunks
// back when they drain, and nghttp2 gets a data item only while bytes (or
// the end) wait to be sent.
//
// nghttp2 callbacks are free functions that cast user_data back to the
// session (as in nghttpx). Handler callbacks are made only from transport
// events and deferred tasks, never from inside a handler's own call.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "proxy/base/byte_queue.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

inline constexpr int32_t kStreamWindow = 4 << 20;
inline constexpr int32_t kConnectionWindow = 16 << 20;
inline constexpr uint32_t kServerMaxConcurrentStreams = 1000;
inline constexpr uint64_t kDefaultPrefaceTimeoutMs = 10'000;
inline constexpr uint64_t kDefaultStreamStallTimeoutMs = 30'000;

// What a session tolerates from its peer (SetLimits, before Start).
struct HboneSessionLimits {
  // Server role: the client's connection preface and first SETTINGS frame
  // must arrive within this after Start(), else the connection is closed
  // (Callbacks::OnPrefaceTimeout). 0: no limit.
  uint64_t preface_timeout_ms = 0;
  // A stream with bytes to send whose peer keeps its flow-control window
  // shut this long is reset (RST_STREAM CANCEL, Callbacks::OnStreamStalled);
  // a connection whose whole window stays shut with bytes waiting is closed.
  // A stream that is merely idle never times out. 0: no limit.
  uint64_t stream_stall_timeout_ms = 0;
  // Server role: SETTINGS_MAX_CONCURRENT_STREAMS. A stream over it is
  // refused by nghttp2 (REFUSED_STREAM while our SETTINGS are unacknowledged,
  // a connection error after), reported with Callbacks::OnStreamRefused.
  uint32_t max_concurrent_streams = kServerMaxConcurrentStreams;
};

class HboneSession;

class HboneStream final : public Stream, private DeferredTask {
 public:
  // Client role: status 200 = tunnel open (then call SetHandler); any other
  // status, or 0 with `error`, = refused (the stream is gone, do not touch).
  using ResponseCallback = std::function<void(int status, const std::string& error)>;

  // The `:authority` of the CONNECT request.
  const std::string& authority() const { return authority_; }
  int32_t id() const { return id_; }
  HboneSession& session() const { return session_; }

  // Server role: answers the CONNECT request. 200 opens the tunnel; any other
  // status ends the stream (the stream is then gone, do not touch).
  void Respond(int status);

  // Stream
  void SetHandler(StreamHandler* handler) override;
  void Write(std::string_view bytes) override;
  void End() override;
  void Reset() override;
  size_t QueuedBytes() const override { return out_.size(); }
  void SetReadPaused(bool paused) override;

  ~HboneStream() override;

 private:
  friend class HboneSession;
  friend struct HboneCallbacks;
  explicit HboneStream(HboneSession& session) : session_(session) {}

  void OnBody(const uint8_t* data, size_t len);
  void OnPeerEnd();
  void Deliver();
  void RunDeferred() override { Deliver(); }
  // Gives nghttp2 a data item for the queued bytes (and the end), if it
  // has none; none is held while nothing waits.
  void SubmitData();
  ssize_t ReadBody(uint8_t* buf, size_t length, uint32_t* data_flags);

  // Laid out compactly: a node holds one of these per open stream, a
  // hundred thousand of them when idle (no queue holds memory while empty).
  HboneSession& session_;
  int32_t id_ = -1;
  int status_ = 0;  // client role: the response's :status
  std::string authority_;
  ResponseCallback on_response_;
  StreamHandler* handler_ = nullptr;
  ByteQueue out_;
  ByteQueue in_;  // received while paused, not yet delivered nor consumed
  // Stall detection (HboneSessionLimits::stream_stall_timeout_ms), in loop
  // milliseconds: when bytes of this stream last went to nghttp2, and since
  // when bytes have been waiting to go.
  uint64_t last_sent_ms_ = 0;
  uint64_t pending_since_ms_ = 0;
  // Server role, from the request headers: :method is CONNECT; a :protocol
  // (extended CONNECT) was sent, which is refused.
  bool method_connect_ : 1 = false;
  bool has_protocol_ : 1 = false;
  bool open_ : 1 = false;  // 200 sent/received: body may flow
  bool read_paused_ : 1 = false;
  bool peer_ended_ : 1 = false;
  bool peer_end_delivered_ : 1 = false;
  bool end_requested_ : 1 = false;
  // An nghttp2 data item reads from out_ (submitted while bytes or the end
  // wait, finished when out_ drains); a submission must wait for the last
  // item's frame to be sent (retry); END_STREAM has been read.
  bool data_submitted_ : 1 = false;
  bool data_retry_ : 1 = false;
  bool end_submitted_ : 1 = false;
  bool detached_ : 1 = false;  // the handler is gone (Reset, refused)
  bool above_high_ : 1 = false;
  bool nghttp2_closed_ : 1 = false;  // nghttp2 closed it; delivery may still be pending
  bool refused_ : 1 = false;         // answered with a non-200 status
};

using HboneStreamPtr = std::unique_ptr<HboneStream>;

class HboneSession final : private StreamHandler, private DeferredTask {
 public:
  enum class Role { kServer, kClient };

  class Callbacks {
   public:
    virtual ~Callbacks() = default;
    // Server role: a CONNECT request; answer with stream.Respond().
    virtual void OnConnectRequest(HboneSession& session, HboneStream& stream) = 0;
    // The session is over (transport closed); every stream was told. The
    // owner destroys the session (it may do so inside this call).
    virtual void OnSessionClosed(HboneSession& session) = 0;
    // A stream ended (both roles): pools track idleness with it.
    virtual void OnStreamCountChanged(HboneSession&) {}
    // The limits of HboneSessionLimits bit (counted by the owner). Each is
    // called before the session acts on it; the session may close after.
    virtual void OnPrefaceTimeout(HboneSession&) {}
    virtual void OnStreamStalled(HboneSession&) {}
    virtual void OnStreamRefused(HboneSession&) {}
  };

  // Takes over `transport` (self-owned; the session becomes its handler).
  HboneSession(Dispatcher& dispatcher, Role role, Stream* transport, std::string peer_identity,
               Callbacks& callbacks);
  ~HboneSession() override;
  HboneSession(const HboneSession&) = delete;
  HboneSession& operator=(const HboneSession&) = delete;

  // Call before Start(); the defaults impose no timeouts.
  void SetLimits(const HboneSessionLimits& limits) { limits_ = limits; }
  // Sends the connection preface and SETTINGS; call once.
  Status Start();

  // Client role: a new CONNECT stream to `authority` ("ip:port").
  Result<HboneStream*> OpenStream(std::string authority, HboneStream::ResponseCallback on_response);
  // Client role: room for another stream (peer's MAX_CONCURRENT_STREAMS, no GOAWAY).
  bool CanOpenStream() const;

  // Sends GOAWAY and closes once the open streams are done.
  void Shutdown();
  // Ends the connection now; every stream's handler gets OnClosed(true).
  void Abort();

  size_t active_streams() const { return streams_.size(); }
  bool closed() const { return closed_; }
  const std::string& peer_identity() const { return peer_identity_; }
  Role role() const { return role_; }

 private:
  friend class HboneStream;
  friend struct HboneCallbacks;

  // StreamHandler (the transport)
  void OnData(std::string_view bytes) override;
  void OnEnd() override;
  void OnClosed(bool reset) override;
  void OnWritable() override;
  // DeferredTask: sends what nghttp2 has queued.
  void RunDeferred() override { Pump(); }

  void RequestPump() { dispatcher_.Schedule(this); }
  // The one timer of a session: the preface deadline first, then (while
  // streams exist) the flow-control stall checks.
  void ArmTimer();
  void OnTimer();
  void CheckStalls();
  void Pump();
  void TearDown(bool transport_gone);
  void StreamClosed(HboneStream* stream, uint32_t error_code);
  // Removes and deletes the stream, then tells its handler.
  void FinishStream(HboneStream* stream, bool reset);

  Dispatcher& dispatcher_;
  Role role_;
  Stream* transport_;
  std::string peer_identity_;
  Callbacks& callbacks_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, HboneStreamPtr> streams_;
  bool closed_ = false;
  bool shutting_down_ = false;
  HboneSessionLimits limits_;
  TimerPtr timer_;  // created in Start() when a limit needs it
  bool preface_received_ = false;
  uint64_t last_sent_ms_ = 0;  // any stream's bytes, for the connection's window
};

using HboneSessionPtr = std::unique_ptr<HboneSession>;

}  // namespace podless::proxy
