// Running a libuv loop in a test with a bound, so a broken component fails a
// check instead of hanging the test.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>

namespace podless::testing {

// How long RunUntil waits when not told.
inline constexpr std::chrono::milliseconds kRunUntilTimeout{10'000};

// Runs `loop` (one UV_RUN_ONCE at a time, woken every 5 ms by a timer of its
// own so the deadline is checked) until `done()` holds or `timeout` passed;
// returns `done()`. The timer is closed before returning, also when `done`
// throws (a failed REQUIRE), so nothing of it is left on the loop.
bool RunUntil(uv_loop_t* loop, const std::function<bool()>& done,
              std::chrono::milliseconds timeout = kRunUntilTimeout);
inline bool RunUntil(uv_loop_t* loop, const std::function<bool()>& done, int64_t timeout_ms) {
  return RunUntil(loop, done, std::chrono::milliseconds(timeout_ms));
}

// Runs `loop` for `duration`.
void RunFor(uv_loop_t* loop, std::chrono::milliseconds duration);

}  // namespace podless::testing
