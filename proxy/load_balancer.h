// Endpoint selection for Service VIP connections: power of two choices on
// open connections (Mitzenmacher, "The Power of Two Choices in Randomized
// Load Balancing"). Two distinct ready endpoints are drawn at random and the
// one with fewer active connections wins; ties go to the first draw. This
// avoids both the herd effect of "always least loaded" (every new connection
// piling onto the same endpoint before counts update) and the blindness of
// round robin to slow endpoints.
//
// Pure: the caller owns the endpoints and their counters; randomness is
// injected so tests are deterministic. Not thread-safe (one per loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>

#include "workloads/result.h"

namespace podless::proxy {

struct LbEndpoint {
  bool ready = true;
  uint64_t active_connections = 0;
};

class LoadBalancer {
 public:
  // Returns a uniformly distributed value in [0, bound); bound >= 1.
  using Random = std::function<uint64_t(uint64_t bound)>;

  // Without `random`, a std::mt19937_64 seeded from std::random_device.
  explicit LoadBalancer(Random random = nullptr);

  // The index of the chosen endpoint; kUnavailable when none is ready.
  Result<size_t> Pick(std::span<const LbEndpoint> endpoints);

  // The same over endpoints the caller stores in its own form: `count` of
  // them, `ready(i)` and `active(i)` describe endpoint i.
  Result<size_t> Pick(size_t count, const std::function<bool(size_t)>& ready,
                      const std::function<uint64_t(size_t)>& active);

 private:
  Random random_;
  std::unique_ptr<std::mt19937_64> engine_;  // only when no Random was injected
};

using LoadBalancerPtr = std::unique_ptr<LoadBalancer>;

}  // namespace podless::proxy
