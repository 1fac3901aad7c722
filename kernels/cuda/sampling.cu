// The CUDA kernels that sample where the logits are (elementwise_shim.h): TopKRows, top-k
// sampling's candidates of each row (common/row_top_k.h's rule), so a sampled row sends back
// tens of candidates instead of the whole vocabulary; SoftmaxDenominators, which top-p needs
// besides its candidates; and DrawRows, plain sampling's inverse-CDF draw (common/
// row_sample.h's rule), so it sends back one token; EditLogits, the penalties and biases of
// a few tokens per row (kernels/logit_edit.h) applied before any of those.
//
// TopKRows: one block per row. The k-th largest of row / temperature is found by radix
// selection over an order-preserving 32-bit key, 8 bits a pass (4 passes, each a shared
// histogram of the elements that share the bits chosen so far); the candidates are then written in index
// order: each thread owns a contiguous stretch of the row, and a block-wide scan of the
// threads' counts gives each its first output slot. No atomics decide an output position,
// so the result is the same on every run.
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/functional>

#include "kernels/cuda/elementwise_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {
namespace {

constexpr int kTopKThreads = 256;
constexpr int kRadixBins = 256;

// Unsigned keys in the floats' order (NaN excluded): negatives flipped whole, positives with
// the sign bit set. -0 is read as +0, as float comparison does.
__device__ uint32_t OrderKey(float v) {
  if (v == 0.0f) v = 0.0f;
  const uint32_t bits = __float_as_uint(v);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

__global__ void TopKRowsKernel(const float* x, int64_t dim, const int32_t* k,
                               const float* temperature, int64_t capacity, int32_t* ids,
                               float* values, int32_t* counts) {
  using Scan = cub::BlockScan<int64_t, kTopKThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ unsigned int histogram[kRadixBins];
  __shared__ uint32_t chosen_prefix;
  __shared__ int64_t chosen_remaining;
  __shared__ int has_nan;

  const int64_t r = blockIdx.x;
  const int64_t want = k[r];
  if (want <= 0 || dim <= 0) {
    if (threadIdx.x == 0) counts[r] = 0;
    return;
  }
  const float* row = x + r * dim;
  const float t = temperature[r];
  if (threadIdx.x == 0) has_nan = 0;

  // Radix selection of the key of the k-th largest: after each pass, `prefix` holds its
  // top bits and `remaining` its rank among the elements that share them.
  uint32_t prefix = 0, mask = 0;
  int64_t remaining = want < dim ? want : dim;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < kRadixBins; b += blockDim.x) histogram[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const float v = row[i];
      if (isnan(v)) {
        has_nan = 1;
        continue;
      }
      const uint32_t key = OrderKey(v / t);
      if ((key & mask) == prefix) atomicAdd(&histogram[(key >> shift) & 0xFFu], 1u);
    }
    __syncthreads();
    if (has_nan != 0) break;  // the same value in every thread after the barrier
    if (threadIdx.x == 0) {
      int64_t above = 0;  // elements in the bins above `digit`
      int digit = kRadixBins - 1;
      for (; digit > 0; --digit) {
        if (above + histogram[digit] >= remaining) break;
        above += histogram[digit];
      }
      chosen_prefix = prefix | (static_cast<uint32_t>(digit) << shift);
      chosen_remaining = remaining - above;
    }
    __syncthreads();
    prefix = chosen_prefix;
    remaining = chosen_remaining;
    mask |= 0xFFu << shift;
  }
  if (has_nan != 0) {
    if (threadIdx.x == 0) counts[r] = -1;
    return;
  }

