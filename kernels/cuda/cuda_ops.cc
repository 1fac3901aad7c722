#include "kernels/cuda/cuda_ops.h"

#include <algorithm>
#include <cstddef>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_runtime_shim.h"
#include "kernels/cuda/attention_shim.h"
#include "kernels/cuda/elementwise_shim.h"
#include "kernels/cuda/gemm_shim.h"
#include "kernels/cuda/graph_shim.h"

namespace tessera {
namespace {

absl::Status FromCode(int code, const cuda_shim::Error& error, const char* what) {
  if (code == 0) return absl::OkStatus();
  if (!cuda_shim::CompiledIn()) return absl::UnavailableError(error.text);
  return absl::InternalError(absl::StrFormat("CUDA %s: %s", what, error.text));
}

// The shim's Launch for an op given `stream` (queued) or none (default stream, waiting).
cuda_shim::Launch LaunchOn(const CudaStream* stream) {
  if (stream == nullptr) return {};
  return {.stream = stream->handle(), .wait = false};
}

}  // namespace

absl::StatusOr<CudaStream> CudaStream::Create() {
  CudaStream stream;
  cuda_shim::Error error;
  const int code = cuda_shim::StreamCreate(&stream.handle_, &error);
  if (code != 0) {
    stream.handle_ = nullptr;
    return FromCode(code, error, "creating a stream");
  }
  return stream;
}

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  if (this != &other) {
    cuda_shim::StreamDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

CudaStream::~CudaStream() { cuda_shim::StreamDestroy(handle_); }

absl::Status CudaStream::Synchronize() const {
  cuda_shim::Error error;
  return FromCode(cuda_shim::StreamSynchronize(handle_, &error), error, "stream");
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer buffer;
  cuda_shim::Error error;
  const int code = cuda_shim::Malloc(&buffer.ptr_, bytes, &error);
  if (code != 0) {
    buffer.ptr_ = nullptr;
    return FromCode(code, error, absl::StrFormat("allocating %d bytes", bytes).c_str());
  }
  buffer.bytes_ = bytes;
  return buffer;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    cuda_shim::Free(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { cuda_shim::Free(ptr_); }

absl::StatusOr<PinnedBuffer> PinnedBuffer::Allocate(size_t bytes) {
  PinnedBuffer buffer;
  cuda_shim::Error error;
  const int code = cuda_shim::HostAlloc(&buffer.ptr_, bytes, &error);
  if (code != 0) {
    buffer.ptr_ = nullptr;
    return FromCode(code, error, absl::StrFormat("pinning %d bytes", bytes).c_str());
  }
  buffer.bytes_ = bytes;
  return buffer;
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    cuda_shim::HostFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

PinnedBuffer::~PinnedBuffer() { cuda_shim::HostFree(ptr_); }

absl::Status DeviceBuffer::CopyFromHost(const void* host, size_t bytes) {
  if (bytes > bytes_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("DeviceBuffer: copying %d bytes into %d", bytes, bytes_));
  }
  cuda_shim::Error error;
  return FromCode(cuda_shim::CopyToDevice(ptr_, host, bytes, &error), error, "copy to device");
}

absl::Status DeviceBuffer::CopyToHost(void* host, size_t bytes) const {
  if (bytes > bytes_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("DeviceBuffer: copying %d bytes out of %d", bytes, bytes_));
  }
  cuda_shim::Error error;
  return FromCode(cuda_shim::CopyToHost(host, ptr_, bytes, &error), error, "copy to host");
}

absl::Status CudaRmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                         float* out, const CudaStream* stream) {
  cuda_shim::Error error;
  return FromCode(cuda_shim::RmsNorm(x, weight, n, dim, eps, out, &error, LaunchOn(stream)), error, "RmsNorm");
}

absl::Status CudaSiluMul(const float* gate, const float* up, int64_t count, float* out,
                         const CudaStream* stream) {
  cuda_shim::Error error;
  return FromCode(cuda_shim::SiluMul(gate, up, count, out, &error, LaunchOn(stream)), error, "SiluMul");
}

absl::Status CudaSwiGluRows(const float* gate_up, int64_t n, int64_t width, float* out,
                            const CudaStream* stream) {
  cuda_shim::Error error;
  return FromCode(cuda_shim::SwiGluRows(gate_up, n, width, out, &error, LaunchOn(stream)), error,
                  "SwiGluRows");
}

absl::Status CudaAdd(const float* a, const float* b, int64_t count, float* out,
                     const CudaStream* stream) {
  cuda_shim::Error error;
  return FromCode(cuda_shim::Add(a, b, count, out, &error, LaunchOn(stream)), error, "Add");
}

absl::Status CudaSoftmax(float* x, int64_t n, int64_t dim, const CudaStream* stream) {
  cuda_shim::Error error;
  return FromCode(cuda_shim::Softmax(x, n, dim, &error, LaunchOn(stream)), error, "Softmax");
}

absl::Status CudaRope(float* x, int64_t n_tokens, int64_t num_heads, const int32_t* positions,
                      const RopeParams& p, const CudaStream* stream) {
  if (p.rope_dim < 0 || p.rope_dim > p.head_dim || p.rope_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaRope: params.rope_dim=%d must be even and within head_dim=%d", p.rope_dim,
        p.head_dim));
  }
  cuda_shim::Error error;
  return FromCode(cuda_shim::Rope(x, n_tokens, num_heads, positions, p.head_dim, p.rope_dim,
                                  p.inv_freq, p.mscale, p.style == RopeStyle::kHalves, &error,
                                  LaunchOn(stream)),
                  error, "Rope");
}

