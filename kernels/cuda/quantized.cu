// The CUDA kernels that read weights in their file dtype (elementwise_shim.h): embedding
// rows and the decode GEMV, for F32, F16, BF16, every GGML block format and the backend's
// FP8 rows (times their row scales), through weight_element.h's readers (element by element,
// or a chunk of 8 sharing its scales), whose layouts the host tests check against
// kernels/cpu/dequantize; and the quantization of rows to FP8 (fp8_e4m3.h).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>

#include "kernels/cuda/elementwise_shim.h"
#include "kernels/cuda/launch_status.cuh"
#include "kernels/cuda/weight_element.h"

namespace tessera::cuda_shim {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxGemvRows = 8;  // activation rows per GEMV call

int Invalid(Error* error, const char* what) {
  std::snprintf(error->text, sizeof(error->text), "%s", what);
  return static_cast<int>(cudaErrorInvalidValue);
}

// FP8 rows mean nothing without their scales.
bool ScalesMissing(int type, const float* row_scales) {
  return type == kWF8E4M3 && row_scales == nullptr;
}

// Row r's scale: row_scales[r] for FP8 rows, 1 for every other type (whose rows carry
// their own scales or need none).
__device__ inline float RowScale(const float* row_scales, int64_t r) {
  return row_scales != nullptr ? row_scales[r] : 1.0f;
}

__global__ void EmbeddingKernel(const uint8_t* table, int type, const float* row_scales,
                                int64_t cols, int64_t row_bytes, const int32_t* ids, float* out) {
  const int64_t id = ids[blockIdx.x];
  const uint8_t* row = table + id * row_bytes;
  const float scale = RowScale(row_scales, id);
  float* dst = out + blockIdx.x * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    dst[c] = WeightElement(row, type, c) * scale;
  }
}

// One warp per weight row; lane l reads chunks l, l + 32, ... of kWeightChunk elements
// (WeightChunk: a chunk's scales decoded once), so a warp reads 32 consecutive chunks of the
// row at a time. Rows of a float type whose length is not a whole number of chunks finish
// element by element.
__global__ void GemvKernel(const uint8_t* w, int type, const float* row_scales, int64_t m,
                           int64_t k, int64_t row_bytes, const float* x, int n, float* y,
                           bool accumulate) {
  const int64_t r = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= m) return;
  const uint8_t* row = w + r * row_bytes;
  float acc[kMaxGemvRows] = {};
  const int64_t whole = k / kWeightChunk * kWeightChunk;
  for (int64_t c0 = static_cast<int64_t>(lane) * kWeightChunk; c0 < whole;
       c0 += kWarp * kWeightChunk) {
    float wv[kWeightChunk];
    WeightChunk(row, type, c0, wv);
#pragma unroll
    for (int j = 0; j < kMaxGemvRows; ++j) {  // a constant bound keeps acc in registers
      if (j >= n) break;
      const float* xj = x + j * k + c0;
      float sum = 0.0f;
#pragma unroll
      for (int i = 0; i < kWeightChunk; ++i) sum += wv[i] * xj[i];
      acc[j] += sum;
    }
  }
  for (int64_t c = whole + lane; c < k; c += kWarp) {
    const float wv = WeightElement(row, type, c);
#pragma unroll
    for (int j = 0; j < kMaxGemvRows; ++j) {
      if (j < n) acc[j] += wv * x[j * k + c];
    }
  }
#pragma unroll
  for (int j = 0; j < kMaxGemvRows; ++j) {
    if (j >= n) break;
    float v = acc[j];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) {
      const float product = v * RowScale(row_scales, r);
      y[j * m + r] = accumulate ? y[j * m + r] + product : product;
    }
  }
}

// Rows of W dequantized to F16, a chunk of kWeightChunk elements per thread (k is a whole
// number of chunks: block formats have blocks of 32 or 256).
__global__ void DequantizeToF16Kernel(const uint8_t* w, int type, const float* row_scales,
                                      int64_t rows, int64_t k, int64_t row_bytes, __half* out) {
  const int64_t chunks_per_row = k / kWeightChunk;
  const int64_t chunks = rows * chunks_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < chunks;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / chunks_per_row;
    const int64_t c0 = (i - r * chunks_per_row) * kWeightChunk;
    float wv[kWeightChunk];
    WeightChunk(w + r * row_bytes, type, c0, wv);
    const float scale = RowScale(row_scales, r);
    __half* dst = out + r * k + c0;
#pragma unroll
    for (int j = 0; j < kWeightChunk; ++j) dst[j] = __float2half_rn(wv[j] * scale);
  }
}

constexpr int kQuantizeThreads = 256;

