// RAII owners for libuv handles.
//
// libuv's rule (docs/src/handle.rst): a handle's memory may be released only
// in the close callback of uv_close(). UvHandle<T> owns a heap-allocated
// handle; destroying the owner calls uv_close() and the memory is freed in the
// close callback, possibly on a later loop turn. `handle->data` is the
// caller's to point at its own object; the owner clears it when closing so a
// late callback can never reach a dead object. A timer needs no `data`:
// proxy/base/timer.h's Timer owns one of these and carries its callback.
#pragma once

#include <uv.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "proxy/base/log.h"

namespace podless::proxy {

template <typename T>
class UvHandle {
 public:
  UvHandle() : handle_(new T{}) {}
  ~UvHandle() { Close(); }

  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;
  UvHandle(UvHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  UvHandle& operator=(UvHandle&& other) noexcept {
    if (this != &other) {
      Close();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }

  T* get() const { return handle_; }
  T* operator->() const { return handle_; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(handle_); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(handle_); }

  // Closes the handle (idempotent). A handle that was never initialised with
  // uv_*_init (type still UV_UNKNOWN_HANDLE) is freed at once.
  void Close() {
    if (handle_ == nullptr) return;
    T* h = std::exchange(handle_, nullptr);
    auto* base = reinterpret_cast<uv_handle_t*>(h);
    base->data = nullptr;
    if (base->type == UV_UNKNOWN_HANDLE || base->loop == nullptr) {
      delete h;
      return;
    }
    if (!uv_is_closing(base)) {
      uv_close(base, [](uv_handle_t* closed) { delete reinterpret_cast<T*>(closed); });
    }
  }

 private:
  T* handle_;
};

using TcpHandle = UvHandle<uv_tcp_t>;
using PipeHandle = UvHandle<uv_pipe_t>;
using TimerHandle = UvHandle<uv_timer_t>;
using AsyncHandle = UvHandle<uv_async_t>;
using SignalHandle = UvHandle<uv_signal_t>;
using ProcessHandle = UvHandle<uv_process_t>;
using IdleHandle = UvHandle<uv_idle_t>;

// Owns a uv_loop_t: runs it until every handle's close callback has fired,
// then closes it.
class UvLoop {
 public:
  UvLoop() {
    // Fails only without a descriptor or memory for the loop's epoll and
    // wakeup: nothing can run without a loop, so that is fatal.
    if (int rc = uv_loop_init(&loop_); rc != 0) {
      Log(LogLevel::kError, "uv", std::string("cannot create an event loop: ") + uv_strerror(rc));
      std::abort();
    }
  }
  ~UvLoop() {
    // Let pending close callbacks release their memory.
    uv_run(&loop_, UV_RUN_DEFAULT);
    // EBUSY only if a handle was never closed; its memory is then leaked
    // rather than freed under libuv's feet.
    (void)uv_loop_close(&loop_);
  }
  UvLoop(const UvLoop&) = delete;
  UvLoop& operator=(const UvLoop&) = delete;

  uv_loop_t* get() { return &loop_; }

 private:
  uv_loop_t loop_;
};

}  // namespace podless::proxy
