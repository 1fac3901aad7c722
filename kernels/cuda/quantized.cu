// The CUDA kernels that read weights in their file dtype (elementwise_shim.h): embedding
// rows and the decode GEMV, for F32, F16, BF16, Q8_0, Q4_0 and Q4_1. Blocks are GGML's
// (kernels/cpu/quant_blocks.h): 32 elements, an fp16 scale (and minimum for Q4_1).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/cuda/elementwise_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxGemvRows = 8;  // activation rows per GEMV call

int Invalid(Error* error, const char* what) {
  std::snprintf(error->text, sizeof(error->text), "%s", what);
  return static_cast<int>(cudaErrorInvalidValue);
}

__device__ float Half(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ float Bf16(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

// Element c of a row of `type` (c < the row's length).
__device__ float Element(const uint8_t* row, int type, int64_t c) {
  switch (type) {
    case kWF32: return reinterpret_cast<const float*>(row)[c];
    case kWF16: return Half(reinterpret_cast<const uint16_t*>(row)[c]);
    case kWBF16: return Bf16(reinterpret_cast<const uint16_t*>(row)[c]);
    case kWQ8_0: {
      const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(row)[c / 32];
      return Half(b.d) * static_cast<float>(b.qs[c % 32]);
    }
    case kWQ4_0: {
      const BlockQ4_0& b = reinterpret_cast<const BlockQ4_0*>(row)[c / 32];
      const int t = static_cast<int>(c % 32);
      const int q = t < 16 ? (b.qs[t] & 15) : (b.qs[t - 16] >> 4);
      return Half(b.d) * static_cast<float>(q - 8);
    }
    default: {  // kWQ4_1
      const BlockQ4_1& b = reinterpret_cast<const BlockQ4_1*>(row)[c / 32];
      const int t = static_cast<int>(c % 32);
      const int q = t < 16 ? (b.qs[t] & 15) : (b.qs[t - 16] >> 4);
      return Half(b.d) * static_cast<float>(q) + Half(b.m);
    }
  }
}

// Bytes of a row of `cols` elements; 0 for a type these kernels do not read.
int64_t RowBytes(int type, int64_t cols) {
  switch (type) {
    case kWF32: return cols * 4;
    case kWF16:
    case kWBF16: return cols * 2;
    case kWQ8_0: return cols / 32 * static_cast<int64_t>(sizeof(BlockQ8_0));
    case kWQ4_0: return cols / 32 * static_cast<int64_t>(sizeof(BlockQ4_0));
    case kWQ4_1: return cols / 32 * static_cast<int64_t>(sizeof(BlockQ4_1));
    default: return 0;
  }
}

bool Blocked(int type) { return type == kWQ8_0 || type == kWQ4_0 || type == kWQ4_1; }

__global__ void EmbeddingKernel(const uint8_t* table, int type, int64_t cols, int64_t row_bytes,
                                const int32_t* ids, float* out) {
  const uint8_t* row = table + static_cast<int64_t>(ids[blockIdx.x]) * row_bytes;
  float* dst = out + blockIdx.x * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = Element(row, type, c);
}

// One warp per weight row; lane l reads elements l, l + 32, ... (for block formats: the
// lane's element of every block), so a warp reads each block once, coalesced.
__global__ void GemvKernel(const uint8_t* w, int type, int64_t m, int64_t k, int64_t row_bytes,
                           const float* x, int n, float* y) {
  const int64_t r = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= m) return;
  const uint8_t* row = w + r * row_bytes;
  float acc[kMaxGemvRows] = {};
  for (int64_t c = lane; c < k; c += kWarp) {
    const float wv = Element(row, type, c);
    for (int j = 0; j < n; ++j) acc[j] += wv * x[j * k + c];
  }
  for (int j = 0; j < n; ++j) {
    float v = acc[j];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) y[j * m + r] = v;
  }
}

}  // namespace

int Embedding(const void* table, int type, int64_t cols, const int32_t* ids, int64_t n,
              float* out, Error* error) {
  const int64_t row_bytes = RowBytes(type, cols);
  if (row_bytes == 0 || (Blocked(type) && cols % 32 != 0)) {
    return Invalid(error, "Embedding: unsupported table dtype or a row not made of whole blocks");
  }
  if (n <= 0) return 0;
  EmbeddingKernel<<<static_cast<unsigned>(n), 256>>>(static_cast<const uint8_t*>(table), type,
                                                     cols, row_bytes, ids, out);
  return FinishLaunch(error);
}

int Gemv(const void* w, int type, int64_t m, int64_t k, const float* x, int64_t n, float* y,
         Error* error) {
  const int64_t row_bytes = RowBytes(type, k);
  if (row_bytes == 0 || (Blocked(type) && k % 32 != 0)) {
    return Invalid(error, "Gemv: unsupported weight dtype or a row not made of whole blocks");
  }
  if (n < 0 || n > kMaxGemvRows) return Invalid(error, "Gemv: n must lie in [0, 8]");
  if (n == 0 || m <= 0) return 0;
  constexpr int kThreads = 128;  // 4 rows per block
  const int64_t blocks = (m + kThreads / kWarp - 1) / (kThreads / kWarp);
  GemvKernel<<<static_cast<unsigned>(blocks), kThreads>>>(static_cast<const uint8_t*>(w), type, m,
                                                          k, row_bytes, x, static_cast<int>(n), y);
  return FinishLaunch(error);
}

}  // namespace tessera::cuda_shim