// One thread block per row (grid-stride over rows): the row's largest magnitude, its scale
// (Fp8RowScale), then each element divided by the scale and encoded. The same float
// operations as the host's reference (a maximum is exact, and so is the IEEE division).
__global__ void QuantizeRowsFp8Kernel(const uint8_t* src, int type, int64_t rows, int64_t k,
                                      int64_t row_bytes, uint8_t* out, float* scales) {
  __shared__ float warp_max[kQuantizeThreads / kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const uint8_t* row = src + r * row_bytes;
    float m = 0.0f;
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {
      m = fmaxf(m, fabsf(WeightElement(row, type, c)));
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    }
    if (threadIdx.x % kWarp == 0) warp_max[threadIdx.x / kWarp] = m;
    __syncthreads();
    float absmax = 0.0f;
    for (int w = 0; w < kQuantizeThreads / kWarp; ++w) absmax = fmaxf(absmax, warp_max[w]);
    const float scale = Fp8RowScale(absmax);
    if (threadIdx.x == 0) scales[r] = scale;
    uint8_t* dst = out + r * k;
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {
      dst[c] = FloatToFp8E4M3(__fdiv_rn(WeightElement(row, type, c), scale));
    }
    __syncthreads();  // warp_max is rewritten by the next row
  }
}

}  // namespace

int QuantizeRowsFp8(const void* src, int type, int64_t rows, int64_t k, uint8_t* out,
                    float* scales, Error* error, const Launch& launch) {
  const int64_t row_bytes = WeightRowBytes(type, k);
  if (row_bytes == 0 || type == kWF8E4M3) {
    return Invalid(error, "QuantizeRowsFp8: unsupported source dtype or a row not made of whole "
                          "blocks");
  }
  if (rows <= 0 || k <= 0) return 0;
  const int64_t blocks = std::min<int64_t>(rows, 65535);
  QuantizeRowsFp8Kernel<<<static_cast<unsigned>(blocks), kQuantizeThreads, 0, StreamOf(launch)>>>(
      static_cast<const uint8_t*>(src), type, rows, k, row_bytes, out, scales);
  return FinishLaunch(error, launch);
}

int DequantizeToF16(const void* w, int type, const float* row_scales, int64_t rows, int64_t k,
                    void* out, Error* error, const Launch& launch) {
  const int64_t row_bytes = WeightRowBytes(type, k);
  if (row_bytes == 0 || k % kWeightChunk != 0) {
    return Invalid(error,
                   "DequantizeToF16: unsupported weight dtype, or rows not made of whole chunks");
  }
  if (ScalesMissing(type, row_scales)) {
    return Invalid(error, "DequantizeToF16: FP8 rows need their scales");
  }
  const int64_t chunks = rows * (k / kWeightChunk);
  if (chunks <= 0) return 0;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((chunks + kThreads - 1) / kThreads, 65535 * 16);
  DequantizeToF16Kernel<<<static_cast<unsigned>(blocks), kThreads, 0, StreamOf(launch)>>>(
      static_cast<const uint8_t*>(w), type, row_scales, rows, k, row_bytes,
      static_cast<__half*>(out));
  return FinishLaunch(error, launch);
}

int Embedding(const void* table, int type, const float* row_scales, int64_t cols,
              const int32_t* ids, int64_t n, float* out, Error* error, const Launch& launch) {
  const int64_t row_bytes = WeightRowBytes(type, cols);
  if (row_bytes == 0) {
    return Invalid(error, "Embedding: unsupported table dtype or a row not made of whole blocks");
  }
  if (ScalesMissing(type, row_scales)) {
    return Invalid(error, "Embedding: FP8 rows need their scales");
  }
  if (n <= 0) return 0;
  const auto* bytes = static_cast<const uint8_t*>(table);
  EmbeddingKernel<<<static_cast<unsigned>(n), 256, 0, StreamOf(launch)>>>(
      bytes, type, row_scales, cols, row_bytes, ids, out);
  return FinishLaunch(error, launch);
}

int Gemv(const void* w, int type, const float* row_scales, int64_t m, int64_t k, const float* x,
         int64_t n, float* y, bool accumulate, Error* error, const Launch& launch) {
  const int64_t row_bytes = WeightRowBytes(type, k);
  if (row_bytes == 0) {
    return Invalid(error, "Gemv: unsupported weight dtype or a row not made of whole blocks");
  }
  if (n < 0 || n > kMaxGemvRows) return Invalid(error, "Gemv: n must lie in [0, 8]");
  if (ScalesMissing(type, row_scales)) return Invalid(error, "Gemv: FP8 rows need their scales");
  if (n == 0 || m <= 0) return 0;
  constexpr int kThreads = 128;  // 4 rows per block
  const int64_t blocks = (m + kThreads / kWarp - 1) / (kThreads / kWarp);
  const auto* bytes = static_cast<const uint8_t*>(w);
  GemvKernel<<<static_cast<unsigned>(blocks), kThreads, 0, StreamOf(launch)>>>(
      bytes, type, row_scales, m, k, row_bytes, x, static_cast<int>(n), y, accumulate);
  return FinishLaunch(error, launch);
}

}  // namespace tessera::cuda_shim
