// Small helpers shared by the C++ benchmark drivers: smoke mode, timing,
// percentiles, RSS, and the one output format every driver prints
// ("bench <name> <figure>=<value> ... ratio=<x>") so run_all.sh and the smoke
// tests read the same lines.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace podless::bench {

// PODLESS_BENCH_SMOKE=1: tiny sizes, so the suite can run every benchmark in
// a few seconds and check only that it produced sane numbers.
inline bool Smoke() {
  const char* v = std::getenv("PODLESS_BENCH_SMOKE");
  return v != nullptr && std::strcmp(v, "0") != 0 && *v != '\0';
}

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds used by the whole process so far.
inline double ProcessCpu() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// VmRSS of this process in bytes (0 if /proc is unreadable).
inline long long RssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

// The q-quantile (0..1) of `samples` (sorted in place).
inline double Percentile(std::vector<double>& samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  size_t i = static_cast<size_t>(std::lround(q * (samples.size() - 1)));
  return samples[std::min(i, samples.size() - 1)];
}

// A failed sanity check: the benchmark did not run as designed. Exit code 1
// makes the smoke test fail.
[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "bench FAILED: %s\n", what.c_str());
  std::exit(1);
}

inline void Require(bool condition, const std::string& what) {
  if (!condition) Fail(what);
}

// A rate or ratio a smoke run accepts: finite and positive.
inline bool Sane(double value) { return std::isfinite(value) && value > 0; }

}  // namespace podless::bench
