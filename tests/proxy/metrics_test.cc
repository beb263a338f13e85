#include "proxy/base/metrics.h"

#include <doctest.h>

#include <string>
#include <thread>
#include <vector>

namespace podless::proxy {
namespace {

TEST_CASE("Registry: renders counters with HELP, TYPE and labels in text format 0.0.4") {
  Registry registry;
  CounterFamily& opened = registry.AddCounter(
      "istio_tcp_connections_opened_total", "Connections opened.", {"reporter", "source_workload"});
  opened.WithLabels({"destination", "web-0"}).Inc();
  opened.WithLabels({"destination", "web-0"}).Inc(2);
  opened.WithLabels({"source", "db-0"}).Inc();
  CHECK(registry.Render() ==
        "# HELP istio_tcp_connections_opened_total Connections opened.\n"
        "# TYPE istio_tcp_connections_opened_total counter\n"
        "istio_tcp_connections_opened_total{reporter=\"destination\",source_workload=\"web-0\"} 3\n"
        "istio_tcp_connections_opened_total{reporter=\"source\",source_workload=\"db-0\"} 1\n");
}

TEST_CASE("Registry: WithLabels returns the same series for the same values") {
  Registry registry;
  GaugeFamily& active = registry.AddGauge("podless_hbone_streams_active", "Streams.", {"workload"});
  Gauge& a = active.WithLabels({"web-0"});
  std::vector<std::string> values{"web-0"};
  Gauge& b = active.WithLabels(std::span<const std::string>(values));
  CHECK(&a == &b);
  a.Add(5);
  b.Sub(2);
  CHECK(a.value() == 3);
  a.Set(-7);
  CHECK(registry.Render().find("podless_hbone_streams_active{workload=\"web-0\"} -7\n") !=
        std::string::npos);
}

TEST_CASE("Registry: a label-less metric renders 0 before first use") {
  Registry registry;
  CounterFamily& denied = registry.AddCounter("podless_authz_denied_total", "Denied connections.");
  registry.AddGauge("podless_workloads", "Workloads.", {"namespace"});
  CHECK(registry.Render() ==
        "# HELP podless_authz_denied_total Denied connections.\n"
        "# TYPE podless_authz_denied_total counter\n"
        "podless_authz_denied_total 0\n"
        "# HELP podless_workloads Workloads.\n"
        "# TYPE podless_workloads gauge\n");
  denied.WithLabels({}).Inc();
  CHECK(registry.Render().find("podless_authz_denied_total 1\n") != std::string::npos);
}

TEST_CASE("Registry: zero series are asked for at render, merged in order, never stored") {
  Registry registry;
  CounterFamily& denied = registry.AddCounter("denied_total", "Denied.", {"workload", "ns"});
  denied.WithLabels({"b", "x"}).Inc(3);
  std::vector<std::vector<std::string>> workloads = {
      {"c", "x"}, {"a", "x"}, {"b", "x"}, {"a", "x"}, {"wrong-arity"}};
  int asked = 0;
  denied.SetZeroSeries([&] {
    ++asked;
    return workloads;
  });
  const std::string expected_lines =
      "denied_total{workload=\"a\",ns=\"x\"} 0\n"
      "denied_total{workload=\"b\",ns=\"x\"} 3\n"
      "denied_total{workload=\"c\",ns=\"x\"} 0\n";
  CHECK(registry.Render().find(expected_lines) != std::string::npos);
  CHECK(asked == 1);
  // A workload that goes away takes its zero with it; a counted one stays.
  workloads = {{"a", "x"}};
  const std::string text = registry.Render();
  CHECK(text.find("workload=\"c\"") == std::string::npos);
  CHECK(text.find("denied_total{workload=\"b\",ns=\"x\"} 3\n") != std::string::npos);
  CHECK(text.find("denied_total{workload=\"a\",ns=\"x\"} 0\n") != std::string::npos);
  // Nothing was stored for the zeros: a new WithLabels of "a" starts at 0.
  CHECK(denied.WithLabels({"a", "x"}).value() == 0);
}

TEST_CASE("Registry: escapes label values and help text") {
  Registry registry;
  CounterFamily& family = registry.AddCounter("x_total", "Line one\nback\\slash", {"v"});
  family.WithLabels({"a\"b\\c\nd"}).Inc();
  std::string text = registry.Render();
  CHECK(text.find("# HELP x_total Line one\\nback\\\\slash\n") != std::string::npos);
  CHECK(text.find("x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n") != std::string::npos);
  CHECK(EscapeLabelValue("plain") == "plain");
}

TEST_CASE("Registry: callback gauges are computed at render time") {
  Registry registry;
  double value = 1.5;
  registry.AddCallbackGauge("podless_test_value", "A value.", [&value] { return value; });
  CHECK(registry.Render().find("podless_test_value 1.5\n") != std::string::npos);
  value = 42;
  CHECK(registry.Render().find("podless_test_value 42\n") != std::string::npos);
  value = 1.0 / 0.0;
  CHECK(registry.Render().find("podless_test_value +Inf\n") != std::string::npos);
  value = 0.0 / 0.0;
  CHECK(registry.Render().find("podless_test_value NaN\n") != std::string::npos);
}

TEST_CASE("Registry: process RSS can be exported as a callback gauge") {
  Registry registry;
  registry.AddCallbackGauge("process_resident_memory_bytes", "RSS.", ProcessResidentBytes);
  CHECK(ProcessResidentBytes() > 1024 * 1024);  // this test binary holds more than 1 MiB
  CHECK(registry.Render().find("# TYPE process_resident_memory_bytes gauge\n") !=
        std::string::npos);
}

TEST_CASE("Registry: registering the same family twice returns the existing one") {
  Registry registry;
  CounterFamily& first = registry.AddCounter("a_total", "A.", {"x"});
  CounterFamily& second = registry.AddCounter("a_total", "A again.", {"x"});
  CHECK(&first == &second);
}

TEST_CASE("Registry: counting from many threads loses no increment") {
  Registry registry;
  CounterFamily& family = registry.AddCounter("bytes_total", "Bytes.", {"workload"});
  constexpr int kThreads = 4;
  constexpr int kIncrements = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&family, t] {
      // Each thread resolves its series itself (racing on creation), then counts.
      Counter& shared = family.WithLabels({"shared"});
      Counter& own = family.WithLabels({"t" + std::to_string(t)});
      for (int i = 0; i < kIncrements; ++i) {
        shared.Inc();
        own.Inc();
      }
    });
  }
  // Render concurrently with the counting.
  for (int i = 0; i < 20; ++i) CHECK(!registry.Render().empty());
  for (auto& thread : threads) thread.join();
  CHECK(family.WithLabels({"shared"}).value() == uint64_t{kThreads} * kIncrements);
  CHECK(family.WithLabels({"t3"}).value() == uint64_t{kIncrements});
}

}  // namespace
}  // namespace podless::proxy
