// The candidates of top-k sampling over one row of logits, shared by the backends'
// TopKRows (kernels/ops.h) and its tests, so that a selection made on a device is the one
// the host would make. With these candidates the sampler reproduces, bit for bit, a draw
// over the whole row (decoding/sampler.h, Sampler::SampleCandidates).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace tessera {

// The tokens of `row` whose row[i] / temperature is at least the k-th largest of the row's
// row[j] / temperature (every token tied with it included, so there may be more than k),
// ascending by index, their indices into `ids` and raw values (not divided) into `values`,
// at most ids.size() of them. Returns how many tokens qualify (possibly more than were
// written), min(k, row.size()) of the largest at least; 0 when k <= 0, and -1 when the row
// holds a NaN (whose order is undefined). temperature > 0; the division is the float
// division TemperatureWarper does, so ties it creates count as ties.
inline int32_t TopKOfRow(std::span<const float> row, int64_t k, float temperature,
                         std::span<int32_t> ids, std::span<float> values) {
  if (k <= 0 || row.empty()) return 0;
  std::vector<float> scaled(row.size());
  for (size_t i = 0; i < row.size(); ++i) {
    if (std::isnan(row[i])) return -1;
    scaled[i] = row[i] / temperature;
  }
  const size_t kth_index =
      static_cast<size_t>(std::min<int64_t>(k, static_cast<int64_t>(row.size()))) - 1;
  std::vector<float> sorted = scaled;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(kth_index),
                   sorted.end(), std::greater<float>());
  const float kth = sorted[kth_index];
  int32_t count = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (scaled[i] < kth) continue;
    if (static_cast<size_t>(count) < ids.size() && static_cast<size_t>(count) < values.size()) {
      ids[static_cast<size_t>(count)] = static_cast<int32_t>(i);
      values[static_cast<size_t>(count)] = row[i];
    }
    ++count;
  }
  return count;
}

}  // namespace tessera
