// The greedy choice over one row of logits, shared by the sampler (decoding/sampler.h) and
// the backends' ArgMaxRows (kernels/ops.h), so that a choice made on a device is the one the
// host would make.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

namespace tessera {

struct RowArgMax {
  int32_t index = -1;  // -1: the row has no value that is not NaN
  float value = 0.0f;
};

// The largest value of `row` and its index: NaN skipped, the lowest index among equal
// maxima (as torch.argmax; an all -inf row gives index 0).
inline RowArgMax ArgMaxOfRow(std::span<const float> row) {
  RowArgMax best;
  for (size_t i = 0; i < row.size(); ++i) {
    if (std::isnan(row[i])) continue;
    if (best.index < 0 || row[i] > best.value) {
      best.index = static_cast<int32_t>(i);
      best.value = row[i];
    }
  }
  return best;
}

}  // namespace tessera
