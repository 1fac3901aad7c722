// Host-side preparation of the CUDA backend's attention calls (cuda_backend.h), kept apart
// so it is unit-tested on any machine. The CUDA attention kernels attend "entries": one query
// row each, over [window start, context_len - 1] of a block table. Every attention the
// Backend interface asks for is a list of entries:
//   * PagedAttention: query row i of sequence s is an entry with s's block table and context
//     positions[i] + 1 (a prefill chunk's rows thus see their causal prefix);
//   * Attention over a contiguous cache: the cache is one block of cache_len positions and
//     query row i sees positions [0, positions[i]].
// Rows that belong to no sequence get no entry (the kernels leave them alone). One launch
// covers every entry: the decode kernel takes one entry per thread block, its window cut
// into pieces when the entries alone cannot fill the GPU (PlanAttentionSplits); the prefill
// kernel takes `tiles` of up to kAttentionTileRows consecutive entries of one sequence and
// reads each K/V position once per tile. Pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cuda/attention_shim.h"  // the kernels' tile and pass sizes
#include "kernels/paged_kv.h"

namespace tessera {

// Query rows per prefill tile (the prefill kernel's compile-time tile).
inline constexpr int64_t kAttentionTileRows = cuda_shim::kPrefillTileRows;

struct AttentionRows {
  int64_t max_blocks = 0;              // table width
  std::vector<int32_t> rows;           // [entries]: the q / out row of each entry
  std::vector<int32_t> tables;         // [entries, max_blocks], padded with block 0
  std::vector<int32_t> context_lens;   // [entries]
  // [tiles, 2]: first entry and count (<= kAttentionTileRows) of consecutive entries that
  // share one block table.
  std::vector<int32_t> tiles;
  int64_t longest_context = 0;         // max of context_lens
  bool multi_row_tiles = false;        // some tile holds more than one entry (prefill rows)
  int64_t entries() const { return static_cast<int64_t>(rows.size()); }
  int64_t num_tiles() const { return static_cast<int64_t>(tiles.size() / 2); }
};

// For PagedAttention's arguments, already checked (CheckPagedAttentionArgs).
AttentionRows PagedAttentionRows(std::span<const int32_t> positions,
                                 std::span<const PagedSequence> sequences, int64_t block_size);

// For Attention over a contiguous cache (one block, id 0, of the cache's length).
AttentionRows ContiguousAttentionRows(std::span<const int32_t> positions);

// A recorded decode step's tables (step_graphs.h): rows->tables re-laid `max_blocks` wide
// (padded with block 0, which no entry reads past its context), so that the table width
// does not change from step to step. max_blocks >= rows->max_blocks.
void WidenAttentionTables(int64_t max_blocks, AttentionRows* rows);

// How the decode kernel cuts each entry's window of positions: `num_splits` pieces of
// `split_len` positions (the last may be shorter or empty), merged afterwards.
struct AttentionSplits {
  int64_t num_splits = 1;
  int64_t split_len = 0;  // 0 when num_splits == 1 (the whole window)
};
// Minimum positions in a piece: shorter pieces cost more in the merge than they save.
inline constexpr int64_t kMinAttentionSplit = 256;
inline constexpr int64_t kMaxAttentionSplits = 32;
// One piece when entries × heads thread blocks already fill `target_blocks` (a few waves
// of the GPU's multiprocessors) or the longest window is under two minimum pieces; else as
// many pieces (of whole multiples of 128 positions, at least kMinAttentionSplit) as bring
// the thread blocks up to the target, at most kMaxAttentionSplits. `longest_window` is the
// longest number of positions an entry attends to (its context, or the sliding window).
AttentionSplits PlanAttentionSplits(int64_t entries, int64_t num_heads, int64_t longest_window,
                                    int64_t target_blocks);

// Floats of the split decode's workspace: a partial output, max and sum per piece.
inline int64_t AttentionSplitWorkspaceFloats(int64_t entries, int64_t num_heads,
                                             int64_t head_dim, const AttentionSplits& splits) {
  return splits.num_splits <= 1 ? 0 : entries * num_heads * splits.num_splits * (head_dim + 2);
}

// WriteKv's slots with every slot that a later row writes again replaced by kPaddingSlot, so
// that rows written in parallel leave the later row's values, as ops.h promises.
std::vector<int32_t> LastWriterSlots(std::span<const int32_t> slots);

}  // namespace tessera
