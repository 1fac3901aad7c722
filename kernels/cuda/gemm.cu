// The prefill GEMM through cuBLASLt (gemm_shim.h): F16/BF16 weights, activations rounded to
// the same type on the device, FP32 accumulation and output. Row-major y[n, m] = x[n, k] ·
// W[m, k]ᵀ is, in cuBLAS's column-major terms, C (m x n) = op(A) · B with A = W as k x m
// (transposed) and B = x as k x n: the usual "TN" GEMM, no copies.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "kernels/cuda/gemm_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

int LtFail(cublasStatus_t status, const char* what, Error* error) {
  std::snprintf(error->text, sizeof(error->text), "cuBLASLt %s: %s (%s)", what,
                cublasLtGetStatusName(status), cublasLtGetStatusString(status));
  // cudaErrorUnknown keeps the shim's "non-zero is an error" contract for cuBLAS codes.
  return static_cast<int>(cudaErrorUnknown);
}

// What every call reuses: the handle, the workspace and the rounded activations.
struct LtState {
  std::mutex mu;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  void* x16 = nullptr;
  size_t x16_bytes = 0;
};

LtState& State() {
  static LtState* state = new LtState();  // never destroyed: the CUDA context may go first
  return *state;
}

__global__ void RoundKernel(const float* x, int64_t count, bool bf16, uint16_t* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x[i]))
                  : __half_as_ushort(__float2half_rn(x[i]));
  }
}

// RAII for the per-call descriptors.
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descriptors() {
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

}  // namespace

int Gemm16(const float* x, int64_t n, int64_t k, const void* w, int type, int64_t m, float* y,
           Error* error) {
  if (type != kWF16 && type != kWBF16) {
    std::snprintf(error->text, sizeof(error->text), "Gemm16: weights must be F16 or BF16");
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (n <= 0 || m <= 0 || k <= 0) return 0;
  LtState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.handle == nullptr) {
    if (cublasStatus_t st = cublasLtCreate(&s.handle); st != CUBLAS_STATUS_SUCCESS) {
      s.handle = nullptr;
      return LtFail(st, "create", error);
    }
    if (cudaError_t err = cudaMalloc(&s.workspace, kWorkspaceBytes); err != cudaSuccess) {
      s.workspace = nullptr;
      return Fail(err, error);
    }
  }
  const size_t x16_bytes = static_cast<size_t>(n * k) * sizeof(uint16_t);
  if (s.x16_bytes < x16_bytes) {
    cudaFree(s.x16);
    s.x16 = nullptr;
    s.x16_bytes = 0;
    if (cudaError_t err = cudaMalloc(&s.x16, x16_bytes); err != cudaSuccess) {
      s.x16 = nullptr;
      return Fail(err, error);
    }
    s.x16_bytes = x16_bytes;
  }
  const bool bf16 = type == kWBF16;
  const int64_t count = n * k;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((count + 255) / 256, 4096));
  RoundKernel<<<blocks, 256>>>(x, count, bf16, static_cast<uint16_t*>(s.x16));
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return Fail(err, error);

  const cudaDataType_t ab_type = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  Descriptors d;
  cublasStatus_t st = cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "matmul descriptor", error);
  const cublasOperation_t transpose = CUBLAS_OP_T, plain = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose));
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &plain, sizeof(plain));
  st = cublasLtMatrixLayoutCreate(&d.a, ab_type, k, m, k);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&d.b, ab_type, k, n, k);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32F, m, n, m);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&d.pref);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "matrix layouts", error);
  const size_t workspace = kWorkspaceBytes;
  cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &workspace, sizeof(workspace));
  cublasLtMatmulHeuristicResult_t heuristic = {};
  int found = 0;
  st = cublasLtMatmulAlgoGetHeuristic(s.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &heuristic,
                                      &found);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "algorithm heuristic", error);
  if (found == 0) return LtFail(CUBLAS_STATUS_NOT_SUPPORTED, "algorithm heuristic", error);
  const float alpha = 1.0f, beta = 0.0f;
  st = cublasLtMatmul(s.handle, d.op, &alpha, w, d.a, s.x16, d.b, &beta, y, d.c, y, d.c,
                      &heuristic.algo, s.workspace, workspace, /*stream=*/0);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "matmul", error);
  return FinishLaunch(error);
}

}  // namespace tessera::cuda_shim
