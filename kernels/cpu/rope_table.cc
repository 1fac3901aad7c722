#include "kernels/cpu/rope_table.h"

#include <algorithm>
#include <cmath>

namespace tessera {

const float* RopeTable::Get(std::span<const int32_t> positions, const RopeParams& p,
                            ThreadPool& pool) {
  const int64_t half = p.rope_dim / 2;
  const int64_t n = static_cast<int64_t>(positions.size());
  const bool same = p.mscale == mscale_ && static_cast<int64_t>(inv_freq_.size()) == half &&
                    std::equal(inv_freq_.begin(), inv_freq_.end(), p.inv_freq) &&
                    std::equal(positions.begin(), positions.end(), positions_.begin(),
                               positions_.end());
  if (same) return table_.data();
  positions_.assign(positions.begin(), positions.end());
  inv_freq_.assign(p.inv_freq, p.inv_freq + half);
  mscale_ = p.mscale;
  table_.resize(static_cast<size_t>(n * 2 * half));
  pool.ParallelFor(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* cs = table_.data() + t * 2 * half;
      // Angles in double: position * frequency loses digits in float for long contexts.
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[t]) * p.inv_freq[i];
        cs[2 * i] = static_cast<float>(std::cos(angle) * p.mscale);
        cs[2 * i + 1] = static_cast<float>(std::sin(angle) * p.mscale);
      }
    }
  });
  return table_.data();
}

}  // namespace tessera
