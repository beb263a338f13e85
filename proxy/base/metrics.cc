#include "proxy/base/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

namespace podless::proxy {
namespace {

// Metric names, label counts and registrations come from the program, not
// from input; a mistake there is a bug that must not go unnoticed.
[[noreturn]] void MetricsBug(const std::string& message) {
  std::fprintf(stderr, "podless metrics: %s\n", message.c_str());
  std::abort();
}

bool IsMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

const char* TypeName(MetricType type) { return type == MetricType::kCounter ? "counter" : "gauge"; }

std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void AppendValue(std::string& out, const Counter& counter) {
  out += std::to_string(counter.value());
}
void AppendValue(std::string& out, const Gauge& gauge) { out += std::to_string(gauge.value()); }

// The text format's float: integers without a fraction, NaN and +-Inf by
// name, anything else in the shortest form that reads back exactly.
void AppendDouble(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    out.append(buf, ec == std::errc() ? end : buf);
  }
}

// A label-less gauge computed at render time (process RSS and the like).
class CallbackGaugeFamily final : public MetricFamilyBase {
 public:
  CallbackGaugeFamily(std::string name, std::string help, std::function<double()> compute,
                      MetricType type = MetricType::kGauge)
      : MetricFamilyBase(std::move(name), std::move(help), type, {}),
        compute_(std::move(compute)) {}

 private:
  void RenderSeries(std::string& out) const override {
    out += name();
    out += ' ';
    AppendDouble(out, compute_());
    out += '\n';
  }
  std::function<double()> compute_;
};

}  // namespace

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// --- MetricFamilyBase -----------------------------------------------------

MetricFamilyBase::MetricFamilyBase(std::string name, std::string help, MetricType type,
                                   std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  if (!IsMetricName(name_)) MetricsBug("invalid metric name \"" + name_ + "\"");
  std::set<std::string_view> seen;
  for (const std::string& label : label_names_) {
    if (!IsLabelName(label)) {
      MetricsBug("invalid label name \"" + label + "\" in metric " + name_);
    }
    if (!seen.insert(label).second) {
      MetricsBug("label \"" + label + "\" given twice in metric " + name_);
    }
  }
}

void MetricFamilyBase::Render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  out += EscapeHelp(help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += TypeName(type_);
  out += '\n';
  RenderSeries(out);
}

void MetricFamilyBase::AppendSeriesName(std::string& out,
                                        std::span<const std::string> values) const {
  out += name_;
  if (label_names_.empty()) return;
  out += '{';
  for (size_t i = 0; i < label_names_.size(); ++i) {
    if (i > 0) out += ',';
    out += label_names_[i];
    out += "=\"";
    out += EscapeLabelValue(values[i]);
    out += '"';
  }
  out += '}';
}

// --- MetricFamily ---------------------------------------------------------

template <typename Metric>
MetricFamily<Metric>::MetricFamily(std::string name, std::string help, MetricType type,
                                   std::vector<std::string> label_names)
    : MetricFamilyBase(std::move(name), std::move(help), type, std::move(label_names)) {
  // A label-less metric has exactly one series; it exists (at 0) from the
  // start, as in the Prometheus client libraries, so scrapes see it.
  if (this->label_names().empty()) series_.emplace(std::vector<std::string>{}, new Metric);
}

template <typename Metric>
Metric& MetricFamily<Metric>::WithLabels(std::initializer_list<std::string_view> values) {
  return Lookup(std::span<const std::string_view>(values.begin(), values.size()));
}

template <typename Metric>
Metric& MetricFamily<Metric>::WithLabels(std::span<const std::string_view> values) {
  return Lookup(values);
}

template <typename Metric>
Metric& MetricFamily<Metric>::WithLabels(std::span<const std::string> values) {
  std::vector<std::string_view> views(values.begin(), values.end());
  return Lookup(views);
}

template <typename Metric>
Metric& MetricFamily<Metric>::Lookup(std::span<const std::string_view> values) {
  if (values.size() != label_names().size()) {
    MetricsBug("metric " + name() + " takes " + std::to_string(label_names().size()) +
               " label values, got " + std::to_string(values.size()));
  }
  std::lock_guard lock(mu_);
  auto it = series_.find(values);
  if (it == series_.end()) {
    it = series_
             .emplace(std::vector<std::string>(values.begin(), values.end()),
                      std::make_unique<Metric>())
             .first;
  }
  return *it->second;
}

