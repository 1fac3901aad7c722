// The prefill GEMM through cuBLASLt (gemm_shim.h): F16/BF16 weights with activations rounded
// to the same type on the device, or FP8 weights with activations quantized to FP8 row by
// row; FP32 accumulation and output. Row-major y[n, m] = x[n, k] · W[m, k]ᵀ is, in cuBLAS's
// column-major terms, C (m x n) = op(A) · B with A = W as k x m (transposed) and B = x as
// k x n: the usual "TN" GEMM, no copies, and the only layout cuBLASLt's FP8 kernels take.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "kernels/cuda/gemm_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;
static_assert(kGemmFp8Unsupported == static_cast<int>(cudaErrorNotSupported),
              "gemm_shim.h spells cudaErrorNotSupported without the runtime's header");

int LtFail(cublasStatus_t status, const char* what, Error* error) {
  std::snprintf(error->text, sizeof(error->text), "cuBLASLt %s: %s (%s)", what,
                cublasLtGetStatusName(status), cublasLtGetStatusString(status));
  // cudaErrorUnknown keeps the shim's "non-zero is an error" contract for cuBLAS codes.
  return static_cast<int>(cudaErrorUnknown);
}

// One matmul shape's descriptors and the algorithm cuBLASLt's heuristic chose for it, kept
// for the next call of that shape (the heuristic costs more than a decode-sized matmul).
struct Plan {
  bool supported = true;  // false: cuBLASLt has no algorithm (kept, so as not to ask again)
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo = {};
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

// A stream's own workspace and converted activations: work queued on different streams must
// not share them.
struct StreamScratch {
  void* workspace = nullptr;
  void* activations = nullptr;  // x rounded to 16 bits (Gemm16) or quantized to FP8 (GemmFp8)
  size_t activation_bytes = 0;
  void* row_scales = nullptr;  // GemmFp8's scales of x's rows
  size_t row_scale_bytes = 0;
  uint64_t generation = 0;  // GemmScratchGeneration
};

// Grows one of `scratch`'s buffers to at least `bytes`, counting the reallocation.
int Reserve(StreamScratch& scratch, void** buffer, size_t* have, size_t bytes, Error* error) {
  if (*have >= bytes) return 0;
  cudaFree(*buffer);  // waits for the work that may still read it
  ++scratch.generation;
  *buffer = nullptr;
  *have = 0;
  if (cudaError_t err = cudaMalloc(buffer, bytes); err != cudaSuccess) {
    *buffer = nullptr;
    return Fail(err, error);
  }
  *have = bytes;
  return 0;
}

// What every call reuses: the handle, the plans by shape, the scratch by stream.
struct LtState {
  std::mutex mu;
  cublasLtHandle_t handle = nullptr;
  // By (type, m, n, k, row stride of y, alignment of W, alignment of y).
  std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t, uint32_t, uint32_t>,
           std::unique_ptr<Plan>>
      plans;
  std::map<cudaStream_t, StreamScratch> scratch;
};

// Distinct shapes kept before the plan cache starts over (a server sees a few weight shapes
// times the batch sizes it runs).
constexpr size_t kMaxPlans = 4096;

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

// The largest power of two up to 256 that divides `p`'s address: cuBLASLt's heuristic assumes
// 256-byte aligned matrices unless told otherwise, and the model's outputs may be offsets.
uint32_t Alignment(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

// Where cuBLASLt has no FP8 algorithm for a shape (an older GPU, or a layout its FP8
// kernels do not take).
int Fp8Unsupported(const char* why, Error* error) {
  std::snprintf(error->text, sizeof(error->text), "GemmFp8: %s", why);
  return kGemmFp8Unsupported;
}

// The plan for y[n, m] = x[n, k] · W[m, k]ᵀ with `ab_type` inputs (16-bit or FP8; a cache
// hit, or new), y's rows `ldy` apart, W and y aligned to `w_align` and `y_align` bytes (x is
// the call's own, fully aligned). An FP8 shape without an algorithm is kept as unsupported
// and answered with kGemmFp8Unsupported.
int GetPlan(LtState& s, cudaDataType_t ab_type, int64_t m, int64_t n, int64_t k, int64_t ldy,
            uint32_t w_align, uint32_t y_align, Plan** out, Error* error) {
  const bool fp8 = ab_type == CUDA_R_8F_E4M3;
  const auto key = std::make_tuple(static_cast<int>(ab_type), m, n, k, ldy, w_align, y_align);
  if (auto it = s.plans.find(key); it != s.plans.end()) {
    if (!it->second->supported) return Fp8Unsupported("no cuBLASLt algorithm for the shape", error);
    *out = it->second.get();
    return 0;
  }
  auto plan = std::make_unique<Plan>();
  cublasStatus_t st = cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "matmul descriptor", error);
  const cublasOperation_t transpose = CUBLAS_OP_T, plain = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                 sizeof(transpose));
  cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &plain, sizeof(plain));
  st = cublasLtMatrixLayoutCreate(&plan->a, ab_type, k, m, k);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&plan->b, ab_type, k, n, k);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_32F, m, n, ldy);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "matrix layouts", error);
  cublasLtMatmulPreference_t pref = nullptr;
  st = cublasLtMatmulPreferenceCreate(&pref);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "matmul preference", error);
  const size_t workspace = kWorkspaceBytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &workspace, sizeof(workspace));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                       &w_align, sizeof(w_align));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                       &y_align, sizeof(y_align));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                       &y_align, sizeof(y_align));
  cublasLtMatmulHeuristicResult_t heuristic = {};
  int found = 0;
  st = cublasLtMatmulAlgoGetHeuristic(s.handle, plan->op, plan->a, plan->b, plan->c, plan->c,
                                      pref, 1, &heuristic, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // Any refusal of an FP8 shape (no algorithm, or a layout or alignment cuBLASLt rejects)
  // sends the caller to its other kernels rather than failing the matmul.
  if (fp8 && (st != CUBLAS_STATUS_SUCCESS || found == 0)) {
    plan->supported = false;
    if (s.plans.size() >= kMaxPlans) s.plans.clear();
    s.plans.emplace(key, std::move(plan));
    return Fp8Unsupported("no cuBLASLt algorithm for the shape", error);
  }
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "algorithm heuristic", error);
  if (found == 0) return LtFail(CUBLAS_STATUS_NOT_SUPPORTED, "algorithm heuristic", error);
  plan->algo = heuristic.algo;
  if (s.plans.size() >= kMaxPlans) s.plans.clear();
  *out = plan.get();
  s.plans.emplace(key, std::move(plan));
  return 0;
}

