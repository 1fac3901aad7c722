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
// matmul over a slice of W's rows can write its columns of a wider y. `accumulate`: y +=
// the product instead (cuBLASLt's beta = 1, the add done in the GEMM's epilogue).
int Gemm16(const float* x, int64_t n, int64_t k, const void* w, int type, int64_t m, float* y,
           Error* error, const Launch& launch = {}, int64_t ldy = 0, bool accumulate = false);

// y[n, m] = x[n, k] · W[m, k]ᵀ on FP8 tensor cores (Ada and Hopper), for W the backend's FP8
// rows (kWF8E4M3, dense) with their device row scales w_scales [m]: each row of x is
// quantized to FP8 with its own scale (QuantizeRowsFp8), one cuBLASLt matmul of the FP8
// matrices accumulates in FP32, and y[j, r] is then multiplied by x's scale j and W's
// scale r. A row of y depends only on its own row of x. Returns kGemmFp8Unsupported, with y
// untouched, where cuBLASLt refuses FP8 for the shape or the device (k not a multiple of 16,
// m or ldy not a multiple of 4, a GPU before Ada; the refusal is kept per shape); the caller
// then reads W another way. Same scratch, threading and ldy
// as Gemm16.
inline constexpr int kGemmFp8Unsupported = 801;  // cudaErrorNotSupported
int GemmFp8(const float* x, int64_t n, int64_t k, const void* w, const float* w_scales,
            int64_t m, float* y, Error* error, const Launch& launch = {}, int64_t ldy = 0);

// Counts the reallocations of Gemm16's and GemmFp8's activation buffers for `stream`: a
// recorded step (step_graphs.h) that read the buffer of an earlier count would read freed
// memory.
uint64_t GemmScratchGeneration(void* stream);

}  // namespace tessera::cuda_shim