  // Every element whose key is at least the k-th's, in index order.
  const uint32_t threshold = prefix;
  const int64_t stretch = (dim + blockDim.x - 1) / blockDim.x;
  const int64_t begin = threadIdx.x * stretch;
  const int64_t end = begin + stretch < dim ? begin + stretch : dim;
  int64_t mine = 0;
  for (int64_t i = begin; i < end; ++i) mine += OrderKey(row[i] / t) >= threshold ? 1 : 0;
  int64_t slot = 0, total = 0;
  Scan(scan_storage).ExclusiveSum(mine, slot, total);
  for (int64_t i = begin; i < end && slot < capacity; ++i) {
    if (OrderKey(row[i] / t) < threshold) continue;
    ids[r * capacity + slot] = static_cast<int32_t>(i);
    values[r * capacity + slot] = row[i];
    ++slot;
  }
  if (threadIdx.x == 0) counts[r] = static_cast<int32_t>(total);
}

// DrawRows: one block per row. The row's largest value, then each thread's float64 weight
// sum over a contiguous stretch, a block-wide exclusive scan of those sums for each
// stretch's starting point, and every thread walks its stretch as the host walks the row;
// the lowest index found wins. The weights are summed in a fixed order, so the draw is the
// same on every run; it equals the host's sequential walk except where u * total lands
// within float64 rounding of a boundary.
__global__ void DrawRowsKernel(const float* x, int64_t dim, const float* temperature,
                               const double* u, int32_t* tokens, float* token_logits) {
  using FloatReduce = cub::BlockReduce<float, kTopKThreads>;
  using IntReduce = cub::BlockReduce<int64_t, kTopKThreads>;
  using Scan = cub::BlockScan<double, kTopKThreads>;
  __shared__ union {
    typename FloatReduce::TempStorage max;
    typename IntReduce::TempStorage index;
    typename Scan::TempStorage scan;
  } storage;
  __shared__ float row_max;
  __shared__ int64_t first_found;

  const int64_t r = blockIdx.x;
  const double draw = u[r];
  if (draw < 0 || dim <= 0) {
    if (threadIdx.x == 0) tokens[r] = -1;
    return;
  }
  const float* row = x + r * dim;
  const float t = temperature[r];
  float local_max = -INFINITY;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = row[i] / t;
    if (v > local_max) local_max = v;  // NaN never compares greater
  }
  const float block_max = FloatReduce(storage.max).Reduce(local_max, cuda::maximum<>{});
  if (threadIdx.x == 0) row_max = block_max;
  __syncthreads();
  const double max = row_max;
  if (!isfinite(max)) {
    if (threadIdx.x == 0) tokens[r] = -1;
    return;
  }

  const int64_t stretch = (dim + blockDim.x - 1) / blockDim.x;
  const int64_t begin = threadIdx.x * stretch;
  const int64_t end = begin + stretch < dim ? begin + stretch : dim;
  double mine = 0;
  for (int64_t i = begin; i < end; ++i) {
    const float v = row[i] / t;
    mine += isnan(v) ? 0.0 : exp(static_cast<double>(v) - max);
  }
  double before = 0, total = 0;
  __syncthreads();  // storage is reused
  Scan(storage.scan).ExclusiveSum(mine, before, total);
  const double target = draw * total;
  int64_t found = INT64_MAX, last_positive = -1;
  double cumulative = before;
  for (int64_t i = begin; i < end; ++i) {
    const float v = row[i] / t;
    const double w = isnan(v) ? 0.0 : exp(static_cast<double>(v) - max);
    if (w <= 0) continue;
    cumulative += w;
    last_positive = i;
    if (cumulative > target) {
      found = i;
      break;
    }
  }
  __syncthreads();
  const int64_t lowest = IntReduce(storage.index).Reduce(found, cuda::minimum<>{});
  if (threadIdx.x == 0) first_found = lowest;
  __syncthreads();
  int64_t token = first_found;
  if (token == INT64_MAX) {
    // Rounding left the target at the total: the last token that has weight.
    token = IntReduce(storage.index).Reduce(last_positive, cuda::maximum<>{});
  }
  if (threadIdx.x != 0) return;  // the reductions' results are thread 0's
  tokens[r] = static_cast<int32_t>(token);
  if (token_logits != nullptr) token_logits[r] = row[token];
}

