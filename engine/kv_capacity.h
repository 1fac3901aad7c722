// How many KV blocks a memory budget holds (DESIGN.md §4): per token and rank,
//   2 (K and V) · n_layers/pp · n_kv_heads/tp · head_dim · bytes_per_elem,
// with uneven splits rounded up (the largest rank decides) and KV heads replicated when
// there are fewer than tp. A block holds block_size tokens. Pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tessera {

struct KvCacheShape {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int bytes_per_elem = 2;  // f16 / bf16 cache; 4 for f32
  int tp = 1;
  int pp = 1;
};

struct KvCapacity {
  int64_t bytes_per_token = 0;
  int64_t bytes_per_block = 0;
  int64_t num_blocks = 0;
  int64_t tokens_that_fit = 0;  // num_blocks · block_size
  int64_t bytes_used = 0;       // num_blocks · bytes_per_block (≤ the budget)
  // One line for the startup log, e.g. "KV cache: 1234 blocks x 16 tokens = 19744 tokens,
  // 92160 bytes per block (5760 per token), 113.7 MiB".
  std::string ToString() const;
};

// INVALID_ARGUMENT naming the field when a size is not positive or the budget is negative.
[[nodiscard]] absl::StatusOr<int64_t> KvBytesPerToken(const KvCacheShape& shape);
[[nodiscard]] absl::StatusOr<KvCapacity> ComputeKvCapacity(const KvCacheShape& shape,
                                                           int64_t budget_bytes);

// The KV budget on a device whose memory is `total_bytes`, `free_bytes` of it free once the
// weights and the model's buffers are in: what is left of `utilization` (in (0, 1]) of the
// total, i.e. free - (1 - utilization) · total. The part of the total kept back is headroom
// for activations, the GEMM workspace and other processes. INVALID_ARGUMENT naming the field
// for a utilization outside (0, 1] or negative sizes; RESOURCE_EXHAUSTED with the numbers
// when nothing is left.
[[nodiscard]] absl::StatusOr<int64_t> KvBudgetFromDeviceMemory(int64_t free_bytes,
                                                               int64_t total_bytes,
                                                               double utilization);

}  // namespace tessera
