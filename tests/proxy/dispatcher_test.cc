// Dispatcher::DeferredDelete: it takes ownership, and the object dies on the
// next loop turn, never inside the call that handed it over.
#include <doctest/doctest.h>

#include <uv.h>

#include <memory>

#include "proxy/base/dispatcher.h"
#include "proxy/base/uv_handle.h"

namespace podless::proxy {
namespace {

struct Tracked {
  explicit Tracked(int& destroyed) : destroyed(destroyed) {}
  ~Tracked() { ++destroyed; }
  int& destroyed;
};

TEST_CASE("Dispatcher: DeferredDelete destroys its object on the next loop turn") {
  UvLoop loop;
  Dispatcher dispatcher(loop.get());
  int destroyed = 0;
  auto object = std::make_unique<Tracked>(destroyed);
  dispatcher.DeferredDelete(std::move(object));
  CHECK(object == nullptr);  // Ownership moved to the dispatcher.
  CHECK(destroyed == 0);
  uv_run(loop.get(), UV_RUN_NOWAIT);
  CHECK(destroyed == 1);
}

TEST_CASE("Dispatcher: an object still queued for deletion dies with the dispatcher") {
  UvLoop loop;
  int destroyed = 0;
  {
    Dispatcher dispatcher(loop.get());
    dispatcher.DeferredDelete(std::make_unique<Tracked>(destroyed));
    dispatcher.DeferredDelete(std::unique_ptr<Tracked>());  // A null owner is ignored.
  }
  CHECK(destroyed == 1);
}

}  // namespace
}  // namespace podless::proxy