// y[j, r] *= x_scales[j] * w_scales[r] over y [n, m] with rows ldy apart.
__global__ void ScaleRowsKernel(float* y, int64_t n, int64_t m, int64_t ldy,
                                const float* x_scales, const float* w_scales) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n * m;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i / m, r = i - j * m;
    y[j * ldy + r] *= x_scales[j] * w_scales[r];
  }
}

unsigned GridFor(int64_t count) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((count + 255) / 256, 4096)));
}

// The handle and `stream`'s workspace, created on first use; callers hold s.mu.
int Prepare(LtState& s, cudaStream_t stream, StreamScratch** scratch, Error* error) {
  if (s.handle == nullptr) {
    if (cublasStatus_t st = cublasLtCreate(&s.handle); st != CUBLAS_STATUS_SUCCESS) {
      s.handle = nullptr;
      return LtFail(st, "create", error);
    }
  }
  StreamScratch& own = s.scratch[stream];
  if (own.workspace == nullptr) {
    if (cudaError_t err = cudaMalloc(&own.workspace, kWorkspaceBytes); err != cudaSuccess) {
      own.workspace = nullptr;
      return Fail(err, error);
    }
  }
  *scratch = &own;
  return 0;
}

}  // namespace

int Gemm16(const float* x, int64_t n, int64_t k, const void* w, int type, int64_t m, float* y,
           Error* error, const Launch& launch, int64_t ldy, bool accumulate) {
  if (type != kWF16 && type != kWBF16) {
    std::snprintf(error->text, sizeof(error->text), "Gemm16: weights must be F16 or BF16");
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (ldy == 0) ldy = m;
  if (ldy < m) {
    std::snprintf(error->text, sizeof(error->text), "Gemm16: ldy %lld is below m %lld",
                  static_cast<long long>(ldy), static_cast<long long>(m));
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (n <= 0 || m <= 0 || k <= 0) return 0;
  const cudaStream_t stream = StreamOf(launch);
  LtState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  StreamScratch* scratch = nullptr;
  if (int code = Prepare(s, stream, &scratch, error); code != 0) return code;
  if (int code = Reserve(*scratch, &scratch->activations, &scratch->activation_bytes,
                         static_cast<size_t>(n * k) * sizeof(uint16_t), error);
      code != 0) {
    return code;
  }
  const bool bf16 = type == kWBF16;
  const int64_t count = n * k;
  RoundKernel<<<GridFor(count), 256, 0, stream>>>(x, count, bf16,
                                                  static_cast<uint16_t*>(scratch->activations));
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return Fail(err, error);

  Plan* plan = nullptr;
  if (int code = GetPlan(s, bf16 ? CUDA_R_16BF : CUDA_R_16F, m, n, k, ldy, Alignment(w),
                         Alignment(y), &plan, error);
      code != 0) {
    return code;
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cublasStatus_t st =
      cublasLtMatmul(s.handle, plan->op, &alpha, w, plan->a, scratch->activations, plan->b,
                     &beta, y, plan->c, y, plan->c, &plan->algo, scratch->workspace,
                     kWorkspaceBytes, stream);
  if (st != CUBLAS_STATUS_SUCCESS) return LtFail(st, "matmul", error);
  return FinishLaunch(error, launch);
}

int GemmFp8(const float* x, int64_t n, int64_t k, const void* w, const float* w_scales,
            int64_t m, float* y, Error* error, const Launch& launch, int64_t ldy) {
  if (ldy == 0) ldy = m;
  if (ldy < m || w_scales == nullptr) {
    std::snprintf(error->text, sizeof(error->text),
                  "GemmFp8: ldy %lld is below m %lld, or the weights' scales are missing",
                  static_cast<long long>(ldy), static_cast<long long>(m));
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (n <= 0 || m <= 0 || k <= 0) return 0;
  // cuBLASLt's FP8 kernels need every matrix's rows 16-byte aligned: k FP8 bytes for W and
  // x, m and ldy floats for y.
  if (k % 16 != 0) return Fp8Unsupported("k is not a multiple of 16", error);
  if (m % 4 != 0 || ldy % 4 != 0) return Fp8Unsupported("m is not a multiple of 4", error);
  const cudaStream_t stream = StreamOf(launch);
  LtState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  StreamScratch* scratch = nullptr;
  if (int code = Prepare(s, stream, &scratch, error); code != 0) return code;
  // The plan first: an unsupported shape must return before anything is queued.
  Plan* plan = nullptr;
  if (int code = GetPlan(s, CUDA_R_8F_E4M3, m, n, k, ldy, Alignment(w), Alignment(y), &plan,
                         error);
      code != 0) {
    return code;
  }
  if (int code = Reserve(*scratch, &scratch->activations, &scratch->activation_bytes,
                         static_cast<size_t>(n * k), error);
      code != 0) {
    return code;
  }
  if (int code = Reserve(*scratch, &scratch->row_scales, &scratch->row_scale_bytes,
                         static_cast<size_t>(n) * sizeof(float), error);
      code != 0) {
    return code;
  }
  auto* x8 = static_cast<uint8_t*>(scratch->activations);
  auto* x_scales = static_cast<float*>(scratch->row_scales);
  if (int code = QuantizeRowsFp8(x, kWF32, n, k, x8, x_scales, error,
                                 Launch{stream, /*wait=*/false});
      code != 0) {
    return code;
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t st =
      cublasLtMatmul(s.handle, plan->op, &alpha, w, plan->a, x8, plan->b, &beta, y, plan->c, y,
                     plan->c, &plan->algo, scratch->workspace, kWorkspaceBytes, stream);
  if (st != CUBLAS_STATUS_SUCCESS) {
    // Only the quantized activations (scratch) were written: y is untouched, so the caller
    // can still read W another way, and this shape is not tried again.
    plan->supported = false;
    LtFail(st, "FP8 matmul", error);
    return kGemmFp8Unsupported;
  }
  ScaleRowsKernel<<<GridFor(n * m), 256, 0, stream>>>(y, n, m, ldy, x_scales, w_scales);
  return FinishLaunch(error, launch);
}

uint64_t GemmScratchGeneration(void* stream) {
  LtState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.scratch.find(static_cast<cudaStream_t>(stream));
  return it == s.scratch.end() ? 0 : it->second.generation;
}

}  // namespace tessera::cuda_shim
