// Timer: a libuv timer that carries its callback.
//
//   Timer timer(loop, [this] { OnTimeout(); });
//   timer.Start(5000);            // once, in 5 s
//   timer.Start(1000, 1000);      // every second, first in 1 s
//   timer.Stop();
//
// It replaces the `handle->data = this` + static trampoline pattern: the
// callback is a std::function held by the Timer, so nothing is cast back from
// a void*.
//
// Lifetime (the close-callback rule of libuv, see uv_handle.h): the Timer
// owns a UvHandle<uv_timer_t>; destroying the Timer stops it and closes the
// handle, whose memory is freed in the close callback. A callback is never
// called after its Timer has been destroyed.
//
// Reentrancy: the callback may Start (restart) or Stop its own Timer, and may
// destroy the Timer (or the object owning it). While it runs, the callback is
// held on the stack of the dispatching function, so destroying the Timer does
// not destroy the running std::function; its captures stay valid until it
// returns.
//
// Errors: uv_timer_init always succeeds, and uv_timer_start fails only for a
// closing handle or a null callback, neither of which a live Timer can have.
// A failure is therefore a broken invariant, checked by a release assert
// (STYLE.md: "can't happen" is an assert, not silent recovery) rather than an
// error code every caller would have to carry through dead branches.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "proxy/base/uv_handle.h"

namespace podless::proxy {

class Timer {
 public:
  using Callback = std::function<void()>;

  Timer(uv_loop_t* loop, Callback callback);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Arms the timer: the callback runs after `timeout_ms`, then every
  // `repeat_ms` if that is non-zero. Starting an active timer restarts it.
  void Start(uint64_t timeout_ms, uint64_t repeat_ms = 0);
  // Disarms it; a no-op if it is not active.
  void Stop();
  bool IsActive() const;

  // The repeat interval given to the last Start.
  uint64_t repeat_ms() const;
  // A timer that does not keep the loop alive (uv_unref).
  void Unref();

 private:
  static void OnTimer(uv_timer_t* handle);

  TimerHandle handle_;
  Callback callback_;
  // Set while the callback runs: points at a flag on the dispatcher's stack
  // that the destructor raises, so the dispatcher knows not to touch `this`.
  bool* destroyed_ = nullptr;
};

using TimerPtr = std::unique_ptr<Timer>;

}  // namespace podless::proxy
