// CudaBackend's weights: the device copies PackWeights makes (in the file's dtype, or as FP8
// rows with their scales when the backend was made with fp8_weights), and the ops that read
// them: MatMul and MatMulAdd (choosing cuBLASLt, the FP8 tensor-core GEMM, the dequantizing
// GEMM or the GEMV by dtype and row count) and Embedding.
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_backend_internal.h"
#include "kernels/cuda/gemm_shim.h"

namespace tessera {
namespace {

using cuda_backend_internal::Reserve;
using cuda_backend_internal::SignedOp;

constexpr int64_t kGemvRows = 8;  // CudaGemv's activation rows per call
// From this many activation rows a quantized matrix is dequantized to F16 (about 3 bytes
// moved per weight) and multiplied by cuBLASLt once, rather than read by the GEMV once per 8
// rows (a Q4 row costs ~0.6 bytes per weight per read: 8 reads match the dequantization).
constexpr int64_t kDequantizedGemmRows = 64;
constexpr int64_t kDequantScratchBytes = int64_t{64} << 20;

// The matrix a MatMul or Embedding reads: the backend's device copy when the view has one,
// with its row scales when that copy is FP8.
struct DeviceMatrix {
  TensorView view;
  const float* row_scales = nullptr;
};

absl::StatusOr<DeviceMatrix> DeviceView(const TensorView& w, const char* op, const char* field) {
  if (w.packed == nullptr) return DeviceMatrix{w};
  const auto* packed = dynamic_cast<const CudaPackedWeight*>(w.packed);
  if (packed == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuda backend %s: %s.packed was made by another backend", op, field));
  }
  return DeviceMatrix{packed->view(), packed->row_scales()};
}

// The dtypes fp8_weights converts: the float ones. Block-quantized matrices already take
// fewer bits than FP8 and keep their format.
bool ConvertsToFp8(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

}  // namespace

absl::Status CudaBackend::MatMul(const float* x, int64_t n, int64_t k, const TensorView& w,
                                 float* y) {
  return Project(x, n, k, w, /*scratch=*/nullptr, y);
}

absl::Status CudaBackend::MatMulAdd(const float* x, int64_t n, int64_t k, const TensorView& w,
                                    float* scratch, float* y) {
  if (scratch == nullptr) {
    return absl::InvalidArgumentError("cuda backend MatMulAdd: scratch is null");
  }
  return Project(x, n, k, w, scratch, y);
}

absl::Status CudaBackend::Project(const float* x, int64_t n, int64_t k, const TensorView& w,
                                  float* scratch, float* y) {
  const bool accumulate = scratch != nullptr;
  RETURN_IF_ERROR(TakeStickyError());
  ASSIGN_OR_RETURN(const DeviceMatrix matrix, DeviceView(w, "MatMul", "w"));
  const TensorView& view = matrix.view;
  if (view.rank() != 2 || view.dim(1) != k || n < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuda backend MatMul: w.shape %s does not take x [n=%d, k=%d]", view.ShapeString(), n,
        k));
  }
  Sign(SignedOp::kMatMul, x, n, k, view.data, view.dtype, view.dim(0), matrix.row_scales, y,
       scratch);
  if ((view.dtype == DType::kF16 || view.dtype == DType::kBF16) && !batch_invariant_) {
    // A recording reads the GEMM's scratch.
    Sign(cuda_shim::GemmScratchGeneration(stream_.handle()));
    if (Replaying()) return absl::OkStatus();
    return CudaGemm(x, n, k, view, y, &stream_, accumulate);
  }
  const int64_t m = view.dim(0);
  // FP8 rows on tensor cores past the GEMV's rows, where the device and shape allow.
  const std::pair<int64_t, int64_t> shape(view.dim(0), k);
  if (view.dtype == DType::kF8E4M3 && n > kGemvRows && !batch_invariant_ &&
      !fp8_gemm_refused_.contains(shape)) {
    Sign(cuda_shim::GemmScratchGeneration(stream_.handle()));
    if (Replaying()) return absl::OkStatus();
    // Its output is scaled after the GEMM, so an accumulating call adds it afterwards.
    const absl::Status status =
        CudaGemmFp8(x, n, k, view, matrix.row_scales, accumulate ? scratch : y, &stream_);
    if (status.ok() && accumulate) return CudaAdd(y, scratch, n * m, y, &stream_);
    if (!absl::IsUnimplemented(status)) return status;
    // y is untouched: remember the refusal and read the rows another way below (a recording
    // of this step is then stale once, by the sign above).
    fp8_gemm_refused_.insert(shape);
  }
  if ((Traits(view.dtype).quantized || view.dtype == DType::kF8E4M3) &&
      n >= kDequantizedGemmRows && !batch_invariant_ && view.dense()) {
    // Slices of at most kDequantScratchBytes of F16 rows (at least one row).
    const int64_t halves = std::max<int64_t>(
        k, std::min<int64_t>(m * k, kDequantScratchBytes / static_cast<int64_t>(sizeof(uint16_t))));
    const size_t bytes = static_cast<size_t>(halves) * sizeof(uint16_t);
    RETURN_IF_ERROR(Reserve(&dequantized_, bytes));
    Sign(dequantized_.as<void>(), halves, cuda_shim::GemmScratchGeneration(stream_.handle()));
    if (Replaying()) return absl::OkStatus();
    return CudaGemmQuantized(x, n, k, view, y, dequantized_.as<void>(), halves, &stream_,
                             matrix.row_scales, accumulate);
  }
  if (Replaying()) return absl::OkStatus();
  for (int64_t j = 0; j < n; j += kGemvRows) {
    RETURN_IF_ERROR(CudaGemv(x + j * k, std::min(kGemvRows, n - j), k, view, y + j * m, &stream_,
                             matrix.row_scales, accumulate));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PackedWeight>> CudaBackend::PackWeights(
    std::span<const TensorView> parts) {
  return Pack(parts, /*to_fp8=*/true);
}

absl::StatusOr<std::unique_ptr<PackedWeight>> CudaBackend::PackVocabularyMatrix(
    const TensorView& w) {
  return Pack({&w, 1}, /*to_fp8=*/false);
}

absl::StatusOr<std::unique_ptr<PackedWeight>> CudaBackend::Pack(std::span<const TensorView> parts,
                                                                bool to_fp8) {
  RETURN_IF_ERROR(OutsideStep("PackWeights"));
  if (parts.empty()) return std::unique_ptr<PackedWeight>();
  const DType dtype = parts[0].dtype;
  const int64_t cols = parts[0].dim(1);
  int64_t rows = 0;
  for (const TensorView& p : parts) {
    if (p.rank() != 2 || p.dtype != dtype || p.dim(1) != cols) return std::unique_ptr<PackedWeight>();
    rows += p.dim(0);
  }
  // The kernels' dtypes only: a matrix the backend cannot read must not load.
  if (!CudaReadsWeightType(dtype) || dtype == DType::kF8E4M3) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuda backend: %s weights are not supported on CUDA", DTypeName(dtype)));
  }
  const int64_t row_bytes = parts[0].RowBytes();
  // Stage the rows (a view may be a column slice with a row stride) and copy once.
  std::vector<uint8_t> staged(static_cast<size_t>(rows * row_bytes));
  int64_t r = 0;
  for (const TensorView& p : parts) {
    for (int64_t i = 0; i < p.dim(0); ++i, ++r) {
      std::memcpy(staged.data() + r * row_bytes, p.RowPtr(i), static_cast<size_t>(row_bytes));
    }
  }
  ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::Allocate(staged.size()));
  RETURN_IF_ERROR(buffer.CopyFromHost(staged.data(), staged.size()));
  if (!to_fp8 || !fp8_weights_ || !ConvertsToFp8(dtype)) {
    return std::unique_ptr<PackedWeight>(
        std::make_unique<CudaPackedWeight>(std::move(buffer), dtype, rows, cols));
  }
  // Quantized on the device from the file's copy, which is freed once the rows are done.
  ASSIGN_OR_RETURN(DeviceBuffer fp8, DeviceBuffer::Allocate(static_cast<size_t>(rows * cols)));
  ASSIGN_OR_RETURN(DeviceBuffer scales,
                   DeviceBuffer::Allocate(static_cast<size_t>(rows) * sizeof(float)));
  RETURN_IF_ERROR(CudaQuantizeRowsFp8(TensorView{dtype, {rows, cols}, buffer.as<void>()},
                                      fp8.as<uint8_t>(), scales.as<float>(), &stream_));
  RETURN_IF_ERROR(stream_.Synchronize());
  return std::unique_ptr<PackedWeight>(std::make_unique<CudaPackedWeight>(
      std::move(fp8), DType::kF8E4M3, rows, cols, std::move(scales)));
}

absl::Status CudaBackend::Embedding(const TensorView& table, std::span<const int32_t> ids,
                                    float* out) {
  RETURN_IF_ERROR(TakeStickyError());
  ASSIGN_OR_RETURN(const DeviceMatrix matrix, DeviceView(table, "Embedding", "table"));
  const TensorView& view = matrix.view;
  const int64_t vocab = view.rank() == 2 ? view.dim(0) : 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "cuda backend Embedding: ids[%d]=%d is outside [0, %d)", i, ids[i], vocab));
    }
  }
  ASSIGN_OR_RETURN(const int32_t* device_ids, Upload(ids, &ids_));
  Sign(SignedOp::kEmbedding, view.data, view.dtype, vocab, view.dim(1), matrix.row_scales,
       ids.size(), out);
  if (Replaying()) return absl::OkStatus();
  return CudaEmbedding(view, device_ids, static_cast<int64_t>(ids.size()), out, &stream_,
                       matrix.row_scales);
}

}  // namespace tessera
