// The paged KV cache as the Backend sees it (ops.h: WriteKv, PagedAttention, CopyBlocks):
// the memory layout, the batch description the engine fills from a StepPlan, and the
// argument checks every backend shares.
//
// Layout. Each layer owns two pools, K and V, of `num_blocks` blocks; block b holds
// `block_size` consecutive token positions of one sequence, token-major:
//   pool[b, slot, kv_head, e]  with shape [num_blocks, block_size, num_kv_heads, head_dim],
// so a block is exactly a [block_size, num_kv_heads, head_dim] slice of the contiguous cache
// layout that Backend::Attention reads. Position p of a sequence with block table T lives
// in block T[p / block_size], slot p % block_size; its flat slot index is
// T[p / block_size] * block_size + p % block_size (vLLM's slot mapping). Elements are
// `dtype`: kF32, or kF16 (IEEE half, written with round-to-nearest-even; half the bytes per
// token, and attention reads half as much, at ~3 significant digits per element). Other
// dtypes are UNIMPLEMENTED.
//
// The checks here cost O(tokens + table entries read); they turn a bad slot, block id or
// position from the scheduler into INVALID_ARGUMENT instead of a wild memory access.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace tessera {

// Bytes per element of a KV pool of `dtype`: 4 (kF32), 2 (kF16), or 0 when a paged cache
// cannot hold that dtype.
inline int64_t KvElementBytes(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    default: return 0;
  }
}

struct PagedKvLayout {
  int64_t num_blocks = 0;
  int64_t block_size = 0;    // tokens per block
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  DType dtype = DType::kF32;  // element type of both pools

  int64_t token_elems() const { return num_kv_heads * head_dim; }
  int64_t block_elems() const { return block_size * token_elems(); }
  int64_t pool_elems() const { return num_blocks * block_elems(); }
  int64_t num_slots() const { return num_blocks * block_size; }
  // Bytes of one element (4 for kF32, 2 for kF16; 0 for a dtype the pools cannot hold).
  int64_t elem_bytes() const { return KvElementBytes(dtype); }
  int64_t block_bytes() const { return block_elems() * elem_bytes(); }
};

// One layer's pools, each layout.pool_elems() elements of layout.dtype, in the backend's
// memory space. Not owned. PagedAttention only reads them.
struct KvPool {
  void* k = nullptr;
  void* v = nullptr;
};

// Slot value that WriteKv skips (a padding row), as in vLLM.
inline constexpr int32_t kPaddingSlot = -1;

// One sequence of a PagedAttention batch: rows [query_start, query_start + num_queries) of
// q / out / positions belong to it. Its cache holds positions [0, context_len), which
// includes the new tokens (their KV is written by WriteKv before PagedAttention). The table
// is the scheduler's block table (engine BlockId is int32_t), viewed, not copied; only its
// first ceil(context_len / block_size) entries are read.
// From a StepPlan entry e (engine/step_plan.h), with rows laid out in batch order:
//   {query_start = rows before e, num_queries = e.token_ids.size(),
//    context_len = e.start_position + e.token_ids.size(), block_table = e.block_table},
// and positions[query_start + i] = e.start_position + i.
struct PagedSequence {
  int64_t query_start = 0;
  int64_t num_queries = 0;
  int64_t context_len = 0;
  std::span<const int32_t> block_table;
};

struct PagedAttentionParams {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // divides num_heads; query head h reads kv head h / (H / KVH)
  int64_t head_dim = 0;
  float scale = 0.0f;        // usually 1/sqrt(head_dim)
  // 0 = full causal attention. Otherwise the query at position p sees positions
  // [p - sliding_window + 1, p] only (Mistral / Gemma-style window of W tokens).
  int64_t sliding_window = 0;
};

// One copy-on-write pair: block src's contents go to block dst (in every layer). Same
// fields as the engine's BlockCopy (BlockId is int32_t).
struct KvBlockCopy {
  int32_t src = -1;
  int32_t dst = -1;
};

// Fills `slots` (resized to positions.size()) with the flat slot of each query row, from the
// sequences' block tables; rows that belong to no sequence get kPaddingSlot. Same checks as
// CheckPagedAttentionArgs on the sequences, positions and tables.
[[nodiscard]] absl::Status ComputeSlotMapping(std::span<const PagedSequence> sequences,
                                              std::span<const int32_t> positions,
                                              const PagedKvLayout& layout,
                                              std::vector<int32_t>* slots);

// Argument checks shared by the backends. `backend` prefixes the message; messages name the
// op and the field (e.g. "sequences[2].block_table[1]=77").
[[nodiscard]] absl::Status CheckPagedKvLayout(std::string_view backend, std::string_view op,
                                              const PagedKvLayout& layout, const KvPool& pool);
[[nodiscard]] absl::Status CheckWriteKvArgs(std::string_view backend,
                                            std::span<const int32_t> slots,
                                            const PagedKvLayout& layout, const KvPool& pool);
[[nodiscard]] absl::Status CheckPagedAttentionArgs(std::string_view backend, int64_t n_tokens,
                                                   std::span<const int32_t> positions,
                                                   std::span<const PagedSequence> sequences,
                                                   const PagedKvLayout& layout,
                                                   const KvPool& pool,
                                                   const PagedAttentionParams& params);
// The part of CheckPagedAttentionArgs that does not look at the rows: the layout, the pools
// and the params (for a backend that checked the same rows already).
[[nodiscard]] absl::Status CheckPagedAttentionParams(std::string_view backend,
                                                     const PagedKvLayout& layout,
                                                     const KvPool& pool,
                                                     const PagedAttentionParams& params);
[[nodiscard]] absl::Status CheckCopyBlocksArgs(std::string_view backend,
                                               std::span<const KvPool> layers,
                                               const PagedKvLayout& layout,
                                               std::span<const KvBlockCopy> copies);

// Argument checks of Backend::SwapBlocks, and its implementation for backends whose pools
// live in host memory (memcpy per layer, K and V).
[[nodiscard]] absl::Status CheckSwapBlocksArgs(std::string_view backend,
                                               std::span<const KvPool> from,
                                               const PagedKvLayout& from_layout,
                                               std::span<const KvPool> to,
                                               const PagedKvLayout& to_layout,
                                               std::span<const KvBlockCopy> copies);
[[nodiscard]] absl::Status SwapHostBlocks(std::string_view backend, std::span<const KvPool> from,
                                          const PagedKvLayout& from_layout,
                                          std::span<const KvPool> to,
                                          const PagedKvLayout& to_layout,
                                          std::span<const KvBlockCopy> copies);

// Lowest position that a query at `position` attends to.
inline int64_t WindowStart(int64_t position, int64_t sliding_window) {
  if (sliding_window <= 0 || position < sliding_window) return 0;
  return position - sliding_window + 1;
}

}  // namespace tessera
