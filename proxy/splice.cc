#include "proxy/splice.h"

#include <string>
#include <utility>

#include "proxy/base/timer.h"

namespace podless::proxy {

namespace {

// A Splice owns itself: nothing holds it, and it ends in its streams' last
// callbacks (stream.h: OnClosed is the last call, and a Reset stream calls
// nothing). It is deleted there, at once: no callback of either stream can
// follow, and its idle timer is safe to destroy inside its own callback.
class Splice {
 public:
  Splice(Stream* a, Stream* b, SpliceOptions options)
      : a_(this, a), b_(this, b), options_(std::move(options)) {
    a_.other = &b_;
    b_.other = &a_;
  }

  void Start() {
    a_.stream->SetHandler(&a_);
    b_.stream->SetHandler(&b_);
    if (options_.dispatcher != nullptr && options_.idle_timeout_ms > 0) {
      uv_loop_t* loop = options_.dispatcher->loop();
      idle_timer_ = std::make_unique<Timer>(loop, [this] { OnIdleTimer(); });
      last_active_ms_ = uv_now(loop);
      ArmIdleTimer(options_.idle_timeout_ms);
    }
  }

 private:
  struct Side final : StreamHandler {
    Side(Splice* owner, Stream* stream) : owner(owner), stream(stream) {}

    void OnData(std::string_view bytes) override {
      owner->Active();
      if (other->stream == nullptr) return;
      if (this == &owner->a_ && owner->options_.request_gate) {
        owner->GateData(bytes);
        return;
      }
      Relay(bytes);
    }
    void Relay(std::string_view bytes) {
      other->stream->Write(bytes);
      if (other->stream->QueuedBytes() > kHighWatermark && !paused) {
        paused = true;
        stream->SetReadPaused(true);
      }
    }
    void OnEnd() override {
      if (owner->refused_) {
        // The client asked no more; the backend's end brings the answer.
        if (this == &owner->b_ && other->stream != nullptr) owner->AnswerRefused();
        return;
      }
      if (other->stream != nullptr) other->stream->End();
    }
    void OnWritable() override {
      owner->Active();
      // My queue drained: the other side may read again.
      if (other->stream != nullptr && other->paused) {
        other->paused = false;
        other->stream->SetReadPaused(false);
      }
    }
    void OnClosed(bool reset) override {
      stream = nullptr;
      if (reset && other->stream != nullptr) {
        other->stream->Reset();
        other->stream = nullptr;
      }
      if (other->stream == nullptr) delete owner;
    }

    Splice* owner;
    Stream* stream;
    Side* other = nullptr;
    bool paused = false;
  };

  void GateData(std::string_view bytes) {
    if (refused_) return;
    std::string forward;
    auto verdict = options_.request_gate->Feed(bytes, &forward);
    if (!forward.empty()) a_.Relay(forward);
    if (verdict == HttpRequestGate::Verdict::kPass) return;
    refused_ = true;
    a_.stream->SetReadPaused(true);
    if (options_.request_gate->forwarded_any()) {
      b_.stream->End();  // answers for what it got, then ends: AnswerRefused
      return;
    }
    b_.stream->Reset();  // the last word to it: no callback follows
    b_.stream = nullptr;
    AnswerRefused();
  }

  void AnswerRefused() {
    a_.stream->Write(options_.request_gate->response());
    a_.stream->End();
  }

  // A byte moved: the idle clock starts again. The timer is not touched
  // here (a field write per read); it checks the clock when it fires.
  void Active() {
    if (options_.idle_timeout_ms > 0 && options_.dispatcher != nullptr) {
      last_active_ms_ = uv_now(options_.dispatcher->loop());
    }
  }

  void ArmIdleTimer(uint64_t after_ms) { idle_timer_->Start(after_ms); }

  void OnIdleTimer() {
    const uint64_t now = uv_now(options_.dispatcher->loop());
    const uint64_t idle = now - last_active_ms_;
    if (idle < options_.idle_timeout_ms) {
      ArmIdleTimer(options_.idle_timeout_ms - idle);
      return;
    }
    if (options_.idle_timeouts != nullptr) options_.idle_timeouts->Inc();
    // Reset() is the last word to a stream: no callback follows, so the
    // splice ends here (its timer closes with it).
    if (a_.stream != nullptr) a_.stream->Reset();
    if (b_.stream != nullptr) b_.stream->Reset();
    delete this;
  }

  Side a_;
  Side b_;
  SpliceOptions options_;
  bool refused_ = false;  // the request gate refused a request
  TimerPtr idle_timer_;   // only with an idle timeout
  uint64_t last_active_ms_ = 0;
};

}  // namespace

void StartSplice(Stream* a, Stream* b, SpliceOptions options) {
  (new Splice(a, b, std::move(options)))->Start();
}

}  // namespace podless::proxy
