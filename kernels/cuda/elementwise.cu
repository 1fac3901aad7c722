// The CUDA element-wise kernels behind elementwise_shim.h. Row reductions (RMSNorm,
// softmax) run one block per row with warp-shuffle sums; RoPE computes its angles in double,
// as the reference does, since position x frequency reaches thousands of radians where a
// float angle is off by ~1e-3.
#include <cuda_runtime.h>

#include <cstdio>

#include "kernels/cuda/elementwise_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {
namespace {

constexpr int kBlock = 256;

int Blocks(int64_t count) {
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

__device__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum (or max) of v over the block, returned to every thread. `scratch` holds 32 floats.
template <bool kMax>
__device__ float BlockReduce(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = kMax ? WarpMax(v) : WarpSum(v);
  __syncthreads();  // scratch may still be read from a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  v = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  return kMax ? WarpMax(v) : WarpSum(v);
}

__global__ void RmsNormKernel(const float* x, const float* weight, int64_t dim, float eps,
                              float* out) {
  __shared__ float scratch[32];
  const float* row = x + blockIdx.x * dim;
  float* dst = out + blockIdx.x * dim;
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss += row[j] * row[j];
  ss = BlockReduce<false>(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = row[j] * inv * weight[j];
}

__global__ void SiluMulKernel(const float* gate, const float* up, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// SiluMulKernel's arithmetic on the halves of each row of gate_up [rows, 2 * width].
__global__ void SwiGluRowsKernel(const float* gate_up, int64_t width, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / width, col = i - row * width;
    const float g = gate_up[2 * row * width + col];
    out[i] = g / (1.0f + expf(-g)) * gate_up[(2 * row + 1) * width + col];
  }
}

__global__ void AddKernel(const float* a, const float* b, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

__global__ void SoftmaxKernel(float* x, int64_t dim) {
  __shared__ float scratch[32];
  float* row = x + blockIdx.x * dim;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = BlockReduce<true>(mx, scratch);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) sum += expf(row[j] - mx);
  sum = BlockReduce<false>(sum, scratch);
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) row[j] = expf(row[j] - mx) * inv;
}

// One thread per (token, head, rotated pair).
__global__ void RopeKernel(float* x, int64_t n_tokens, int64_t num_heads,
                           const int32_t* positions, int64_t head_dim, int64_t half,
                           const float* inv_freq, float mscale, bool halves) {
  const int64_t total = n_tokens * num_heads * half;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k % half;
    const int64_t head = k / half;  // token * num_heads + h
    const int64_t t = head / num_heads;
    float* v = x + head * head_dim;
    double s, c;
    sincos(static_cast<double>(positions[t]) * inv_freq[i], &s, &c);
    c *= mscale;
    s *= mscale;
    const int64_t a = halves ? i : 2 * i;
    const int64_t b = halves ? i + half : 2 * i + 1;
    const double x0 = v[a], x1 = v[b];
    v[a] = static_cast<float>(x0 * c - x1 * s);
    v[b] = static_cast<float>(x0 * s + x1 * c);
  }
}

// The better of two (index, value) candidates by common/row_argmax.h's rule: no index (-1)
// loses, then the larger value, then the lower index.
__device__ ArgMaxPair Better(ArgMaxPair a, ArgMaxPair b) {
  if (a.index < 0) return b;
  if (b.index < 0) return a;
  if (b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
  return a;
}

// One block per row: each thread its strided elements (ascending, so a strict > keeps the
// lowest index), then the warps' and the block's candidates.
__global__ void ArgMaxRowsKernel(const float* x, int64_t dim, ArgMaxPair* out) {
  __shared__ ArgMaxPair warp_best[kBlock / 32];
  const float* row = x + blockIdx.x * dim;
  ArgMaxPair best{-1, 0.0f};
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = row[i];
    if (isnan(v)) continue;
    if (best.index < 0 || v > best.value) best = {static_cast<int32_t>(i), v};
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const ArgMaxPair other{__shfl_xor_sync(0xffffffffu, best.index, offset),
                           __shfl_xor_sync(0xffffffffu, best.value, offset)};
    best = Better(best, other);
  }
  if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kBlock / 32; ++w) best = Better(best, warp_best[w]);
    out[blockIdx.x] = best;
  }
}

}  // namespace

