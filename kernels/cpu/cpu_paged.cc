// CpuBackend's paged-KV ops (ops.h, kernels/paged_kv.h).
//
// PagedAttention: one work item is (sequence, tile of up to kQueryTile query rows, the query
// heads of one GQA group, or a part of it when items would be too few), handed out
// dynamically. The item walks the positions its rows see in chunks of kAttendMaxRun: each
// chunk's K and V rows of the item's KV head are gathered from their blocks into contiguous
// float rows once (widened from half for a kF16 cache), then every query row of the tile
// advances its one-pass (online) softmax over the chunk (CpuKernels::attend_run) for all the
// item's heads. So a prefill tile reads the cache once, not once per row; a run is not cut
// at block boundaries; and a half row is widened once for the whole GQA group. Memory per
// thread: 2 x kAttendMaxRun x head_dim floats, and per query head head_dim + kAttendMaxRun,
// whatever the context length.
#include <algorithm>
#include <cmath>
#include <cstddef>
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
  // A few rows of a few hundred elements each: on the calling thread, in order, so a
  // repeated slot keeps the later row as ops.h promises.
  if (layout.dtype == DType::kF16) {
    auto* kp = static_cast<uint16_t*>(pool.k);
    auto* vp = static_cast<uint16_t*>(pool.v);
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i] == kPaddingSlot) continue;
      kernels_.f32_to_f16(k + i * row, kp + slots[i] * row, row);
      kernels_.f32_to_f16(v + i * row, vp + slots[i] * row, row);
    }
    return absl::OkStatus();
  }
  const size_t bytes = static_cast<size_t>(row) * sizeof(float);
  auto* kp = static_cast<float*>(pool.k);
  auto* vp = static_cast<float*>(pool.v);
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
  const bool half = layout.dtype == DType::kF16;
  const int64_t per_item = HeadsPerItem(n_tokens, p.num_heads, p.num_kv_heads);
  const int64_t items_per_tile = p.num_heads / per_item;
  const int64_t items = static_cast<int64_t>(tiles.size()) * items_per_tile;
  // `tiles` names each thread's own copy; workers must read the caller's.
  const Tile* const tile_list = tiles.data();
  const CpuKernels& kernels = kernels_;

  auto run = [&](int64_t item) {
    thread_local AttentionWorkspace workspace;
    thread_local std::vector<float> kv;  // one chunk's K rows, then its V rows, as float
    const Tile& tile = tile_list[item / items_per_tile];
    const int64_t h0 = item % items_per_tile * per_item;
    const int64_t head_off = h0 / group * d;
    const std::span<const int32_t> table = sequences[tile.seq].block_table;
    const int rows = static_cast<int>(tile.row_end - tile.row_begin);
    const int nq = static_cast<int>(per_item);
    workspace.Reset(rows * nq, d);
    if (kv.size() < static_cast<size_t>(2 * kAttendMaxRun * d)) kv.resize(2 * kAttendMaxRun * d);
    float* const k_chunk = kv.data();
    float* const v_chunk = kv.data() + kAttendMaxRun * d;
    int64_t lo = positions[tile.row_begin], hi = lo;
    for (int64_t t = tile.row_begin; t < tile.row_end; ++t) {
      lo = std::min(lo, WindowStart(positions[t], p.sliding_window));
      hi = std::max<int64_t>(hi, positions[t]);
    }
    // Chunks of positions gathered from their blocks once for all the tile's rows and the
    // item's heads; each row then runs its softmax over the chunk's positions it sees.
    for (int64_t c0 = lo; c0 <= hi; c0 += kAttendMaxRun) {
      const int64_t c1 = std::min(hi + 1, c0 + kAttendMaxRun);
      for (int64_t pos = c0; pos < c1; ++pos) {
        const int64_t src = (table[pos / bs] * bs + pos % bs) * row_elems + head_off;
        float* k_dst = k_chunk + (pos - c0) * d;
        float* v_dst = v_chunk + (pos - c0) * d;
        if (half) {
          kernels.f16_to_f32(static_cast<const uint16_t*>(pool.k) + src, k_dst, d);
          kernels.f16_to_f32(static_cast<const uint16_t*>(pool.v) + src, v_dst, d);
        } else {
          std::memcpy(k_dst, static_cast<const float*>(pool.k) + src, d * sizeof(float));
          std::memcpy(v_dst, static_cast<const float*>(pool.v) + src, d * sizeof(float));
        }
      }
      for (int r = 0; r < rows; ++r) {
        const int64_t t = tile.row_begin + r;
        const int64_t a = std::max(c0, WindowStart(positions[t], p.sliding_window));
        const int64_t b = std::min<int64_t>(c1, positions[t] + 1);
        if (a >= b) continue;
        AttentionAccumulator state = workspace.Queries(r * nq, nq);
        kernels.attend_run(q + (t * p.num_heads + h0) * d, d, p.scale, k_chunk + (a - c0) * d,
                           v_chunk + (a - c0) * d, d, b - a, state);
      }
    }
    for (int r = 0; r < rows; ++r) {
      workspace.Finish(out + ((tile.row_begin + r) * p.num_heads + h0) * d, r * nq, nq);
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
  const int64_t n = layout.block_bytes();
  // Layers are independent; within a layer the copies run in the given order.
  pool_.ParallelFor(static_cast<int64_t>(layers.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      for (const KvBlockCopy& c : copies) {
        if (c.src == c.dst) continue;
        for (auto* base : {static_cast<std::byte*>(layers[l].k),
                           static_cast<std::byte*>(layers[l].v)}) {
          std::memcpy(base + c.dst * n, base + c.src * n, static_cast<size_t>(n));
        }
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
