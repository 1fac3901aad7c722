// Prometheus metrics in the text exposition format (version 0.0.4): counters and histograms
// that the code updates as things happen, and collectors that report values read at scrape
// time (gauges such as queue depth, or counters kept elsewhere such as a replica's steps).
// No Prometheus client library for C++ is packaged by Debian, and the format is small.
//
// Thread-safety: every method from any thread. Families live as long as the registry.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace tessera {

// One family's samples as a collector reports them.
struct MetricSnapshot {
  enum class Type { kCounter, kGauge };
  std::string name;
  std::string help;
  Type type = Type::kGauge;
  std::vector<std::string> label_names;
  struct Sample {
    std::vector<std::string> label_values;  // one per label name
    double value = 0;
  };
  std::vector<Sample> samples;
};

class CounterFamily {
 public:
  // `label_values` has one value per label name (CHECKed: a caller bug, not input).
  void Add(const std::vector<std::string>& label_values, double amount = 1);
  double Value(const std::vector<std::string>& label_values) const;

 private:
  friend class MetricsRegistry;
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names);
  void Render(std::string* out) const;

  const std::string name_, help_;
  const std::vector<std::string> label_names_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, double> values_ ABSL_GUARDED_BY(mu_);
};

class HistogramFamily {
 public:
  void Observe(const std::vector<std::string>& label_values, double value);
  // Observations so far with these labels.
  int64_t Count(const std::vector<std::string>& label_values) const;

 private:
  friend class MetricsRegistry;
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> upper_bounds);
  void Render(std::string* out) const;

  struct Series {
    std::vector<int64_t> buckets;  // per upper bound, not cumulative
    int64_t count = 0;
    double sum = 0;
  };
  const std::string name_, help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> upper_bounds_;  // ascending; +Inf is implied
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, Series> series_ ABSL_GUARDED_BY(mu_);
};

class MetricsRegistry {
 public:
  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]* and be unique (CHECKed).
  CounterFamily* AddCounter(std::string name, std::string help,
                            std::vector<std::string> label_names);
  // `upper_bounds` ascending (CHECKed).
  HistogramFamily* AddHistogram(std::string name, std::string help,
                                std::vector<std::string> label_names,
                                std::vector<double> upper_bounds);
  // Called on every Render; runs on the scraping thread.
  void AddCollector(std::function<std::vector<MetricSnapshot>()> collector);

  // Every family, in the order added, collectors' families last.
  std::string Render() const;

  // Label values and HELP text escaped as the format requires; numbers as Prometheus
  // writes them (+Inf, -Inf, NaN).
  static std::string EscapeLabelValue(std::string_view value);
  static std::string FormatValue(double value);

 private:
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<CounterFamily>> counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<HistogramFamily>> histograms_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<std::vector<MetricSnapshot>()>> collectors_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera
