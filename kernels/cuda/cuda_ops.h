// The CUDA element-wise ops of kernels/ops.h (RMSNorm, RoPE, SiLU·mul, residual add,
// softmax), the embedding lookup and the decode GEMV over weights in their file dtype, the
// cuBLASLt GEMM for F16/BF16 weights, and attention over the paged KV cache, on device
// memory, and the device buffers and streams they run on: the pieces of the CUDA backend
// (docs/architecture.md). Same results as ReferenceBackend up to float rounding
// (tests/kernels/cuda_ops_test.cc checks them on a GPU). A call waits for its kernels unless
// it is given a stream. Errors: UNAVAILABLE when the binary has no CUDA code, INTERNAL with the runtime's
// message when an allocation, copy or launch fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/attention_rows.h"
#include "kernels/ops.h"
#include "kernels/paged_kv.h"

namespace tessera {

// An owned allocation of device memory on the current device. Move-only.
class DeviceBuffer {
 public:
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  size_t size() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  // Host <-> device copies of the first `bytes` bytes (INVALID_ARGUMENT past the end).
  [[nodiscard]] absl::Status CopyFromHost(const void* host, size_t bytes);
  [[nodiscard]] absl::Status CopyToHost(void* host, size_t bytes) const;

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// An owned allocation of page-locked host memory (the source of a recorded step's uploads,
// step_graphs.h). Move-only.
class PinnedBuffer {
 public:
  static absl::StatusOr<PinnedBuffer> Allocate(size_t bytes);
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer();

