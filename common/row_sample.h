// The inverse-CDF draw over one row of logits, shared by the sampler (decoding/sampler.h)
// and the backends' SampleRows (kernels/ops.h), so that a draw made on a device is the one
// the host would make (up to float64 rounding where u lands on a boundary between tokens).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace tessera {

// The first token whose cumulative weight exceeds u * total, weights exp(row[i] - max) in
// float64 (NaN weighs 0), u in [0, 1). -1 when the row's largest value is not finite (every
// value -inf or NaN, or one +inf). Tokens at -inf are never chosen.
inline int32_t DrawFromRow(std::span<const float> row, double u) {
  double max = -std::numeric_limits<double>::infinity();
  for (float l : row) {
    if (l > max) max = l;
  }
  if (!std::isfinite(max)) return -1;
  std::vector<double> weights(row.size());
  double total = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    weights[i] = std::isnan(row[i]) ? 0.0 : std::exp(static_cast<double>(row[i]) - max);
    total += weights[i];
  }
  const double target = u * total;
  double cumulative = 0;
  int32_t last_positive = -1;
  for (size_t i = 0; i < row.size(); ++i) {
    const double w = weights[i];
    if (w <= 0) continue;
    cumulative += w;
    last_positive = static_cast<int32_t>(i);
    if (cumulative > target) return last_positive;
  }
  return last_positive;  // rounding left target at the total: the last possible token
}

}  // namespace tessera
