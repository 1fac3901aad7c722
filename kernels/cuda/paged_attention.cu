// Attention over the paged KV cache, and the KV write (attention_shim.h).
// Decode: one thread block per (entry, query head, piece of the window); the positions go
// by 128 at a time: each thread scores one position (its K row read through the block
// table), the pass's max and sum update an online softmax kept in shared memory, and thread
// i accumulates output element i over the pass's V rows. Long windows with few entries are
// cut into pieces (split-K, attention_rows.h's PlanAttentionSplits) merged by a second
// kernel, so that a batch of one still fills the GPU.
// Prefill: one thread block per (tile of up to 16 query rows of one sequence, query head);
// each K/V position is read from the cache once per tile (flash-attention's tiling, on CUDA
// cores: no tensor-core MMA yet).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>

#include "kernels/cuda/attention_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {
namespace {

constexpr int kThreads = kDecodePass;  // positions per pass; head_dim <= kThreads
constexpr int kMaxHeadDim = kThreads;

__device__ float Load(const void* pool, int64_t i, bool half) {
  return half ? __half2float(static_cast<const __half*>(pool)[i])
              : static_cast<const float*>(pool)[i];
}

// Max (or sum) of v over the block, returned to every thread; `scratch` holds a float per
// warp. Every thread of the block must call it.
template <bool kMax>
__device__ float BlockReduce(float v, float* scratch) {
  const auto combine = [](float a, float b) { return kMax ? fmaxf(a, b) : a + b; };
  for (int o = 16; o > 0; o /= 2) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // scratch may still be read from the previous reduction
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? scratch[threadIdx.x] : (kMax ? -INFINITY : 0.0f);
  if (threadIdx.x < 32) {
    for (int o = 16; o > 0; o /= 2) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  __syncthreads();
  if (threadIdx.x == 0) scratch[0] = v;
  __syncthreads();
  return scratch[0];
}

// Positions [lo, hi] an entry attends to (its window).
__device__ void EntryWindow(const PagedAttentionArgs& a, int64_t e, int64_t* lo, int64_t* hi) {
  *hi = a.context_lens[e] - 1;
  *lo = a.sliding_window > 0 && *hi >= a.sliding_window ? *hi - a.sliding_window + 1 : 0;
}

// Flat slot of position `pos` through a block table.
__device__ int64_t SlotOf(const PagedAttentionArgs& a, const int32_t* table, int64_t pos) {
  return static_cast<int64_t>(table[pos / a.block_size]) * a.block_size + pos % a.block_size;
}

// Grid (entries × heads, pieces). Piece p of entry e covers positions
// [lo + p·split_len, lo + (p + 1)·split_len - 1] ∩ [lo, hi] (all of them with one piece).
// With one piece the block writes the normalized output; otherwise its unnormalized sum,
// max and denominator go to `partials` for MergePiecesKernel.
__global__ void PagedDecodeKernel(PagedAttentionArgs a) {
  __shared__ float q_s[kMaxHeadDim];
  __shared__ float p_s[kThreads];
  __shared__ float scratch[kThreads / 32];
  const int64_t e = blockIdx.x / a.num_heads;
  const int64_t h = blockIdx.x % a.num_heads;
  const int64_t piece = blockIdx.y;
  const int64_t d = a.head_dim;
  const int64_t kvh = h / (a.num_heads / a.num_kv_heads);
  const int64_t row_elems = a.num_kv_heads * d;
  const int32_t* table = a.tables + e * a.max_blocks;
  const int64_t row = a.rows[e];
  int64_t lo, hi;
  EntryWindow(a, e, &lo, &hi);
  if (a.num_splits > 1) {
    lo += piece * a.split_len;
    hi = hi < lo + a.split_len - 1 ? hi : lo + a.split_len - 1;
  }
  if (threadIdx.x < d) q_s[threadIdx.x] = a.q[(row * a.num_heads + h) * d + threadIdx.x];
  __syncthreads();

  float running_max = -INFINITY, running_sum = 0.0f, acc = 0.0f;  // acc: element threadIdx.x
  for (int64_t t0 = lo; t0 <= hi; t0 += kThreads) {
    const int64_t pos = t0 + threadIdx.x;
    float score = -INFINITY;
    if (pos <= hi) {
      const int64_t base = SlotOf(a, table, pos) * row_elems + kvh * d;
      float dot = 0.0f;
      for (int64_t i = 0; i < d; ++i) dot += q_s[i] * Load(a.k_pool, base + i, a.half);
      score = dot * a.scale;
    }
    const float tile_max = BlockReduce<true>(score, scratch);
    const float new_max = fmaxf(running_max, tile_max);
    const float p = pos <= hi ? expf(score - new_max) : 0.0f;
    p_s[threadIdx.x] = p;
    const float tile_sum = BlockReduce<false>(p, scratch);  // also orders p_s for the reads below
    const float rescale = running_max == -INFINITY ? 0.0f : expf(running_max - new_max);
    running_sum = running_sum * rescale + tile_sum;
    running_max = new_max;
    if (threadIdx.x < d) {
      acc *= rescale;
      const int64_t n = hi - t0 + 1 < kThreads ? hi - t0 + 1 : kThreads;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t slot = SlotOf(a, table, t0 + j);
        acc += p_s[j] * Load(a.v_pool, slot * row_elems + kvh * d + threadIdx.x, a.half);
      }
    }
    __syncthreads();  // p_s is rewritten by the next tile
  }
  if (threadIdx.x >= d) return;
  if (a.num_splits == 1) {
    a.out[(row * a.num_heads + h) * d + threadIdx.x] = acc / running_sum;
    return;
  }
  float* part = a.partials + ((e * a.num_heads + h) * a.num_splits + piece) * (d + 2);
  part[threadIdx.x] = acc;  // 0 for an empty piece
  if (threadIdx.x == 0) {
    part[d] = running_max;  // -inf for an empty piece
    part[d + 1] = running_sum;
  }
}

// Grid entries × heads: out = Σ_p e^(m_p - M)·acc_p / Σ_p e^(m_p - M)·sum_p over the
// non-empty pieces (piece 0 never is: every window holds its own position).
__global__ void MergePiecesKernel(PagedAttentionArgs a) {
  const int64_t e = blockIdx.x / a.num_heads;
  const int64_t h = blockIdx.x % a.num_heads;
  const int64_t d = a.head_dim;
  if (threadIdx.x >= d) return;
  const float* parts = a.partials + (e * a.num_heads + h) * a.num_splits * (d + 2);
  float m = -INFINITY;
  for (int64_t p = 0; p < a.num_splits; ++p) m = fmaxf(m, parts[p * (d + 2) + d]);
  float sum = 0.0f, acc = 0.0f;
  for (int64_t p = 0; p < a.num_splits; ++p) {
    const float* part = parts + p * (d + 2);
    if (part[d] == -INFINITY) continue;
    const float w = expf(part[d] - m);
    sum += w * part[d + 1];
    acc += w * part[threadIdx.x];
  }
  a.out[(a.rows[e] * a.num_heads + h) * d + threadIdx.x] = acc / sum;
}

// Grid tiles × heads, kThreads threads (4 warps). The tile's query rows (entries of one
// block table) sit in shared memory; the K/V positions of the union of their windows go by
// kKvTile at a time, staged in shared memory once for all rows; warp w keeps the online
// softmax of rows w, w + 4, .. in registers (lane l holds output elements l, l + 32, ..).
constexpr int kTileRows = kPrefillTileRows;
constexpr int kKvTile = 32;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = kTileRows / kWarps;
constexpr int kElemsPerLane = kMaxHeadDim / 32;

__global__ void PagedPrefillKernel(PagedAttentionArgs a) {
  __shared__ float q_s[kTileRows][kMaxHeadDim];
  __shared__ float k_s[kKvTile][kMaxHeadDim + 1];  // +1: lanes read different rows, no bank clash
  __shared__ float v_s[kKvTile][kMaxHeadDim];
  const int64_t tile = blockIdx.x / a.num_heads;
  const int64_t h = blockIdx.x % a.num_heads;
  const int64_t first = a.tiles[2 * tile];
  const int count = a.tiles[2 * tile + 1];
  const int d = static_cast<int>(a.head_dim);
  const int64_t kvh = h / (a.num_heads / a.num_kv_heads);
  const int64_t row_elems = a.num_kv_heads * d;
  const int32_t* table = a.tables + first * a.max_blocks;  // shared by the tile's entries
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  int64_t tile_lo = INT64_MAX, tile_hi = -1;
  for (int r = 0; r < count; ++r) {
    int64_t lo, hi;
    EntryWindow(a, first + r, &lo, &hi);
    tile_lo = lo < tile_lo ? lo : tile_lo;
    tile_hi = hi > tile_hi ? hi : tile_hi;
  }
  for (int i = threadIdx.x; i < count * d; i += kThreads) {
    q_s[i / d][i % d] = a.q[(a.rows[first + i / d] * a.num_heads + h) * d + i % d];
  }
  int64_t row_lo[kRowsPerWarp], row_hi[kRowsPerWarp];
  float m[kRowsPerWarp], s[kRowsPerWarp], acc[kRowsPerWarp][kElemsPerLane];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp + kWarps * rr;
    row_lo[rr] = 0;
    row_hi[rr] = -1;
    if (r < count) EntryWindow(a, first + r, &row_lo[rr], &row_hi[rr]);
    m[rr] = -INFINITY;
    s[rr] = 0.0f;
#pragma unroll
    for (int c = 0; c < kElemsPerLane; ++c) acc[rr][c] = 0.0f;
  }

