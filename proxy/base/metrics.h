// A small Prometheus metrics registry (text exposition format 0.0.4).
//
// Thread-safe and cheap on the hot path: a series is looked up once by its
// label values (`family.WithLabels({...})`, under the family's mutex) and the
// returned reference is kept by the caller; counting is then one relaxed
// atomic add. Series live as long as the registry, so the references never
// dangle.
//
//   Registry registry;
//   CounterFamily& opened = registry.AddCounter(
//       "istio_tcp_connections_opened_total", "Connections opened.",
//       {"reporter", "source_workload", "destination_workload"});
//   Counter& c = opened.WithLabels({"destination", "web-0", "db-0"});  // once per connection
//   c.Inc();                                                            // hot path
//   registry.AddCallbackGauge("process_resident_memory_bytes", "RSS.", ProcessResidentBytes);
//   std::string text = registry.Render();  // for /metrics
//
// Names and label names are fixed by the program, so an invalid one, a
// clash between registrations, or a wrong number of label values is a
// programming error: it aborts with a message naming it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace podless::proxy {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void Sub(int64_t n = 1) { value_.fetch_sub(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

enum class MetricType { kCounter, kGauge };

// What every family shares: the name, help and type lines and rendering.
class MetricFamilyBase {
 public:
  virtual ~MetricFamilyBase() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends "# HELP", "# TYPE" and one line per series to `out`.
  void Render(std::string& out) const;

 protected:
  MetricFamilyBase(std::string name, std::string help, MetricType type,
                   std::vector<std::string> label_names);
  // Appends the series lines (without HELP/TYPE).
  virtual void RenderSeries(std::string& out) const = 0;
  // "name{a="x",b="y"}" for the given label values, escaped.
  void AppendSeriesName(std::string& out, std::span<const std::string> values) const;

 private:
  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

template <typename Metric>
class MetricFamily final : public MetricFamilyBase {
 public:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names);

  // The series with these label values, in the order of label_names();
  // created (at zero) on first use. The reference is valid as long as the
  // registry.
  Metric& WithLabels(std::initializer_list<std::string_view> values);
  Metric& WithLabels(std::span<const std::string_view> values);
  Metric& WithLabels(std::span<const std::string> values);

  // Label-value lists whose series read 0 until first used, asked for at
  // each Render and never stored: a zero sample per object (say, per
  // workload) costs no memory per object, and one that goes away takes its
  // zero with it. `zeros` runs on the thread that renders.
  using ZeroSeries = std::function<std::vector<std::vector<std::string>>()>;
  void SetZeroSeries(ZeroSeries zeros);

 private:
  // Orders label-value lists and allows lookup by string_views without
  // building strings.
  struct LabelsLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::lexicographical_compare(
          a.begin(), a.end(), b.begin(), b.end(),
          [](std::string_view x, std::string_view y) { return x < y; });
    }
  };
  Metric& Lookup(std::span<const std::string_view> values);
  void RenderSeries(std::string& out) const override;

  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>, LabelsLess> series_;
  ZeroSeries zeros_;
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registering the same name again with the same type and label names
  // returns the existing family (so two components may share one); anything
  // else under an existing name aborts.
  CounterFamily& AddCounter(std::string name, std::string help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(std::string name, std::string help,
                        std::vector<std::string> label_names = {});
  // A label-less gauge whose value `compute` returns at render time. It runs
  // on the rendering thread under the registry's lock, so it must be
  // thread-safe, quick, and must not call back into the registry.
  void AddCallbackGauge(std::string name, std::string help, std::function<double()> compute);
  // The same for a counter: `compute` must never go down.
  void AddCallbackCounter(std::string name, std::string help, std::function<double()> compute);

  // The whole registry in Prometheus text format 0.0.4, families in
  // registration order, series sorted by label values.
  std::string Render() const;

 private:
  MetricFamilyBase* Find(std::string_view name) const;

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<MetricFamilyBase>> families_;
};

using RegistryPtr = std::unique_ptr<Registry>;

// The content type to serve Render() with.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Resident set size of this process in bytes (/proc/self/statm), 0 if unknown.
double ProcessResidentBytes();

// Label value escaping of the text format: backslash, double quote, newline.
std::string EscapeLabelValue(std::string_view value);

}  // namespace podless::proxy