int StreamCreate(void** stream, Error* error) {
  cudaStream_t s = nullptr;
  // A blocking stream: work on the legacy default stream (DeviceBuffer's synchronous copies,
  // cudaMemset) stays ordered with it.
  const cudaError_t err = cudaStreamCreate(&s);
  *stream = s;
  return err == cudaSuccess ? 0 : Fail(err, error);
}

void StreamDestroy(void* stream) {
  if (stream != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream));
}

int StreamSynchronize(void* stream, Error* error) {
  const cudaError_t err = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  return err == cudaSuccess ? 0 : Fail(err, error);
}

int Malloc(void** ptr, size_t bytes, Error* error) {
  const cudaError_t err = cudaMalloc(ptr, bytes);
  return err == cudaSuccess ? 0 : Fail(err, error);
}

void Free(void* ptr) { cudaFree(ptr); }

int CopyToDevice(void* dst, const void* src, size_t bytes, Error* error) {
  const cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
  return err == cudaSuccess ? 0 : Fail(err, error);
}

int CopyToHost(void* dst, const void* src, size_t bytes, Error* error) {
  const cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
  return err == cudaSuccess ? 0 : Fail(err, error);
}

int Copy(void* dst, const void* src, size_t bytes, Error* error, const Launch& launch) {
  return FinishCall(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, StreamOf(launch)), error,
                    launch);
}

int Copy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
           Error* error, const Launch& launch) {
  return FinishCall(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDefault,
                                      StreamOf(launch)),
                    error, launch);
}

int ArgMaxRows(const float* x, int64_t rows, int64_t dim, ArgMaxPair* out, Error* error,
               const Launch& launch) {
  if (rows <= 0) return 0;
  ArgMaxRowsKernel<<<static_cast<unsigned>(rows), kBlock, 0, StreamOf(launch)>>>(x, dim, out);
  return FinishLaunch(error, launch);
}

int Zero(void* ptr, size_t bytes, Error* error, const Launch& launch) {
  return FinishCall(cudaMemsetAsync(ptr, 0, bytes, StreamOf(launch)), error, launch);
}

int RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* out,
            Error* error, const Launch& launch) {
  if (n <= 0) return 0;
  RmsNormKernel<<<static_cast<unsigned>(n), kBlock, 0, StreamOf(launch)>>>(x, weight, dim, eps,
                                                                         out);
  return FinishLaunch(error, launch);
}

int SiluMul(const float* gate, const float* up, int64_t count, float* out, Error* error,
            const Launch& launch) {
  if (count <= 0) return 0;
  SiluMulKernel<<<Blocks(count), kBlock, 0, StreamOf(launch)>>>(gate, up, count, out);
  return FinishLaunch(error, launch);
}

int SwiGluRows(const float* gate_up, int64_t rows, int64_t width, float* out, Error* error,
               const Launch& launch) {
  const int64_t count = rows * width;
  if (count <= 0) return 0;
  SwiGluRowsKernel<<<Blocks(count), kBlock, 0, StreamOf(launch)>>>(gate_up, width, count, out);
  return FinishLaunch(error, launch);
}

int Add(const float* a, const float* b, int64_t count, float* out, Error* error,
        const Launch& launch) {
  if (count <= 0) return 0;
  AddKernel<<<Blocks(count), kBlock, 0, StreamOf(launch)>>>(a, b, count, out);
  return FinishLaunch(error, launch);
}

int Softmax(float* x, int64_t n, int64_t dim, Error* error, const Launch& launch) {
  if (n <= 0 || dim <= 0) return 0;
  SoftmaxKernel<<<static_cast<unsigned>(n), kBlock, 0, StreamOf(launch)>>>(x, dim);
  return FinishLaunch(error, launch);
}

int Rope(float* x, int64_t n_tokens, int64_t num_heads, const int32_t* positions,
         int64_t head_dim, int64_t rope_dim, const float* inv_freq, float mscale, bool halves,
         Error* error, const Launch& launch) {
  const int64_t half = rope_dim / 2;
  const int64_t total = n_tokens * num_heads * half;
  if (total <= 0) return 0;
  RopeKernel<<<Blocks(total), kBlock, 0, StreamOf(launch)>>>(x, n_tokens, num_heads, positions,
                                                             head_dim, half, inv_freq, mscale,
                                                             halves);
  return FinishLaunch(error, launch);
}

}  // namespace tessera::cuda_shim