template <typename Metric>
void MetricFamily<Metric>::SetZeroSeries(ZeroSeries zeros) {
  std::lock_guard lock(mu_);
  zeros_ = std::move(zeros);
}

template <typename Metric>
void MetricFamily<Metric>::RenderSeries(std::string& out) const {
  std::vector<std::vector<std::string>> zeros;
  if (zeros_) {
    zeros = zeros_();
    std::erase_if(zeros, [&](const auto& v) { return v.size() != label_names().size(); });
    std::sort(zeros.begin(), zeros.end(), LabelsLess{});
    zeros.erase(std::unique(zeros.begin(), zeros.end()), zeros.end());
  }
  std::lock_guard lock(mu_);
  // Both lists are sorted: merge them, a stored series winning over its zero.
  auto zero = zeros.begin();
  auto render_zeros_before = [&](const std::vector<std::string>* stop) {
    for (; zero != zeros.end() && (stop == nullptr || LabelsLess{}(*zero, *stop)); ++zero) {
      AppendSeriesName(out, *zero);
      out += " 0\n";
    }
    if (stop != nullptr && zero != zeros.end() && *zero == *stop) ++zero;
  };
  for (const auto& [values, metric] : series_) {
    render_zeros_before(&values);
    AppendSeriesName(out, values);
    out += ' ';
    AppendValue(out, *metric);
    out += '\n';
  }
  render_zeros_before(nullptr);
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;

// --- Registry -------------------------------------------------------------

Registry::Registry() = default;
Registry::~Registry() = default;

MetricFamilyBase* Registry::Find(std::string_view name) const {
  for (const auto& family : families_) {
    if (family->name() == name) return family.get();
  }
  return nullptr;
}

CounterFamily& Registry::AddCounter(std::string name, std::string help,
                                    std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  if (MetricFamilyBase* existing = Find(name)) {
    auto* family = dynamic_cast<CounterFamily*>(existing);
    if (family == nullptr || family->label_names() != label_names) {
      MetricsBug("metric " + name + " registered twice with different type or labels");
    }
    return *family;
  }
  auto family = std::make_unique<CounterFamily>(std::move(name), std::move(help),
                                                MetricType::kCounter, std::move(label_names));
  CounterFamily& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

GaugeFamily& Registry::AddGauge(std::string name, std::string help,
                                std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  if (MetricFamilyBase* existing = Find(name)) {
    auto* family = dynamic_cast<GaugeFamily*>(existing);
    if (family == nullptr || family->label_names() != label_names) {
      MetricsBug("metric " + name + " registered twice with different type or labels");
    }
    return *family;
  }
  auto family = std::make_unique<GaugeFamily>(std::move(name), std::move(help), MetricType::kGauge,
                                              std::move(label_names));
  GaugeFamily& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

void Registry::AddCallbackGauge(std::string name, std::string help,
                                std::function<double()> compute) {
  std::lock_guard lock(mu_);
  if (Find(name) != nullptr) MetricsBug("metric " + name + " registered twice");
  families_.push_back(
      std::make_unique<CallbackGaugeFamily>(std::move(name), std::move(help), std::move(compute)));
}

void Registry::AddCallbackCounter(std::string name, std::string help,
                                  std::function<double()> compute) {
  std::lock_guard lock(mu_);
  if (Find(name) != nullptr) MetricsBug("metric " + name + " registered twice");
  families_.push_back(std::make_unique<CallbackGaugeFamily>(
      std::move(name), std::move(help), std::move(compute), MetricType::kCounter));
}

std::string Registry::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& family : families_) family->Render(out);
  return out;
}

double ProcessResidentBytes() {
  // statm: size resident shared text lib data dt, in pages.
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  int fields = std::fscanf(file, "%lu %lu", &size, &resident);
  std::fclose(file);
  if (fields != 2) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

}  // namespace podless::proxy
