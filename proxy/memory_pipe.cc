#include "proxy/memory_pipe.h"

#include "proxy/base/byte_queue.h"

namespace podless::proxy {

namespace {

class MemoryPipe;

class PipeEnd final : public Stream, private DeferredTask {
 public:
  PipeEnd(MemoryPipe& pipe, Dispatcher& dispatcher) : pipe_(pipe), dispatcher_(dispatcher) {}

  void Connect(PipeEnd* peer) { peer_ = peer; }

  // Stream
  void SetHandler(StreamHandler* handler) override {
    handler_ = handler;
    dispatcher_.Schedule(this);
  }
  void Write(std::string_view bytes) override {
    if (finished_ || ended_ || bytes.empty() || peer_->finished_) return;
    peer_->inbox_.Append(bytes);
    if (peer_->inbox_.size() > kHighWatermark) above_high_ = true;
    dispatcher_.Schedule(peer_);
  }
  void End() override {
    if (finished_ || ended_) return;
    ended_ = true;
    peer_->inbox_ended_ = true;
    dispatcher_.Schedule(peer_);
  }
  void Reset() override;
  size_t QueuedBytes() const override { return peer_->finished_ ? 0 : peer_->inbox_.size(); }
  void SetReadPaused(bool paused) override {
    paused_ = paused;
    if (!paused) dispatcher_.Schedule(this);
  }

  bool finished() const { return finished_; }

 private:
  friend class MemoryPipe;
  void RunDeferred() override;
  void Finish(bool reset);

  MemoryPipe& pipe_;
  Dispatcher& dispatcher_;
  PipeEnd* peer_ = nullptr;
  StreamHandler* handler_ = nullptr;
  ByteQueue inbox_;           // written by the peer, for my handler
  bool inbox_ended_ = false;  // the peer called End()
  bool end_delivered_ = false;
  bool ended_ = false;  // I called End()
  bool paused_ = false;
  bool above_high_ = false;
  bool reset_by_peer_ = false;
  bool finished_ = false;  // no more handler calls
};

class MemoryPipe {
 public:
  explicit MemoryPipe(Dispatcher& dispatcher) : a_(*this, dispatcher), b_(*this, dispatcher) {
    a_.Connect(&b_);
    b_.Connect(&a_);
  }
  PipeEnd* a() { return &a_; }
  PipeEnd* b() { return &b_; }
  void MaybeDelete(Dispatcher& dispatcher) {
    if (a_.finished() && b_.finished() && !deleting_) {
      deleting_ = true;
      dispatcher.DeferredDelete(std::unique_ptr<MemoryPipe>(this));
    }
  }

 private:
  PipeEnd a_;
  PipeEnd b_;
  bool deleting_ = false;
};

void PipeEnd::Reset() {
  if (finished_) return;
  handler_ = nullptr;
  finished_ = true;
  dispatcher_.Cancel(this);
  if (!peer_->finished_) {
    peer_->reset_by_peer_ = true;
    dispatcher_.Schedule(peer_);
  }
  pipe_.MaybeDelete(dispatcher_);
}

void PipeEnd::Finish(bool reset) {
  finished_ = true;
  StreamHandler* handler = handler_;
  handler_ = nullptr;
  pipe_.MaybeDelete(dispatcher_);
  if (handler != nullptr) handler->OnClosed(reset);
}

void PipeEnd::RunDeferred() {
  if (finished_ || handler_ == nullptr) return;
  if (reset_by_peer_) {
    Finish(true);
    return;
  }
  while (!paused_ && !inbox_.empty() && handler_ != nullptr && !finished_) {
    std::string_view front = inbox_.Front();
    size_t n = front.size();
    handler_->OnData(front);
    if (finished_) return;
    inbox_.Drain(n);
  }
  if (finished_ || handler_ == nullptr) return;
  // The peer's writes drained: it may write again.
  if (peer_->above_high_ && inbox_.size() < kLowWatermark && !peer_->finished_) {
    peer_->above_high_ = false;
    if (peer_->handler_ != nullptr) peer_->handler_->OnWritable();
    if (finished_) return;
  }
  if (!paused_ && inbox_.empty() && inbox_ended_ && !end_delivered_) {
    end_delivered_ = true;
    handler_->OnEnd();
    if (finished_) return;
  }
  // Both directions done on both ends: each handler is told once.
  if (end_delivered_ && ended_ && peer_->end_delivered_ && peer_->ended_) {
    PipeEnd* peer = peer_;
    Finish(false);
    if (!peer->finished_) peer->Finish(false);
    return;
  }
  if (ended_ && end_delivered_) dispatcher_.Schedule(peer_);
}

}  // namespace

std::pair<Stream*, Stream*> NewMemoryPipe(Dispatcher& dispatcher) {
  auto* pipe = new MemoryPipe(dispatcher);
  return {pipe->a(), pipe->b()};
}

}  // namespace podless::proxy
