// Timer: a libuv timer that carries its callback. It fires once or
// repeatedly, Stop disarms it, and its callback may restart it or destroy it
// (or its owner) without a late call into a dead object.
#include <doctest/doctest.h>

#include <uv.h>

#include <memory>

#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"

namespace podless::proxy {
namespace {

TEST_CASE("Timer: fires its callback once after the timeout") {
  UvLoop loop;
  int fired = 0;
  Timer timer(loop.get(), [&] { ++fired; });
  CHECK_FALSE(timer.IsActive());
  timer.Start(1);
  CHECK(timer.IsActive());
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(fired == 1);
  CHECK_FALSE(timer.IsActive());
}

TEST_CASE("Timer: Stop prevents the callback") {
  UvLoop loop;
  int fired = 0;
  Timer timer(loop.get(), [&] { ++fired; });
  timer.Start(1);
  timer.Stop();
  CHECK_FALSE(timer.IsActive());
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(fired == 0);
}

TEST_CASE("Timer: repeats until stopped from its own callback") {
  UvLoop loop;
  int fired = 0;
  std::unique_ptr<Timer> timer;
  timer = std::make_unique<Timer>(loop.get(), [&] {
    if (++fired == 3) timer->Stop();
  });
  timer->Start(1, 1);
  CHECK(timer->repeat_ms() == 1);
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(fired == 3);
  CHECK_FALSE(timer->IsActive());
}

TEST_CASE("Timer: restarting from inside its callback fires again") {
  UvLoop loop;
  int fired = 0;
  std::unique_ptr<Timer> timer;
  timer = std::make_unique<Timer>(loop.get(), [&] {
    if (++fired < 3) timer->Start(1);
  });
  timer->Start(1);
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(fired == 3);
}

// The owner dies inside the timer's callback, as an object whose timeout
// ends it does; the callback's captures must survive until it returns.
TEST_CASE("Timer: destroying the owner inside its own callback is safe") {
  UvLoop loop;
  struct Owner {
    explicit Owner(uv_loop_t* loop, std::unique_ptr<Owner>& self, int& fired)
        : timer(loop, [this, &self, &fired, guard = std::make_shared<int>(7)] {
            ++fired;
            self.reset();        // Destroys this Owner and its Timer.
            CHECK(*guard == 7);  // The running callback's captures are alive.
          }) {}
    Timer timer;
  };
  int fired = 0;
  std::unique_ptr<Owner> owner;
  owner = std::make_unique<Owner>(loop.get(), owner, fired);
  owner->timer.Start(1, 1);  // Repeating: a live timer would fire again.
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(fired == 1);
  CHECK(owner == nullptr);
}

TEST_CASE("Timer: destroying an armed timer before the loop runs never calls back") {
  UvLoop loop;
  int fired = 0;
  {
    Timer timer(loop.get(), [&] { ++fired; });
    timer.Start(0);
  }
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(fired == 0);
}

TEST_CASE("Timer: one timer's callback may destroy another armed for the same turn") {
  UvLoop loop;
  int second_fired = 0;
  auto second = std::make_unique<Timer>(loop.get(), [&] { ++second_fired; });
  Timer first(loop.get(), [&] { second.reset(); });
  first.Start(0);
  second->Start(0);
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(second_fired == 0);
}

TEST_CASE("Timer: an unreferenced timer does not keep the loop running") {
  UvLoop loop;
  int fired = 0;
  Timer timer(loop.get(), [&] { ++fired; });
  timer.Unref();
  timer.Start(60'000);
  uv_run(loop.get(), UV_RUN_DEFAULT);  // Returns at once: nothing holds the loop.
  CHECK(fired == 0);
  CHECK(timer.IsActive());
}

}  // namespace
}  // namespace podless::proxy
