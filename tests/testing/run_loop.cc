#include "tests/testing/run_loop.h"

namespace podless::testing {
namespace {

// Owns the wake-up timer; closing it frees it from its close callback, so the
// memory outlives the loop's last look at the handle.
class Tick {
 public:
  explicit Tick(uv_loop_t* loop) : timer_(new uv_timer_t) {
    uv_timer_init(loop, timer_);
    uv_timer_start(
        timer_, [](uv_timer_t*) {}, 5, 5);
  }
  ~Tick() {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
    uv_run(timer_->loop, UV_RUN_NOWAIT);  // runs the close callback
  }
  Tick(const Tick&) = delete;
  Tick& operator=(const Tick&) = delete;

 private:
  uv_timer_t* timer_;
};

}  // namespace

bool RunUntil(uv_loop_t* loop, const std::function<bool()>& done,
              std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Tick tick(loop);
  while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(loop, UV_RUN_ONCE);
  return done();
}

void RunFor(uv_loop_t* loop, std::chrono::milliseconds duration) {
  RunUntil(
      loop, [] { return false; }, duration);
}

}  // namespace podless::testing
