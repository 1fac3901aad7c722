// Plain-C++ boundary of the cuBLASLt GEMM (gemm.cu, or elementwise_stub.cc without CUDA);
// the abseil-facing API is cuda_ops.h's CudaGemm. Device pointers; same conventions and
// error codes as elementwise_shim.h. Internal to kernels/.
#pragma once

#include <cstdint>

#include "kernels/cuda/elementwise_shim.h"

namespace tessera::cuda_shim {

// y[n, m] = x[n, k] · W[m, k]ᵀ for W of `type` (kWF16 or kWBF16, dense rows), float x and
// y: x is rounded to W's type on the device (ties to even), then one cuBLASLt matmul with
// FP32 accumulation writes y in float. Kept between calls: the handle, each shape's
// descriptors and chosen algorithm, and per stream a 32 MiB workspace and the rounded-x
// buffer. Thread-safe. Row j of y starts at y + j * ldy (ldy >= m; 0 means m), so that a
// matmul over a slice of W's rows can write its columns of a wider y.
int Gemm16(const float* x, int64_t n, int64_t k, const void* w, int type, int64_t m, float* y,
           Error* error, const Launch& launch = {}, int64_t ldy = 0);

// Counts the reallocations of Gemm16's rounded-x buffer for `stream`: a recorded step
// (step_graphs.h) that read the buffer of an earlier count would read freed memory.
uint64_t GemmScratchGeneration(void* stream);

}  // namespace tessera::cuda_shim
