// CpuBackend's paged-KV ops (ops.h, kernels/paged_kv.h).
//
// PagedAttention: one work item is (sequence, tile of up to kQueryTile query rows, query
// head), handed out dynamically. Each query runs a one-pass (online) softmax over chunks of
// up to kChunk positions: the chunk's scores are dot products with K rows found through the
// block table, then the running max, sum and output accumulator are rescaled once per chunk
// and the chunk's exp-weighted V rows are added with the ISA's axpy. Memory per thread:
// kChunk + head_dim floats, whatever the context length.
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
constexpr int64_t kChunk = 128;

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
  const int64_t items = static_cast<int64_t>(tiles.size()) * p.num_heads;
  // `tiles` names each thread's own copy; workers must read the caller's.
  const Tile* const tile_list = tiles.data();

  auto run = [&](int64_t item) {
    thread_local std::vector<float> scores;
    thread_local std::vector<float> acc;
    scores.resize(kChunk);
    acc.resize(static_cast<size_t>(d));
    const Tile& tile = tile_list[item / p.num_heads];
    const int64_t h = item % p.num_heads;
    const int64_t head_off = (h / group) * d;
    const std::span<const int32_t> table = sequences[tile.seq].block_table;
    auto row_offset = [&](int64_t pos) {
      return (table[pos / bs] * bs + pos % bs) * row_elems + head_off;
    };
    for (int64_t t = tile.row_begin; t < tile.row_end; ++t) {
      const float* qh = q + (t * p.num_heads + h) * d;
      const int64_t hi = positions[t];
      float running_max = -std::numeric_limits<float>::infinity();
      float running_sum = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t c0 = WindowStart(hi, p.sliding_window); c0 <= hi; c0 += kChunk) {
        const int64_t n = std::min(hi + 1 - c0, kChunk);
        float chunk_max = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          scores[j] = kernels_.dot_f32(qh, kp + row_offset(c0 + j), d) * p.scale;
          chunk_max = std::max(chunk_max, scores[j]);
        }
        if (chunk_max > running_max) {
          // exp(-inf) = 0 on the first chunk: acc and the sum are still zero anyway.
          const float factor = std::exp(running_max - chunk_max);
          if (running_sum != 0.0f) {
            for (float& a : acc) a *= factor;
            running_sum *= factor;
          }
          running_max = chunk_max;
        }
        running_sum += kernels_.exp_sum(scores.data(), running_max, n);
        for (int64_t j = 0; j < n; ++j) {
          kernels_.axpy_f32(scores[j], vp + row_offset(c0 + j), acc.data(), d);
        }
      }
      float* o = out + (t * p.num_heads + h) * d;
      const float inv = 1.0f / running_sum;
      for (int64_t e = 0; e < d; ++e) o[e] = acc[e] * inv;
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
