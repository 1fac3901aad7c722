// Host-side preparation of the CUDA backend's attention calls (cuda_backend.h), kept apart
// so it is unit-tested on any machine. The CUDA attention kernel attends one query row per
// "sequence" over [window start, context_len - 1] through a block table; every attention the
// Backend interface asks for is that, row by row:
//   * PagedAttention: query row i of sequence s is a sequence of its own with s's block table
//     and context positions[i] + 1 (a prefill chunk's rows thus see their causal prefix);
//   * Attention over a contiguous cache: the cache is one block of cache_len positions and
//     query row i sees positions [0, positions[i]].
// Rows that belong to no sequence are left out: the covered rows form `runs` of consecutive
// rows, one kernel call each. Pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/paged_kv.h"

namespace tessera {

struct AttentionRows {
  int64_t max_blocks = 0;              // table width
  std::vector<int32_t> tables;         // [rows covered, max_blocks], padded with block 0
  std::vector<int32_t> context_lens;   // [rows covered]
  struct Run {
    int64_t first_row = 0;  // of q / out
    int64_t count = 0;
    int64_t first_entry = 0;  // of tables / context_lens
  };
  std::vector<Run> runs;
};

// For PagedAttention's arguments, already checked (CheckPagedAttentionArgs).
AttentionRows PagedAttentionRows(std::span<const int32_t> positions,
                                 std::span<const PagedSequence> sequences, int64_t block_size);

// For Attention over a contiguous cache (one block, id 0, of the cache's length).
AttentionRows ContiguousAttentionRows(std::span<const int32_t> positions);

// WriteKv's slots with every slot that a later row writes again replaced by kPaddingSlot, so
// that rows written in parallel leave the later row's values, as ops.h promises.
std::vector<int32_t> LastWriterSlots(std::span<const int32_t> slots);

}  // namespace tessera
