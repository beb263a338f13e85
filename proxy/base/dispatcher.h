// Dispatcher: work deferred to the next loop turn.
//
// Callbacks must not destroy the object that is calling them, and streams
// must not call their handlers from inside the handler's own calls (see
// stream.h). Both needs are met by running the work a little later on the
// same loop: a DeferredTask is queued once however often it is scheduled,
// and destroying it unschedules it, so a dead object is never reached.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "proxy/base/uv_handle.h"

namespace podless::proxy {

class Dispatcher;

// Something that wants RunDeferred() called on the next loop turn.
class DeferredTask {
 public:
  DeferredTask() = default;
  virtual ~DeferredTask();
  DeferredTask(const DeferredTask&) = delete;
  DeferredTask& operator=(const DeferredTask&) = delete;

  virtual void RunDeferred() = 0;

 private:
  friend class Dispatcher;
  Dispatcher* scheduled_on_ = nullptr;
  size_t slot_ = 0;
};

class Dispatcher {
 public:
  explicit Dispatcher(uv_loop_t* loop);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  uv_loop_t* loop() const { return loop_; }

  // Queues `task` for the next loop turn; a no-op if it is queued already.
  void Schedule(DeferredTask* task);
  void Cancel(DeferredTask* task);

  // Takes `object` and destroys it on the next loop turn: for objects that
  // end inside their own callbacks. An object that owns itself (created with
  // `new` and ended by its own last callback) hands itself over as
  // `DeferredDelete(std::unique_ptr<Self>(this))`, which says in the type
  // that ownership moves here.
  template <typename T>
  void DeferredDelete(std::unique_ptr<T> object) {
    if (object == nullptr) return;
    Post([owned = std::shared_ptr<T>(std::move(object))]() mutable { owned.reset(); });
  }
  // One-off work; cannot be cancelled, so capture nothing that may die.
  void Post(std::function<void()> fn);

  // A scratch buffer for uv_read_start allocations: reads are consumed
  // synchronously, so one buffer per loop serves every socket.
  uv_buf_t ReadBuffer();

 private:
  void RunQueue();
  void Arm();

  uv_loop_t* loop_;
  IdleHandle idle_;
  std::vector<DeferredTask*> tasks_;
  std::vector<DeferredTask*> running_;
  std::vector<std::function<void()>> posted_;
  std::unique_ptr<char[]> read_buffer_;
};

}  // namespace podless::proxy