// One block per row: the row's largest value over the temperature, then the float64 sum of
// the weights, each thread over its strided elements, added in a fixed tree order.
__global__ void SoftmaxDenominatorsKernel(const float* x, int64_t dim, const float* temperature,
                                          double* sums) {
  using FloatReduce = cub::BlockReduce<float, kTopKThreads>;
  using DoubleReduce = cub::BlockReduce<double, kTopKThreads>;
  __shared__ union {
    typename FloatReduce::TempStorage max;
    typename DoubleReduce::TempStorage sum;
  } storage;
  __shared__ float row_max;
  const int64_t r = blockIdx.x;
  const float t = temperature[r];
  if (!(t > 0) || dim <= 0) {
    if (threadIdx.x == 0) sums[r] = 0;
    return;
  }
  const float* row = x + r * dim;
  float local_max = -INFINITY;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = row[i] / t;
    if (v > local_max) local_max = v;
  }
  const float block_max = FloatReduce(storage.max).Reduce(local_max, cuda::maximum<>{});
  if (threadIdx.x == 0) row_max = block_max;
  __syncthreads();
  const double max = row_max;
  if (!isfinite(max)) {
    if (threadIdx.x == 0) sums[r] = 0;
    return;
  }
  double mine = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = row[i] / t;
    mine += isnan(v) ? 0.0 : exp(static_cast<double>(v) - max);
  }
  const double total = DoubleReduce(storage.sum).Sum(mine);
  if (threadIdx.x == 0) sums[r] = total;
}

// One thread per edit: the (row, token) pairs are distinct, so no two threads share a logit.
__global__ void EditLogitsKernel(float* x, int64_t dim, const LogitEdit* edits, int64_t count,
                                 float* previous) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const LogitEdit e = edits[i];
  float* at = x + static_cast<int64_t>(e.row) * dim + e.token;
  const float value = *at;
  if (previous != nullptr) previous[i] = value;
  *at = ApplyLogitEdit(value, e);
}

}  // namespace

int SoftmaxDenominators(const float* x, int64_t rows, int64_t dim, const float* temperature,
                        double* sums, Error* error, const Launch& launch) {
  if (rows <= 0) return 0;
  SoftmaxDenominatorsKernel<<<static_cast<unsigned>(rows), kTopKThreads, 0, StreamOf(launch)>>>(
      x, dim, temperature, sums);
  return FinishLaunch(error, launch);
}

int DrawRows(const float* x, int64_t rows, int64_t dim, const float* temperature,
             const double* u, int32_t* tokens, float* token_logits, Error* error,
             const Launch& launch) {
  if (rows <= 0) return 0;
  DrawRowsKernel<<<static_cast<unsigned>(rows), kTopKThreads, 0, StreamOf(launch)>>>(
      x, dim, temperature, u, tokens, token_logits);
  return FinishLaunch(error, launch);
}

int EditLogits(float* x, int64_t dim, const LogitEdit* edits, int64_t count, float* previous,
               Error* error, const Launch& launch) {
  if (count <= 0) return 0;
  constexpr int kThreads = 256;
  const auto blocks = static_cast<unsigned>((count + kThreads - 1) / kThreads);
  EditLogitsKernel<<<blocks, kThreads, 0, StreamOf(launch)>>>(x, dim, edits, count, previous);
  return FinishLaunch(error, launch);
}

int TopKRows(const float* x, int64_t rows, int64_t dim, const int32_t* k,
             const float* temperature, int64_t capacity, int32_t* ids, float* values,
             int32_t* counts, Error* error, const Launch& launch) {
  if (rows <= 0) return 0;
  TopKRowsKernel<<<static_cast<unsigned>(rows), kTopKThreads, 0, StreamOf(launch)>>>(
      x, dim, k, temperature, capacity, ids, values, counts);
  return FinishLaunch(error, launch);
}

}  // namespace tessera::cuda_shim