  size_t size() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A CUDA stream. Every op below given one queues its work on it and returns without
// waiting (a failure of the queued work surfaces at the next Synchronize or waiting call);
// given none (nullptr) it runs on the default stream and waits. Move-only.
class CudaStream {
 public:
  // UNAVAILABLE without CUDA, INTERNAL when the runtime refuses.
  static absl::StatusOr<CudaStream> Create();
  CudaStream() = default;
  CudaStream(CudaStream&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream();

  void* handle() const { return handle_; }  // the cudaStream_t
  // Waits for everything queued so far; INTERNAL with the runtime's message when some of
  // it failed.
  [[nodiscard]] absl::Status Synchronize() const;

 private:
  void* handle_ = nullptr;
};

// As the Backend methods of the same names; every pointer is a device pointer, and Rope's
// params.inv_freq and `positions` ([n_tokens]) are device arrays.
[[nodiscard]] absl::Status CudaRmsNorm(const float* x, const float* weight, int64_t n,
                                       int64_t dim, float eps, float* out,
                                       const CudaStream* stream = nullptr);
[[nodiscard]] absl::Status CudaSiluMul(const float* gate, const float* up, int64_t count,
                                       float* out, const CudaStream* stream = nullptr);
[[nodiscard]] absl::Status CudaSwiGluRows(const float* gate_up, int64_t n, int64_t width,
                                          float* out, const CudaStream* stream = nullptr);
[[nodiscard]] absl::Status CudaAdd(const float* a, const float* b, int64_t count, float* out,
                                   const CudaStream* stream = nullptr);
[[nodiscard]] absl::Status CudaSoftmax(float* x, int64_t n, int64_t dim,
                                       const CudaStream* stream = nullptr);
[[nodiscard]] absl::Status CudaRope(float* x, int64_t n_tokens, int64_t num_heads,
                                    const int32_t* positions, const RopeParams& params,
                                    const CudaStream* stream = nullptr);

// As Backend::ArgMaxRows with `out` in device memory (`rows` entries).
[[nodiscard]] absl::Status CudaArgMaxRows(const float* x, int64_t rows, int64_t dim,
                                          RowArgMax* out, const CudaStream* stream = nullptr);
// As Backend::TopKRows with every array in device memory (k and temperature `rows` entries,
// ids and values [rows, capacity], counts `rows`).
[[nodiscard]] absl::Status CudaTopKRows(const float* x, int64_t rows, int64_t dim,
                                        const int32_t* k, const float* temperature,
                                        int64_t capacity, int32_t* ids, float* values,
                                        int32_t* counts, const CudaStream* stream = nullptr);

// As Backend::SoftmaxDenominators with every array in device memory (`rows` entries each).
[[nodiscard]] absl::Status CudaSoftmaxDenominators(const float* x, int64_t rows, int64_t dim,
                                                   const float* temperature, double* sums,
                                                   const CudaStream* stream = nullptr);
// As Backend::EditLogits with the `count` edits and `previous` (null, or `count` floats) in
// device memory, the edits checked by the caller (CheckEditLogitsArgs) against x [rows, dim].
[[nodiscard]] absl::Status CudaEditLogits(float* x, int64_t dim, const LogitEdit* edits,
                                          int64_t count, float* previous,
                                          const CudaStream* stream = nullptr);
// As Backend::SampleRows with every array in device memory (`rows` entries each).
// token_logits: null, or `rows` floats for each drawn token's logit.
[[nodiscard]] absl::Status CudaDrawRows(const float* x, int64_t rows, int64_t dim,
                                        const float* temperature, const double* u,
                                        int32_t* tokens, float* token_logits = nullptr,
                                        const CudaStream* stream = nullptr);

// True for the weight dtypes the embedding and GEMV kernels read: F32, F16, BF16, every
// GGML block format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K; kernels/cuda/weight_element.h)
// and the backend's own F8E4M3 rows.
bool CudaReadsWeightType(DType type);

// The ops below that read a matrix take `row_scales`: for an F8E4M3 matrix, a device array
// of one float per row that multiplies it (CudaQuantizeRowsFp8); nullptr for any other
// dtype. INVALID_ARGUMENT when the two do not go together. The matmuls' `accumulate` adds
// the product into y (y += x · Wᵀ, the residual stream's update) instead of writing it.

// As Backend::Embedding for a table in device memory (TensorView::data is a device pointer;
// a CudaReadsWeightType dtype; dense rows): out[i, :] = row ids[i] dequantized. `ids`
// is a device array of n ids the caller has checked against the table's rows (on the host,
// where the ids come from).
[[nodiscard]] absl::Status CudaEmbedding(const TensorView& table, const int32_t* ids, int64_t n,
                                         float* out, const CudaStream* stream = nullptr,
                                         const float* row_scales = nullptr);

// The decode GEMV: y[j, r] = x[j, :] · W[r, :] for W [m, k] in device memory (the dtypes of
// CudaEmbedding, dense rows) and float activations x [n, k], 1 <= n <= 8, dequantizing the
// weights as they are read (float accumulation). INVALID_ARGUMENT naming the field for
// another dtype, shape or n.
[[nodiscard]] absl::Status CudaGemv(const float* x, int64_t n, int64_t k, const TensorView& w,
                                    float* y, const CudaStream* stream = nullptr,
                                    const float* row_scales = nullptr, bool accumulate = false);

// The prefill GEMM: y[j, r] = x[j, :] · W[r, :] for W [m, k] F16 or BF16 in device memory
// (dense rows) and float activations x [n, k], any n >= 1, through cuBLASLt with FP32
// accumulation. x is rounded to W's 16-bit type on the device first (as the avx512bf16 CPU
// table rounds activations for BF16 weights), so y equals the reference's MatMul of the
// rounded x up to FP32 summation order. INVALID_ARGUMENT naming the field for another dtype
// or shape; INTERNAL with cuBLASLt's status name when it fails.
[[nodiscard]] absl::Status CudaGemm(const float* x, int64_t n, int64_t k, const TensorView& w,
                                    float* y, const CudaStream* stream = nullptr,
                                    bool accumulate = false);

// The prefill GEMM for a quantized W [m, k] (a GGML block format or F8E4M3, dense rows,
// device memory): slices of W's rows are dequantized to F16 in `scratch` (device memory of
// `scratch_halves` 16-bit elements, at least k), then CudaGemm over each slice writes its
// columns of y [n, m]. For many activation rows, where the GEMV would read W once per 8 rows;
// the weights are rounded to F16 on the way (the activations as CudaGemm rounds them).
[[nodiscard]] absl::Status CudaGemmQuantized(const float* x, int64_t n, int64_t k,
                                             const TensorView& w, float* y, void* scratch,
                                             int64_t scratch_halves,
                                             const CudaStream* stream = nullptr,
                                             const float* row_scales = nullptr,
                                             bool accumulate = false);

// W [m, k] (F32, F16 or BF16, dense, device memory) as FP8 rows (kernels/cuda/fp8_e4m3.h):
// scales[r] = max |W[r, :]| / 448 and out[r, c] = E4M3(W[r, c] / scales[r]), the bits the
// host's FloatToFp8E4M3 gives. `out` holds m * k bytes and `scales` m floats, on the device.
[[nodiscard]] absl::Status CudaQuantizeRowsFp8(const TensorView& w, uint8_t* out, float* scales,
                                               const CudaStream* stream = nullptr);

// The prefill GEMM on FP8 tensor cores for an F8E4M3 W [m, k] with its row scales: each
// activation row is quantized to FP8 with its own scale, the FP8 product accumulates in FP32,
// and y [n, m] is scaled back (so a row of y depends only on its row of x). UNIMPLEMENTED,
// with y untouched, where cuBLASLt has no FP8 kernel for the shape or the device (before
// Ada, k not a multiple of 16 or m of 4): the caller then uses CudaGemv or
// CudaGemmQuantized.
[[nodiscard]] absl::Status CudaGemmFp8(const float* x, int64_t n, int64_t k, const TensorView& w,
                                       const float* row_scales, float* y,
                                       const CudaStream* stream = nullptr);

// Attention over a paged KV cache in device memory for the entries of an AttentionRows
// (attention_rows.h) whose arrays are in device memory: entry e reads q row rows[e] and
// writes out row rows[e] (rows [*, num_heads, head_dim]), attending to positions
// [window start, context_lens[e] - 1] through tables[e * max_blocks ..]. The caller has
// checked the arrays on the host (CheckPagedAttentionArgs builds them from checked input).
struct CudaAttentionEntries {
  const int32_t* rows = nullptr;
  const int32_t* tables = nullptr;
  const int32_t* context_lens = nullptr;
  int64_t num_entries = 0, max_blocks = 0;
  const int32_t* tiles = nullptr;  // [num_tiles, 2], for kPrefill
  int64_t num_tiles = 0;
};
enum class CudaAttentionKernel {
  kDecode,   // a thread block per entry and head (and piece of the window, `splits`)
  kPrefill,  // a thread block per tile of entries and head; `splits` unused
};
// The pools are `layout`'s (f32 or f16). `workspace` holds
// AttentionSplitWorkspaceFloats(...) floats when splits.num_splits > 1. INVALID_ARGUMENT
// naming the field for parameters that do not fit the layout, a head_dim over 128, or a
// split without its workspace.
[[nodiscard]] absl::Status CudaPagedAttention(const float* q, const CudaAttentionEntries& entries,
                                              CudaAttentionKernel kernel,
                                              const AttentionSplits& splits, float* workspace,
                                              const PagedKvLayout& layout, const KvPool& pool,
                                              const PagedAttentionParams& params, float* out,
                                              const CudaStream* stream = nullptr);

}  // namespace tessera