  for (int64_t t0 = tile_lo; t0 <= tile_hi; t0 += kKvTile) {
    __syncthreads();  // the previous tile's K/V (and, the first time, q_s) are done with
    for (int i = threadIdx.x; i < kKvTile * d; i += kThreads) {
      const int j = i / d, c = i % d;
      const int64_t pos = t0 + j;
      float kv = 0.0f, vv = 0.0f;
      if (pos <= tile_hi) {
        const int64_t at = SlotOf(a, table, pos) * row_elems + kvh * d + c;
        kv = Load(a.k_pool, at, a.half);
        vv = Load(a.v_pool, at, a.half);
      }
      k_s[j][c] = kv;
      v_s[j][c] = vv;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp + kWarps * rr;
      if (r >= count || t0 > row_hi[rr] || t0 + kKvTile - 1 < row_lo[rr]) continue;  // warp-uniform
      const int64_t pos = t0 + lane;
      const bool visible = pos >= row_lo[rr] && pos <= row_hi[rr];
      float score = -INFINITY;
      if (visible) {
        float dot = 0.0f;
        for (int c = 0; c < d; ++c) dot += q_s[r][c] * k_s[lane][c];
        score = dot * a.scale;
      }
      float tile_max = score;
      for (int o = 16; o > 0; o /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
      const float new_max = fmaxf(m[rr], tile_max);
      const float p = visible ? expf(score - new_max) : 0.0f;
      float tile_sum = p;
      for (int o = 16; o > 0; o /= 2) tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, o);
      const float rescale = m[rr] == -INFINITY ? 0.0f : expf(m[rr] - new_max);
      s[rr] = s[rr] * rescale + tile_sum;
      m[rr] = new_max;
#pragma unroll
      for (int c = 0; c < kElemsPerLane; ++c) acc[rr][c] *= rescale;
      for (int j = 0; j < kKvTile; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
        for (int c = 0; c < kElemsPerLane; ++c) {
          const int col = lane + 32 * c;
          if (col < d) acc[rr][c] += pj * v_s[j][col];
        }
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp + kWarps * rr;
    if (r >= count) continue;
    float* out = a.out + (a.rows[first + r] * a.num_heads + h) * d;
#pragma unroll
    for (int c = 0; c < kElemsPerLane; ++c) {
      const int col = lane + 32 * c;
      if (col < d) out[col] = acc[rr][c] / s[rr];
    }
  }
}

__global__ void WriteKvKernel(const float* k, const float* v, const int32_t* slots,
                              int64_t row_elems, void* k_pool, void* v_pool, bool half) {
  const int32_t slot = slots[blockIdx.x];
  if (slot < 0) return;
  const float* k_row = k + blockIdx.x * row_elems;
  const float* v_row = v + blockIdx.x * row_elems;
  const int64_t base = static_cast<int64_t>(slot) * row_elems;
  for (int64_t e = threadIdx.x; e < row_elems; e += blockDim.x) {
    if (half) {
      static_cast<__half*>(k_pool)[base + e] = __float2half_rn(k_row[e]);
      static_cast<__half*>(v_pool)[base + e] = __float2half_rn(v_row[e]);
    } else {
      static_cast<float*>(k_pool)[base + e] = k_row[e];
      static_cast<float*>(v_pool)[base + e] = v_row[e];
    }
  }
}

int CheckHeadDim(const PagedAttentionArgs& args, const char* what, Error* error) {
  if (args.head_dim <= 0 || args.head_dim > kMaxHeadDim) {
    std::snprintf(error->text, sizeof(error->text), "%s: head_dim %lld > %d", what,
                  static_cast<long long>(args.head_dim), kMaxHeadDim);
    return static_cast<int>(cudaErrorInvalidValue);
  }
  return 0;
}

}  // namespace

int PagedAttentionDecode(const PagedAttentionArgs& args, Error* error, const Launch& launch) {
  if (const int code = CheckHeadDim(args, "PagedAttentionDecode", error); code != 0) return code;
  if (args.num_entries <= 0) return 0;
  const unsigned blocks = static_cast<unsigned>(args.num_entries * args.num_heads);
  const cudaStream_t stream = StreamOf(launch);
  PagedDecodeKernel<<<dim3(blocks, static_cast<unsigned>(args.num_splits)), kThreads, 0, stream>>>(
      args);
  if (args.num_splits > 1) MergePiecesKernel<<<blocks, kThreads, 0, stream>>>(args);
  return FinishLaunch(error, launch);
}

int PagedAttentionPrefill(const PagedAttentionArgs& args, Error* error,
                          const Launch& launch) {
  if (const int code = CheckHeadDim(args, "PagedAttentionPrefill", error); code != 0) return code;
  if (args.num_tiles <= 0) return 0;
  PagedPrefillKernel<<<static_cast<unsigned>(args.num_tiles * args.num_heads), kThreads, 0,
                       StreamOf(launch)>>>(args);
  return FinishLaunch(error, launch);
}

int WriteKv(const float* k, const float* v, const int32_t* slots, int64_t n, int64_t row_elems,
            void* k_pool, void* v_pool, bool half, Error* error, const Launch& launch) {
  if (n <= 0) return 0;
  WriteKvKernel<<<static_cast<unsigned>(n), 128, 0, StreamOf(launch)>>>(k, v, slots, row_elems,
                                                                     k_pool, v_pool, half);
  return FinishLaunch(error, launch);
}

}  // namespace tessera::cuda_shim