namespace {

// The shim's weight type for `view` read with `row_scales`, or INVALID_ARGUMENT naming
// `op`'s field.
absl::StatusOr<int> WeightTypeOf(const char* op, const char* field, const TensorView& view,
                                 const float* row_scales = nullptr) {
  if (view.rank() != 2 || !view.dense()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s must be a dense matrix, got shape %s", op, field, view.ShapeString()));
  }
  if (view.Cols() % Traits(view.dtype).block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s has %d columns, not whole %s blocks", op, field, view.Cols(),
        DTypeName(view.dtype)));
  }
  if (!CudaReadsWeightType(view.dtype)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s dtype %s is not supported on CUDA", op, field, DTypeName(view.dtype)));
  }
  if ((view.dtype == DType::kF8E4M3) != (row_scales != nullptr)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s is %s and %s row scales: only f8_e4m3 rows have them, and they need them", op,
        field, DTypeName(view.dtype), row_scales != nullptr ? "has" : "has no"));
  }
  return static_cast<int>(view.dtype);
}

}  // namespace

static_assert(sizeof(RowArgMax) == sizeof(cuda_shim::ArgMaxPair) &&
              offsetof(RowArgMax, index) == offsetof(cuda_shim::ArgMaxPair, index) &&
              offsetof(RowArgMax, value) == offsetof(cuda_shim::ArgMaxPair, value));

absl::Status CudaArgMaxRows(const float* x, int64_t rows, int64_t dim, RowArgMax* out,
                            const CudaStream* stream) {
  if (rows < 0 || dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("CudaArgMaxRows: rows=%d and dim=%d must not be negative", rows, dim));
  }
  cuda_shim::Error error;
  return FromCode(cuda_shim::ArgMaxRows(x, rows, dim, reinterpret_cast<cuda_shim::ArgMaxPair*>(out),
                                        &error, LaunchOn(stream)),
                  error, "ArgMaxRows");
}

