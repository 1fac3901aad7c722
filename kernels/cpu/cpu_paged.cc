// CpuBackend's paged-KV ops (ops.h, kernels/paged_kv.h).
//
// PagedAttention: one work item is (sequence, tile of up to kQueryTile query rows, the query
// heads of one GQA group, or a part of it when items would be too few), handed out
// dynamically. Each query row runs a one-pass (online) softmax over runs of positions that
// are contiguous in one block (CpuKernels::attend_run), which reads each K and V row once for
// all the item's heads. Memory per thread: heads x (head_dim + kAttendMaxRun) floats,
// whatever the context length.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"

namespace tessera {
namespace {

constexpr int64_t kQueryTile = 8;

struct Tile {
  int64_t seq;
  int64_t row_begin;
  int64_t row_end;
};

}  // namespace

absl::Status CpuBackend::WriteKv(const float* k, const float* v, std::span<const int32_t> slots,
                                 const PagedKvLayout& layout, const KvPool& pool) {
  RETURN_IF_ERROR(CheckWriteKvArgs(name(), slots, layout, pool));
  const int64_t row = layout.token_elems();
  const size_t bytes = static_cast<size_t>(row) * sizeof(float);
  auto* kp = static_cast<float*>(pool.k);
  auto* vp = static_cast<float*>(pool.v);
  // A few rows of a few hundred floats each: memcpy on the calling thread, in order, so a
  // repeated slot keeps the later row as ops.h promises.
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] == kPaddingSlot) continue;
    std::memcpy(kp + slots[i] * row, k + i * row, bytes);
    std::memcpy(vp + slots[i] * row, v + i * row, bytes);
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::PagedAttention(const float* q, int64_t n_tokens,
                                        std::span<const int32_t> positions,
                                        std::span<const PagedSequence> sequences,
                                        const PagedKvLayout& layout, const KvPool& pool,
                                        const PagedAttentionParams& p, float* out) {
  RETURN_IF_ERROR(
      CheckPagedAttentionArgs(name(), n_tokens, positions, sequences, layout, pool, p));
  thread_local std::vector<Tile> tiles;  // the caller's; reused so a step does not allocate
  tiles.clear();
  for (size_t s = 0; s < sequences.size(); ++s) {
    const int64_t end = sequences[s].query_start + sequences[s].num_queries;
    for (int64_t r = sequences[s].query_start; r < end; r += kQueryTile) {
      tiles.push_back({static_cast<int64_t>(s), r, std::min(end, r + kQueryTile)});
    }
  }
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t bs = layout.block_size;
  const int64_t row_elems = layout.token_elems();
  const auto* kp = static_cast<const float*>(pool.k);
  const auto* vp = static_cast<const float*>(pool.v);
  const int64_t per_item = HeadsPerItem(n_tokens, p.num_heads, p.num_kv_heads);
  const int64_t items_per_tile = p.num_heads / per_item;
  const int64_t items = static_cast<int64_t>(tiles.size()) * items_per_tile;
  // `tiles` names each thread's own copy; workers must read the caller's.
  const Tile* const tile_list = tiles.data();
  const AttendRunFn attend = kernels_.attend_run;

  auto run = [&](int64_t item) {
    thread_local AttentionWorkspace workspace;
    const Tile& tile = tile_list[item / items_per_tile];
    const int64_t h0 = item % items_per_tile * per_item;
    const int64_t head_off = h0 / group * d;
    const std::span<const int32_t> table = sequences[tile.seq].block_table;
    for (int64_t t = tile.row_begin; t < tile.row_end; ++t) {
      AttentionAccumulator& state = workspace.Reset(static_cast<int>(per_item), d);
      const float* qh = q + (t * p.num_heads + h0) * d;
      const int64_t hi = positions[t];
      // Runs of positions that are contiguous in one block.
      for (int64_t pos = WindowStart(hi, p.sliding_window); pos <= hi;) {
        const int64_t in_block = pos % bs;
        const int64_t n = std::min({bs - in_block, hi + 1 - pos, kAttendMaxRun});
        const int64_t row = (table[pos / bs] * bs + in_block) * row_elems + head_off;
        attend(qh, d, p.scale, kp + row, vp + row, row_elems, n, state);
        pos += n;
      }
      workspace.Finish(out + (t * p.num_heads + h0) * d);
    }
  };

  // Items differ in cost (context lengths differ), so threads claim them dynamically.
  pool_.ForEachChunk(items, run);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyBlocks(std::span<const KvPool> layers, const PagedKvLayout& layout,
                                    std::span<const KvBlockCopy> copies) {
  RETURN_IF_ERROR(CheckCopyBlocksArgs(name(), layers, layout, copies));
  if (copies.empty() || layers.empty()) return absl::OkStatus();
  const int64_t n = layout.block_elems();
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  // Layers are independent; within a layer the copies run in the given order.
  pool_.ParallelFor(static_cast<int64_t>(layers.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      for (const KvBlockCopy& c : copies) {
        if (c.src == c.dst) continue;
        for (float* base : {static_cast<float*>(layers[l].k), static_cast<float*>(layers[l].v)}) {
          std::memcpy(base + c.dst * n, base + c.src * n, bytes);
        }
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
