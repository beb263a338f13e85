#include "proxy/base/timer.h"

#include <cstdlib>
#include <string>
#include <utility>

#include "proxy/base/log.h"

namespace podless::proxy {

namespace {

// A libuv call that cannot fail for a live Timer did: the invariant is broken.
void CheckUv(int rc, const char* call) {
  if (rc == 0) return;
  Log(LogLevel::kError, "timer", std::string(call) + " failed: " + uv_strerror(rc));
  std::abort();
}

}  // namespace

Timer::Timer(uv_loop_t* loop, Callback callback) : callback_(std::move(callback)) {
  CheckUv(uv_timer_init(loop, handle_.get()), "uv_timer_init");
  handle_->data = this;
}

Timer::~Timer() {
  if (destroyed_ != nullptr) *destroyed_ = true;
  // uv_timer_stop always returns 0. Closing also stops the timer; stopping
  // first only makes the order explicit.
  (void)uv_timer_stop(handle_.get());
  // handle_'s destructor clears `data` and closes the handle.
}

void Timer::Start(uint64_t timeout_ms, uint64_t repeat_ms) {
  CheckUv(uv_timer_start(handle_.get(), &Timer::OnTimer, timeout_ms, repeat_ms), "uv_timer_start");
}

void Timer::Stop() {
  (void)uv_timer_stop(handle_.get());  // Always returns 0.
}

bool Timer::IsActive() const { return uv_is_active(handle_.handle()) != 0; }

uint64_t Timer::repeat_ms() const { return uv_timer_get_repeat(handle_.get()); }

void Timer::Unref() { uv_unref(handle_.handle()); }

void Timer::OnTimer(uv_timer_t* handle) {
  auto* self = static_cast<Timer*>(handle->data);
  if (self == nullptr || !self->callback_) return;
  // The callback is moved onto this stack while it runs, so the Timer may be
  // destroyed inside it without destroying the running std::function.
  bool destroyed = false;
  self->destroyed_ = &destroyed;
  Callback callback = std::move(self->callback_);
  self->callback_ = nullptr;
  callback();
  if (destroyed) return;
  self->destroyed_ = nullptr;
  self->callback_ = std::move(callback);
}

}  // namespace podless::proxy
