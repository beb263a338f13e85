#include "proxy/load_balancer.h"

#include <string>

namespace podless::proxy {
namespace {

// The index of the `rank`-th (0-based) ready endpoint.
size_t NthReady(size_t count, const std::function<bool(size_t)>& ready, uint64_t rank) {
  for (size_t i = 0; i < count; ++i) {
    if (ready(i) && rank-- == 0) return i;
  }
  return count;  // unreachable while rank < number of ready endpoints
}

}  // namespace

LoadBalancer::LoadBalancer(Random random) : random_(std::move(random)) {
  if (!random_) {
    engine_ = std::make_unique<std::mt19937_64>(std::random_device{}());
    random_ = [engine = engine_.get()](uint64_t bound) {
      return std::uniform_int_distribution<uint64_t>(0, bound - 1)(*engine);
    };
  }
}

Result<size_t> LoadBalancer::Pick(std::span<const LbEndpoint> endpoints) {
  return Pick(
      endpoints.size(), [&](size_t i) { return endpoints[i].ready; },
      [&](size_t i) { return endpoints[i].active_connections; });
}

Result<size_t> LoadBalancer::Pick(size_t count, const std::function<bool(size_t)>& ready,
                                  const std::function<uint64_t(size_t)>& active) {
  uint64_t ready_count = 0;
  for (size_t i = 0; i < count; ++i) ready_count += ready(i) ? 1 : 0;
  if (ready_count == 0) {
    return MakeError(ErrorCode::kUnavailable,
                     count == 0 ? "no endpoints"
                                : "no ready endpoint (" + std::to_string(count) +
                                      (count == 1 ? " endpoint" : " endpoints") + ", none ready)");
  }
  if (ready_count == 1) return NthReady(count, ready, 0);
  // Two distinct ranks: the second is drawn from the remaining n-1 and
  // shifted past the first, which keeps both uniform.
  uint64_t first = random_(ready_count) % ready_count;
  uint64_t second = random_(ready_count - 1) % (ready_count - 1);
  if (second >= first) ++second;
  size_t a = NthReady(count, ready, first);
  size_t b = NthReady(count, ready, second);
  return active(b) < active(a) ? b : a;
}

}  // namespace podless::proxy
