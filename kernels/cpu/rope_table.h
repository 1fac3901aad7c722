// The cos and sin (times mscale) of every (token, frequency) pair of a Rope call, kept for
// the next call with the same positions and parameters: the Q and K rotations of every
// layer of a forward use the same ones, and recomputing them in double for each call was
// about 3% of a 32-sequence decode step. Owned by one backend; used from its owner thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/ops.h"

namespace tessera {

class RopeTable {
 public:
  // Row t (2 * rope_dim / 2 floats: cos, sin of frequency i at 2i, 2i + 1) for positions[t];
  // valid until the next call. Computed on `pool` when the positions or parameters differ
  // from the last call's.
  const float* Get(std::span<const int32_t> positions, const RopeParams& p, ThreadPool& pool);

 private:
  std::vector<int32_t> positions_;
  std::vector<float> inv_freq_;
  float mscale_ = 0.0f;
  std::vector<float> table_;
};

}  // namespace tessera
