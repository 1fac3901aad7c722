// CpuBackend's paged-KV ops (ops.h, kernels/paged_kv.h).
//
// PagedAttention: one work item is (sequence, tile of up to kQueryTile query rows, a set of
// query heads), handed out dynamically. The heads are those of several consecutive KV heads
// while their slices of a cached row fit kMaxGatherWidth floats and the batch still makes
// two items per thread (decode of many sequences: every head of a sequence), else of one GQA
// group, else of a part of one (decode of one sequence). The item walks the positions its
// rows see in chunks of kAttendMaxRun: each chunk's K and V slices are gathered from their
// blocks into contiguous float rows once (widened from half for a kF16 cache), then every
// query row of the tile advances its one-pass (online) softmax over the chunk
// (CpuKernels::attend_run). So a prefill tile reads the cache once, not once per row; a run
// is not cut at block boundaries; a half row is widened once for all the heads reading it;
// and decode reads whole stretches of each cached row, which keeps the memory system
// streaming. A decode of too few sequences to give every thread two such items is split
// along the positions instead (split-K): one item per chunk, whose softmax states are merged
// afterwards, except in batch-invariant mode. Memory per thread: 2 x kAttendMaxRun x
// kMaxGatherWidth floats, and per query head head_dim + kAttendMaxRun, whatever the context
// length (plus, for split-K, one state per item).
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
constexpr int64_t kPrefetchRows = 4;  // rows of the next block the gather asks for ahead

struct Tile {
  int64_t seq;
  int64_t row_begin;
  int64_t row_end;
};

// Floats per gathered row at most: an item takes several KV heads only while their slices
// of a cached row fit (a chunk's K and V then stay within 2 x 128 KiB).
constexpr int64_t kMaxGatherWidth = 256;

// Positions [c0, c1) of one sequence, `width` floats of each cached row from element
// `offset` on (the item's KV heads), as float rows: K row j at k + j * width, V likewise.
struct GatheredChunk {
  float* k;
  float* v;
  int64_t width;
};

void GatherChunk(const CpuKernels& kernels, const PagedKvLayout& layout, const KvPool& pool,
                 std::span<const int32_t> table, int64_t offset, int64_t c0, int64_t c1,
                 const GatheredChunk& out) {
  const int64_t bs = layout.block_size;
  const int64_t row_elems = layout.token_elems();
  const int64_t elem_bytes = layout.elem_bytes();
  const bool half = layout.dtype == DType::kF16;
  const int64_t w = out.width;
  // Block by block: rows of one block are evenly spaced, which the hardware prefetcher
  // follows; the blocks are scattered, so the next block's first rows are asked for ahead.
  for (int64_t pos = c0; pos < c1;) {
    const int64_t in_block = pos % bs;
    const int64_t m = std::min(bs - in_block, c1 - pos);
    const int64_t src = (table[pos / bs] * bs + in_block) * row_elems + offset;
    if (pos + m < c1) {
      const int64_t next = table[(pos + m) / bs] * bs * row_elems + offset;
      for (int64_t r = 0; r < std::min(kPrefetchRows, c1 - pos - m); ++r) {
        for (const void* base : {pool.k, pool.v}) {
          const char* row = static_cast<const char*>(base) + (next + r * row_elems) * elem_bytes;
          for (int64_t off = 0; off < w * elem_bytes; off += 64) __builtin_prefetch(row + off);
        }
      }
    }
    float* k_dst = out.k + (pos - c0) * w;
    float* v_dst = out.v + (pos - c0) * w;
    for (int64_t r = 0; r < m; ++r) {
      const int64_t at = src + r * row_elems;
      if (half) {
        kernels.f16_to_f32(static_cast<const uint16_t*>(pool.k) + at, k_dst + r * w, w);
        kernels.f16_to_f32(static_cast<const uint16_t*>(pool.v) + at, v_dst + r * w, w);
      } else {
        std::memcpy(k_dst + r * w, static_cast<const float*>(pool.k) + at, w * sizeof(float));
        std::memcpy(v_dst + r * w, static_cast<const float*>(pool.v) + at, w * sizeof(float));
      }
    }
    pos += m;
  }
}

// One item of a split-K decode: the chunk of positions starting at c0 (through hi) of tile
// `tile`, for query heads h0 .. h0 + per_item.
struct SplitItem {
  int64_t tile;
  int64_t h0;
  int64_t c0;
  int64_t hi;
};

