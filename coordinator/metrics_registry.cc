#include "coordinator/metrics_registry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera {
namespace {

bool ValidName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

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

// {a="x",b="y"} (with `extra` appended, for a histogram's le), or "" without labels.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "" : ",", names[i], "=\"",
                    MetricsRegistry::EscapeLabelValue(values[i]), "\"");
  }
  if (!extra.empty()) absl::StrAppend(&out, out.empty() ? "" : ",", extra);
  return out.empty() ? out : absl::StrCat("{", out, "}");
}

void Header(std::string* out, const std::string& name, const std::string& help, const char* type) {
  absl::StrAppend(out, "# HELP ", name, " ", EscapeHelp(help), "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

std::string MetricsRegistry::EscapeLabelValue(std::string_view value) {
  std::string out;
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

std::string MetricsRegistry::FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // The shortest form that reads back as the same double (0.1, not 0.10000000000000001).
  char buffer[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

CounterFamily::CounterFamily(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

void CounterFamily::Add(const std::vector<std::string>& label_values, double amount) {
  TESSERA_CHECK_MSG(label_values.size() == label_names_.size(), name_.c_str());
  absl::MutexLock lock(&mu_);
  values_[label_values] += amount;
}

double CounterFamily::Value(const std::vector<std::string>& label_values) const {
  absl::MutexLock lock(&mu_);
  auto it = values_.find(label_values);
  return it == values_.end() ? 0 : it->second;
}

void CounterFamily::Render(std::string* out) const {
  Header(out, name_, help_, "counter");
  absl::MutexLock lock(&mu_);
  for (const auto& [labels, value] : values_) {
    absl::StrAppend(out, name_, LabelSet(label_names_, labels), " ",
                    MetricsRegistry::FormatValue(value), "\n");
  }
}

HistogramFamily::HistogramFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names,
                                 std::vector<double> upper_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {}

void HistogramFamily::Observe(const std::vector<std::string>& label_values, double value) {
  TESSERA_CHECK_MSG(label_values.size() == label_names_.size(), name_.c_str());
  absl::MutexLock lock(&mu_);
  Series& s = series_[label_values];
  if (s.buckets.empty()) s.buckets.assign(upper_bounds_.size(), 0);
  const auto it = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value);
  if (it != upper_bounds_.end()) ++s.buckets[it - upper_bounds_.begin()];
  ++s.count;
  s.sum += value;
}

int64_t HistogramFamily::Count(const std::vector<std::string>& label_values) const {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(label_values);
  return it == series_.end() ? 0 : it->second.count;
}

void HistogramFamily::Render(std::string* out) const {
  Header(out, name_, help_, "histogram");
  absl::MutexLock lock(&mu_);
  for (const auto& [labels, s] : series_) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < upper_bounds_.size(); ++i) {
      cumulative += s.buckets[i];
      absl::StrAppend(
          out, name_, "_bucket",
          LabelSet(label_names_, labels,
                   absl::StrCat("le=\"", MetricsRegistry::FormatValue(upper_bounds_[i]), "\"")),
          " ", cumulative, "\n");
    }
    absl::StrAppend(out, name_, "_bucket", LabelSet(label_names_, labels, "le=\"+Inf\""), " ",
                    s.count, "\n");
    absl::StrAppend(out, name_, "_sum", LabelSet(label_names_, labels), " ",
                    MetricsRegistry::FormatValue(s.sum), "\n");
    absl::StrAppend(out, name_, "_count", LabelSet(label_names_, labels), " ", s.count, "\n");
  }
}

CounterFamily* MetricsRegistry::AddCounter(std::string name, std::string help,
                                           std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  TESSERA_CHECK_MSG(
      ValidName(name) && std::find(names_.begin(), names_.end(), name) == names_.end(),
      name.c_str());
  names_.push_back(name);
  counters_.push_back(std::unique_ptr<CounterFamily>(
      new CounterFamily(std::move(name), std::move(help), std::move(label_names))));
  return counters_.back().get();
}

HistogramFamily* MetricsRegistry::AddHistogram(std::string name, std::string help,
                                               std::vector<std::string> label_names,
                                               std::vector<double> upper_bounds) {
  absl::MutexLock lock(&mu_);
  TESSERA_CHECK_MSG(
      ValidName(name) && std::find(names_.begin(), names_.end(), name) == names_.end(),
      name.c_str());
  TESSERA_CHECK_MSG(std::is_sorted(upper_bounds.begin(), upper_bounds.end()), name.c_str());
  names_.push_back(name);
  histograms_.push_back(std::unique_ptr<HistogramFamily>(new HistogramFamily(
      std::move(name), std::move(help), std::move(label_names), std::move(upper_bounds))));
  return histograms_.back().get();
}

void MetricsRegistry::AddCollector(std::function<std::vector<MetricSnapshot>()> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string MetricsRegistry::Render() const {
  std::string out;
  std::vector<std::function<std::vector<MetricSnapshot>()>> collectors;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& c : counters_) c->Render(&out);
    for (const auto& h : histograms_) h->Render(&out);
    collectors = collectors_;
  }
  for (const auto& collect : collectors) {
    for (const MetricSnapshot& family : collect()) {
      Header(&out, family.name, family.help,
             family.type == MetricSnapshot::Type::kCounter ? "counter" : "gauge");
      for (const MetricSnapshot::Sample& s : family.samples) {
        absl::StrAppend(&out, family.name, LabelSet(family.label_names, s.label_values), " ",
                        FormatValue(s.value), "\n");
      }
    }
  }
  return out;
}

}  // namespace tessera