absl::Status CudaTopKRows(const float* x, int64_t rows, int64_t dim, const int32_t* k,
                          const float* temperature, int64_t capacity, int32_t* ids,
                          float* values, int32_t* counts, const CudaStream* stream) {
  if (rows < 0 || dim < 0 || capacity < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaTopKRows: rows=%d, dim=%d and capacity=%d must not be negative", rows, dim,
        capacity));
  }
  cuda_shim::Error error;
  return FromCode(cuda_shim::TopKRows(x, rows, dim, k, temperature, capacity, ids, values,
                                      counts, &error, LaunchOn(stream)),
                  error, "TopKRows");
}

absl::Status CudaSoftmaxDenominators(const float* x, int64_t rows, int64_t dim,
                                     const float* temperature, double* sums,
                                     const CudaStream* stream) {
  if (rows < 0 || dim < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaSoftmaxDenominators: rows=%d and dim=%d must not be negative", rows, dim));
  }
  cuda_shim::Error error;
  return FromCode(cuda_shim::SoftmaxDenominators(x, rows, dim, temperature, sums, &error,
                                                 LaunchOn(stream)),
                  error, "SoftmaxDenominators");
}

absl::Status CudaDrawRows(const float* x, int64_t rows, int64_t dim, const float* temperature,
                          const double* u, int32_t* tokens, float* token_logits,
                          const CudaStream* stream) {
  if (rows < 0 || dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("CudaDrawRows: rows=%d and dim=%d must not be negative", rows, dim));
  }
  cuda_shim::Error error;
  return FromCode(
      cuda_shim::DrawRows(x, rows, dim, temperature, u, tokens, token_logits, &error,
                          LaunchOn(stream)),
      error,
      "DrawRows");
}

absl::Status CudaEditLogits(float* x, int64_t dim, const LogitEdit* edits, int64_t count,
                            float* previous, const CudaStream* stream) {
  if (dim < 0 || count < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("CudaEditLogits: dim=%d and count=%d must not be negative", dim, count));
  }
  cuda_shim::Error error;
  return FromCode(
      cuda_shim::EditLogits(x, dim, edits, count, previous, &error, LaunchOn(stream)), error,
      "EditLogits");
}

bool CudaReadsWeightType(DType type) {
  return cuda_shim::WeightBlockElems(static_cast<int>(type)) > 0;
}

absl::Status CudaEmbedding(const TensorView& table, const int32_t* ids, int64_t n, float* out,
                           const CudaStream* stream, const float* row_scales) {
  absl::StatusOr<int> type = WeightTypeOf("CudaEmbedding", "table", table, row_scales);
  if (!type.ok()) return type.status();
  cuda_shim::Error error;
  return FromCode(cuda_shim::Embedding(table.data, *type, row_scales, table.dim(1), ids, n, out,
                                       &error, LaunchOn(stream)),
                  error, "Embedding");
}

absl::Status CudaGemv(const float* x, int64_t n, int64_t k, const TensorView& w, float* y,
                      const CudaStream* stream, const float* row_scales, bool accumulate) {
  absl::StatusOr<int> type = WeightTypeOf("CudaGemv", "w", w, row_scales);
  if (!type.ok()) return type.status();
  if (w.dim(1) != k) {
    return absl::InvalidArgumentError(
        absl::StrFormat("CudaGemv: w has %d columns, x has k=%d", w.dim(1), k));
  }
  if (n < 1 || n > 8) {
    return absl::InvalidArgumentError(absl::StrFormat("CudaGemv: n=%d must lie in [1, 8]", n));
  }
  cuda_shim::Error error;
  return FromCode(
      cuda_shim::Gemv(w.data, *type, row_scales, w.dim(0), k, x, n, y, accumulate, &error,
                      LaunchOn(stream)),
      error, "Gemv");
}