// `count` chunk states, each [max[nq], sum[nq], acc[nq][d]] as AttentionAccumulator leaves
// them, merged in order into out[nq][d] = the softmax-weighted sum over all the chunks.
void MergeChunkStates(const float* states, int64_t count, int64_t nq, int64_t d, float* out) {
  const int64_t stride = nq * (d + 2);
  for (int64_t h = 0; h < nq; ++h) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < count; ++c) m = std::max(m, states[c * stride + h]);
    float sum = 0.0f;
    float* o = out + h * d;
    std::fill(o, o + d, 0.0f);
    for (int64_t c = 0; c < count; ++c) {
      const float* s = states + c * stride;
      if (s[nq + h] == 0.0f) continue;  // the chunk saw none of this row's positions
      const float scale = std::exp(s[h] - m);
      sum += s[nq + h] * scale;
      const float* acc = s + 2 * nq + h * d;
      for (int64_t e = 0; e < d; ++e) o[e] += acc[e] * scale;
    }
    const float inv = 1.0f / sum;
    for (int64_t e = 0; e < d; ++e) o[e] *= inv;
  }
}

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
  const int64_t max_kv = std::max<int64_t>(1, kMaxGatherWidth / d);
  const int64_t n_tiles = static_cast<int64_t>(tiles.size());
  // Decode of a few sequences (every tile one row, and too few tiles to give each thread two
  // items of whole cached rows): split each row's positions into its chunks instead, one item
  // per chunk and head set, and merge the chunks' softmax states afterwards (split-K). Not in
  // batch-invariant mode, where a row's rounding must not depend on the batch.
  const bool decode_only = n_tokens == n_tiles;
  const int64_t whole_rows = HeadsPerItem(std::numeric_limits<int32_t>::max(), p.num_heads,
                                          p.num_kv_heads, max_kv);
  const bool split = !batch_invariant_ && decode_only &&
                     n_tiles * (p.num_heads / whole_rows) < 2 * pool_.num_threads();
  const int64_t per_item =
      split ? whole_rows : HeadsPerItem(n_tiles, p.num_heads, p.num_kv_heads, max_kv);
  const int64_t items_per_tile = p.num_heads / per_item;
  // An item's query heads read `kv_heads` consecutive KV heads, `heads_per_kv` of them each.
  const int64_t kv_heads = std::max<int64_t>(1, per_item / group);
  const int64_t heads_per_kv = std::min(per_item, group);
  const int64_t width = kv_heads * d;  // floats of a gathered row
  // `tiles` names each thread's own copy; workers must read the caller's.
  const Tile* const tile_list = tiles.data();

  // The positions [lo, hi] a tile's rows see, and its chunks' starts: multiples of
  // kAttendMaxRun, so the runs a row's softmax goes through (and its rounding) do not depend
  // on which other rows share its tile.
  auto tile_span = [&](const Tile& tile, int64_t* first_chunk, int64_t* hi) {
    int64_t lo = positions[tile.row_begin];
    *hi = lo;
    for (int64_t t = tile.row_begin; t < tile.row_end; ++t) {
      lo = std::min(lo, WindowStart(positions[t], p.sliding_window));
      *hi = std::max<int64_t>(*hi, positions[t]);
    }
    *first_chunk = lo - lo % kAttendMaxRun;
  };
  // Advances the softmax of every row of `tile` (query heads h0 .. h0 + per_item) over the
  // chunks starting at [c_begin, c_end) (through `hi`), gathering each chunk once.
  auto attend_chunks = [&](const Tile& tile, int64_t h0, int64_t c_begin, int64_t c_end,
                           int64_t hi, AttentionWorkspace& workspace) {
    thread_local std::vector<float> kv;  // one chunk's K rows, then its V rows, as float
    const size_t chunk_floats = static_cast<size_t>(kAttendMaxRun * width);
    if (kv.size() < 2 * chunk_floats) kv.resize(2 * chunk_floats);
    const GatheredChunk chunk{.k = kv.data(), .v = kv.data() + chunk_floats, .width = width};
    const int rows = static_cast<int>(tile.row_end - tile.row_begin);
    for (int64_t c0 = c_begin; c0 < c_end && c0 <= hi; c0 += kAttendMaxRun) {
      const int64_t c1 = std::min(hi + 1, c0 + kAttendMaxRun);
      GatherChunk(kernels_, layout, pool, sequences[tile.seq].block_table, h0 / group * d, c0, c1,
                  chunk);
      for (int r = 0; r < rows; ++r) {
        const int64_t t = tile.row_begin + r;
        const int64_t a = std::max(c0, WindowStart(positions[t], p.sliding_window));
        const int64_t b = std::min<int64_t>(c1, positions[t] + 1);
        if (a >= b) continue;
        for (int64_t g = 0; g < kv_heads; ++g) {
          AttentionAccumulator state = workspace.Queries(
              static_cast<int>(r * per_item + g * heads_per_kv), static_cast<int>(heads_per_kv));
          const int64_t at = (a - c0) * width + g * d;
          kernels_.attend_run(q + (t * p.num_heads + h0 + g * heads_per_kv) * d, d, p.scale,
                              chunk.k + at, chunk.v + at, width, b - a, state);
        }
      }
    }
  };

  if (!split) {
    const int64_t items = n_tiles * items_per_tile;
    // Items differ in cost (context lengths differ), so threads claim them dynamically.
    pool_.ForEachChunk(items, [&](int64_t item) {
      thread_local AttentionWorkspace workspace;
      const Tile& tile = tile_list[item / items_per_tile];
      const int64_t h0 = item % items_per_tile * per_item;
      const int rows = static_cast<int>(tile.row_end - tile.row_begin);
      workspace.Reset(rows * static_cast<int>(per_item), d);
      int64_t first_chunk, hi;
      tile_span(tile, &first_chunk, &hi);
      attend_chunks(tile, h0, first_chunk, hi + 1, hi, workspace);
      for (int r = 0; r < rows; ++r) {
        workspace.Finish(out + ((tile.row_begin + r) * p.num_heads + h0) * d,
                         r * static_cast<int>(per_item), static_cast<int>(per_item));
      }
    });
    return absl::OkStatus();
  }

  // Split-K: one item per (tile, head set, chunk); each leaves its unnormalized state.
  thread_local std::vector<SplitItem> split_items;  // the caller's, as `tiles`
  thread_local std::vector<int64_t> first_item;      // per (tile, head set): its first item
  split_items.clear();
  first_item.clear();
  for (int64_t ti = 0; ti < n_tiles; ++ti) {
    int64_t first_chunk, hi;
    tile_span(tiles[ti], &first_chunk, &hi);
    for (int64_t h = 0; h < items_per_tile; ++h) {
      first_item.push_back(static_cast<int64_t>(split_items.size()));
      for (int64_t c0 = first_chunk; c0 <= hi; c0 += kAttendMaxRun) {
        split_items.push_back({ti, h * per_item, c0, hi});
      }
    }
  }
  first_item.push_back(static_cast<int64_t>(split_items.size()));
  const int64_t state_floats = per_item * (d + 2);  // max, sum, acc per query head
  thread_local std::vector<float> states;
  states.resize(split_items.size() * static_cast<size_t>(state_floats));
  // As for `tiles`: workers must read the caller's thread_local vectors through these.
  const SplitItem* const item_list = split_items.data();
  const int64_t* const item_starts = first_item.data();
  float* const state_list = states.data();
  pool_.ForEachChunk(static_cast<int64_t>(split_items.size()), [&](int64_t item) {
    thread_local AttentionWorkspace workspace;
    const SplitItem& it = item_list[item];
    const AttentionAccumulator& s = workspace.Reset(static_cast<int>(per_item), d);
    attend_chunks(tile_list[it.tile], it.h0, it.c0, it.c0 + 1, it.hi, workspace);
    float* dst = state_list + item * state_floats;
    std::copy_n(s.max, per_item, dst);
    std::copy_n(s.sum, per_item, dst + per_item);
    std::copy_n(s.acc, per_item * d, dst + 2 * per_item);
  });
  // Merge each (row, head)'s chunk states in chunk order.
  const int64_t sets = static_cast<int64_t>(first_item.size()) - 1;
  pool_.ParallelFor(sets, 1, [&](int64_t b, int64_t e) {
    for (int64_t set = b; set < e; ++set) {
      const int64_t i0 = item_starts[set], i1 = item_starts[set + 1];
      const SplitItem& head_set = item_list[i0];
      float* o = out + (tile_list[head_set.tile].row_begin * p.num_heads + head_set.h0) * d;
      MergeChunkStates(state_list + i0 * state_floats, i1 - i0, per_item, d, o);
    }
  });
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
