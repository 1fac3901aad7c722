#include "engine/kv_capacity.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tessera {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

absl::StatusOr<int64_t> KvBytesPerToken(const KvCacheShape& s) {
  for (auto [field, v] : {std::pair<const char*, int>{"n_layers", s.n_layers},
                          {"n_kv_heads", s.n_kv_heads},
                          {"head_dim", s.head_dim},
                          {"block_size", s.block_size},
                          {"bytes_per_elem", s.bytes_per_elem},
                          {"tp", s.tp},
                          {"pp", s.pp}}) {
    if (v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("KvCacheShape.", field, " must be positive, got ", v));
    }
  }
  const int64_t layers = CeilDiv(s.n_layers, s.pp);
  const int64_t kv_heads = CeilDiv(s.n_kv_heads, s.tp);  // at least 1: replicated
  return 2 * layers * kv_heads * s.head_dim * s.bytes_per_elem;
}

absl::StatusOr<KvCapacity> ComputeKvCapacity(const KvCacheShape& shape, int64_t budget_bytes) {
  if (budget_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache budget_bytes must not be negative, got ", budget_bytes));
  }
  auto per_token = KvBytesPerToken(shape);
  if (!per_token.ok()) return per_token.status();
  KvCapacity c;
  c.bytes_per_token = *per_token;
  c.bytes_per_block = c.bytes_per_token * shape.block_size;
  c.num_blocks = budget_bytes / c.bytes_per_block;
  c.tokens_that_fit = c.num_blocks * shape.block_size;
  c.bytes_used = c.num_blocks * c.bytes_per_block;
  return c;
}

absl::StatusOr<int64_t> KvBudgetFromDeviceMemory(int64_t free_bytes, int64_t total_bytes,
                                                 double utilization) {
  if (!(utilization > 0.0 && utilization <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "device memory utilization must lie in (0, 1], got %g", utilization));
  }
  if (free_bytes < 0 || total_bytes <= 0 || free_bytes > total_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "device memory: free_bytes=%d and total_bytes=%d are not a device's sizes", free_bytes,
        total_bytes));
  }
  const auto reserved =
      static_cast<int64_t>((1.0 - utilization) * static_cast<double>(total_bytes));
  const int64_t budget = free_bytes - reserved;
  if (budget <= 0) {
    constexpr double kMiB = 1024.0 * 1024.0;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no device memory left for the KV cache: %.1f MiB free of %.1f MiB after loading, and "
        "utilization %g keeps %.1f MiB back; raise --gpu-memory-utilization or use a smaller "
        "model or more ranks",
        free_bytes / kMiB, total_bytes / kMiB, utilization, reserved / kMiB));
  }
  return budget;
}

std::string KvCapacity::ToString() const {
  const int64_t block_size = bytes_per_token > 0 ? bytes_per_block / bytes_per_token : 0;
  return absl::StrFormat(
      "KV cache: %d blocks x %d tokens = %d tokens, %d bytes per block (%d per token), %.1f MiB",
      num_blocks, block_size, tokens_that_fit, bytes_per_block, bytes_per_token,
      static_cast<double>(bytes_used) / (1024.0 * 1024.0));
}

}  // namespace tessera