absl::Status CudaGemm(const float* x, int64_t n, int64_t k, const TensorView& w, float* y,
                      const CudaStream* stream, bool accumulate) {
  absl::StatusOr<int> type = WeightTypeOf("CudaGemm", "w", w);
  if (!type.ok()) return type.status();
  if (*type != cuda_shim::kWF16 && *type != cuda_shim::kWBF16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaGemm: w dtype %s is not f16 or bf16 (quantized weights go through CudaGemv)",
        DTypeName(w.dtype)));
  }
  if (w.dim(1) != k) {
    return absl::InvalidArgumentError(
        absl::StrFormat("CudaGemm: w has %d columns, x has k=%d", w.dim(1), k));
  }
  if (n < 1) return absl::InvalidArgumentError(absl::StrFormat("CudaGemm: n=%d must be >= 1", n));
  cuda_shim::Error error;
  return FromCode(cuda_shim::Gemm16(x, n, k, w.data, *type, w.dim(0), y, &error, LaunchOn(stream),
                                    /*ldy=*/0, accumulate),
                  error, "Gemm");
}

absl::Status CudaGemmQuantized(const float* x, int64_t n, int64_t k, const TensorView& w,
                               float* y, void* scratch, int64_t scratch_halves,
                               const CudaStream* stream, const float* row_scales,
                               bool accumulate) {
  absl::StatusOr<int> type = WeightTypeOf("CudaGemmQuantized", "w", w, row_scales);
  if (!type.ok()) return type.status();
  if (!Traits(w.dtype).quantized && w.dtype != DType::kF8E4M3) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaGemmQuantized: w dtype %s is not a quantized format", DTypeName(w.dtype)));
  }
  if (w.dim(1) != k || n < 1 || scratch_halves < k) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaGemmQuantized: w has %d columns for k=%d, n=%d must be >= 1, and the scratch "
        "(%d halves) must hold a row",
        w.dim(1), k, n, scratch_halves));
  }
  const int64_t m = w.dim(0);
  int64_t slice = std::min(m, scratch_halves / k);
  // Whole 64-row steps keep y + r0 256-byte aligned for cuBLASLt's fastest kernels.
  if (slice >= 64) slice -= slice % 64;
  const int64_t row_bytes = w.RowBytes();
  for (int64_t r0 = 0; r0 < m; r0 += slice) {
    const int64_t rows = std::min(slice, m - r0);
    cuda_shim::Error error;
    RETURN_IF_ERROR(FromCode(
        cuda_shim::DequantizeToF16(static_cast<const uint8_t*>(w.data) + r0 * row_bytes, *type,
                                   row_scales != nullptr ? row_scales + r0 : nullptr, rows, k,
                                   scratch, &error, LaunchOn(stream)),
        error, "DequantizeToF16"));
    RETURN_IF_ERROR(FromCode(cuda_shim::Gemm16(x, n, k, scratch, cuda_shim::kWF16, rows, y + r0,
                                               &error, LaunchOn(stream), m, accumulate),
                             error, "Gemm"));
  }
  return absl::OkStatus();
}

absl::Status CudaQuantizeRowsFp8(const TensorView& w, uint8_t* out, float* scales,
                                 const CudaStream* stream) {
  absl::StatusOr<int> type = WeightTypeOf("CudaQuantizeRowsFp8", "w", w);
  if (!type.ok()) return type.status();
  if (w.dtype != DType::kF32 && w.dtype != DType::kF16 && w.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaQuantizeRowsFp8: w dtype %s is not f32, f16 or bf16", DTypeName(w.dtype)));
  }
  cuda_shim::Error error;
  return FromCode(cuda_shim::QuantizeRowsFp8(w.data, *type, w.dim(0), w.dim(1), out, scales,
                                             &error, LaunchOn(stream)),
                  error, "QuantizeRowsFp8");
}

