// Decode attention over the paged KV cache, and the KV write (attention_shim.h). One thread
// block per (sequence, query head); the positions go by in tiles of the block's size: each thread
// scores one position (its K row read through the block table), the tile's max and sum
// update an online softmax kept in shared memory, and thread e accumulates output element e
// over the tile's V rows. Correct first: no split-K over long contexts yet.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>

#include "kernels/cuda/attention_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {
namespace {

constexpr int kThreads = 128;   // positions per tile; head_dim <= kThreads
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

__global__ void PagedDecodeKernel(PagedDecodeArgs a) {
  __shared__ float q_s[kMaxHeadDim];
  __shared__ float p_s[kThreads];
  __shared__ float scratch[kThreads / 32];
  const int64_t s = blockIdx.x / a.num_heads;
  const int64_t h = blockIdx.x % a.num_heads;
  const int64_t d = a.head_dim;
  const int64_t kvh = h / (a.num_heads / a.num_kv_heads);
  const int64_t row_elems = a.num_kv_heads * d;
  const int32_t* table = a.tables + s * a.max_blocks;
  const int64_t hi = a.context_lens[s] - 1;
  const int64_t lo =
      a.sliding_window > 0 && hi >= a.sliding_window ? hi - a.sliding_window + 1 : 0;
  if (threadIdx.x < d) q_s[threadIdx.x] = a.q[(s * a.num_heads + h) * d + threadIdx.x];
  __syncthreads();

  float running_max = -INFINITY, running_sum = 0.0f, acc = 0.0f;  // acc: element threadIdx.x
  for (int64_t t0 = lo; t0 <= hi; t0 += kThreads) {
    const int64_t pos = t0 + threadIdx.x;
    float score = -INFINITY;
    if (pos <= hi) {
      const int64_t slot = static_cast<int64_t>(table[pos / a.block_size]) * a.block_size +
                           pos % a.block_size;
      const int64_t base = slot * row_elems + kvh * d;
      float dot = 0.0f;
      for (int64_t e = 0; e < d; ++e) dot += q_s[e] * Load(a.k_pool, base + e, a.half);
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
        const int64_t pj = t0 + j;
        const int64_t slot = static_cast<int64_t>(table[pj / a.block_size]) * a.block_size +
                             pj % a.block_size;
        acc += p_s[j] * Load(a.v_pool, slot * row_elems + kvh * d + threadIdx.x, a.half);
      }
    }
    __syncthreads();  // p_s is rewritten by the next tile
  }
  if (threadIdx.x < d) a.out[(s * a.num_heads + h) * d + threadIdx.x] = acc / running_sum;
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

}  // namespace

int PagedAttentionDecode(const PagedDecodeArgs& args, Error* error) {
  if (args.head_dim <= 0 || args.head_dim > kMaxHeadDim) {
    std::snprintf(error->text, sizeof(error->text), "PagedAttentionDecode: head_dim %lld > %d",
                  static_cast<long long>(args.head_dim), kMaxHeadDim);
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (args.num_seqs <= 0) return 0;
  PagedDecodeKernel<<<static_cast<unsigned>(args.num_seqs * args.num_heads), kThreads>>>(args);
  return FinishLaunch(error);
}

int WriteKv(const float* k, const float* v, const int32_t* slots, int64_t n, int64_t row_elems,
            void* k_pool, void* v_pool, bool half, Error* error) {
  if (n <= 0) return 0;
  WriteKvKernel<<<static_cast<unsigned>(n), 128>>>(k, v, slots, row_elems, k_pool, v_pool, half);
  return FinishLaunch(error);
}

}  // namespace tessera::cuda_shim