absl::Status CudaGemmFp8(const float* x, int64_t n, int64_t k, const TensorView& w,
                         const float* row_scales, float* y, const CudaStream* stream) {
  if (row_scales == nullptr) {
    return absl::InvalidArgumentError("CudaGemmFp8: row_scales are missing");
  }
  absl::StatusOr<int> type = WeightTypeOf("CudaGemmFp8", "w", w, row_scales);
  if (!type.ok()) return type.status();
  if (w.dim(1) != k || n < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CudaGemmFp8: w has %d columns for k=%d, and n=%d must be >= 1", w.dim(1), k, n));
  }
  cuda_shim::Error error;
  const int code = cuda_shim::GemmFp8(x, n, k, w.data, row_scales, w.dim(0), y, &error,
                                      LaunchOn(stream));
  if (code == cuda_shim::kGemmFp8Unsupported) {
    return absl::UnimplementedError(absl::StrFormat("CUDA %s", error.text));
  }
  return FromCode(code, error, "GemmFp8");
}

absl::Status CudaPagedAttention(const float* q, const CudaAttentionEntries& e,
                                CudaAttentionKernel kernel, const AttentionSplits& splits,
                                float* workspace, const PagedKvLayout& layout, const KvPool& pool,
                                const PagedAttentionParams& p, float* out,
                                const CudaStream* stream) {
  constexpr const char* kOp = "CudaPagedAttention";
  if (layout.elem_bytes() == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: layout.dtype %s is not f32 or f16", kOp, DTypeName(layout.dtype)));
  }
  if (p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 ||
      p.num_kv_heads != layout.num_kv_heads || p.head_dim != layout.head_dim) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: params.num_heads=%d, params.num_kv_heads=%d, params.head_dim=%d do not fit the "
        "layout (num_kv_heads=%d, head_dim=%d)",
        kOp, p.num_heads, p.num_kv_heads, p.head_dim, layout.num_kv_heads, layout.head_dim));
  }
  if (p.head_dim > 128 || e.num_entries < 0 || e.max_blocks <= 0 || p.sliding_window < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: params.head_dim=%d (at most 128), entries.num_entries=%d, entries.max_blocks=%d, "
        "params.sliding_window=%d out of range",
        kOp, p.head_dim, e.num_entries, e.max_blocks, p.sliding_window));
  }
  if (e.num_entries > 0 &&
      (e.rows == nullptr || e.tables == nullptr || e.context_lens == nullptr)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: entries.rows, entries.tables and entries.context_lens are needed for %d entries",
        kOp, e.num_entries));
  }
  const bool prefill = kernel == CudaAttentionKernel::kPrefill;
  if (prefill && e.num_tiles > 0 && e.tiles == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: entries.tiles is null for %d tiles", kOp, e.num_tiles));
  }
  if (!prefill && splits.num_splits > 1 &&
      (workspace == nullptr || splits.split_len <= 0 || splits.num_splits > kMaxAttentionSplits)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: splits.num_splits=%d needs splits.split_len > 0 (got %d), at most %d pieces and a "
        "workspace",
        kOp, splits.num_splits, splits.split_len, kMaxAttentionSplits));
  }
  cuda_shim::PagedAttentionArgs args;
  args.q = q;
  args.rows = e.rows;
  args.tables = e.tables;
  args.context_lens = e.context_lens;
  args.k_pool = pool.k;
  args.v_pool = pool.v;
  args.out = out;
  args.num_entries = e.num_entries;
  args.max_blocks = e.max_blocks;
  args.num_heads = p.num_heads;
  args.num_kv_heads = p.num_kv_heads;
  args.head_dim = p.head_dim;
  args.block_size = layout.block_size;
  args.sliding_window = p.sliding_window;
  args.scale = p.scale;
  args.half = layout.dtype == DType::kF16;
  cuda_shim::Error error;
  if (prefill) {
    args.tiles = e.tiles;
    args.num_tiles = e.num_tiles;
    return FromCode(cuda_shim::PagedAttentionPrefill(args, &error, LaunchOn(stream)), error,
                    "PagedAttentionPrefill");
  }
  args.num_splits = std::max<int64_t>(splits.num_splits, 1);
  args.split_len = splits.split_len;
  args.partials = workspace;
  return FromCode(cuda_shim::PagedAttentionDecode(args, &error, LaunchOn(stream)), error, "PagedAttentionDecode");
}

}  // namespace tessera
