#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/attention_rows.h"
#include "kernels/cuda/attention_shim.h"
#include "kernels/cuda/cuda_backend_internal.h"
#include "kernels/cuda/device_probe.h"
#include "kernels/cuda/elementwise_shim.h"
#include "kernels/cuda/gemm_shim.h"
#include "kernels/paged_kv.h"
#include "kernels/row_sampling_args.h"

namespace tessera {

namespace cuda_backend_internal {

absl::Status Reserve(DeviceBuffer* buffer, size_t bytes) {
  if (buffer->size() >= bytes) return absl::OkStatus();
  *buffer = DeviceBuffer();
  ASSIGN_OR_RETURN(*buffer, DeviceBuffer::Allocate(bytes));
  return absl::OkStatus();
}

}  // namespace cuda_backend_internal

namespace {

using cuda_backend_internal::Reserve;
using cuda_backend_internal::SignedOp;

absl::Status CopyStatus(int code, const cuda_shim::Error& error, const char* what) {
  if (code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("cuda backend %s: %s", what, error.text));
}

// A copy of n bytes within or between memory spaces (cudaMemcpyDefault) on `launch`.
absl::Status Copy(void* dst, const void* src, size_t bytes, const char* what,
                  const cuda_shim::Launch& launch) {
  cuda_shim::Error error;
  return CopyStatus(cuda_shim::Copy(dst, src, bytes, &error, launch), error, what);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(CudaBackendOptions options) {
  ASSIGN_OR_RETURN(const int devices, CudaDeviceCount());
  if (devices <= 0) return absl::UnavailableError("cuda backend: no CUDA device is visible");
  ASSIGN_OR_RETURN(const CudaDeviceInfo info, ProbeCudaDevice(0));
  auto backend = std::unique_ptr<CudaBackend>(new CudaBackend());
  ASSIGN_OR_RETURN(backend->stream_, CudaStream::Create());
  // Split-K attention aims at four decode thread blocks per multiprocessor.
  backend->target_blocks_ = 4 * std::max(info.multiprocessors, 1);
  backend->batch_invariant_ = options.batch_invariant;
  backend->fp8_weights_ = options.fp8_weights;
  backend->EnableStepGraphs();
  return backend;
}

namespace {

class DeviceBackendBuffer : public BackendBuffer {
 public:
  explicit DeviceBackendBuffer(DeviceBuffer buffer) : buffer_(std::move(buffer)) {}
  void* data() const override { return buffer_.as<void>(); }
  size_t size() const override { return buffer_.size(); }

 private:
  DeviceBuffer buffer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BackendBuffer>> CudaBackend::Allocate(size_t bytes,
                                                                     bool /*huge_pages*/) {
  RETURN_IF_ERROR(OutsideStep("Allocate"));
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(std::max<size_t>(bytes, 1));
  if (!buffer.ok()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "cuda backend: cannot allocate %d bytes of device memory: %s", bytes,
        buffer.status().message()));
  }
  cuda_shim::Error error;
  RETURN_IF_ERROR(CopyStatus(
      cuda_shim::Zero(buffer->as<void>(), buffer->size(), &error, Queued()), error, "Allocate"));
  return std::unique_ptr<BackendBuffer>(std::make_unique<DeviceBackendBuffer>(*std::move(buffer)));
}

absl::StatusOr<Backend::DeviceMemory> CudaBackend::DeviceMemoryInfo() const {
  ASSIGN_OR_RETURN(const CudaDeviceInfo info, ProbeCudaDevice(0));
  return DeviceMemory{.free_bytes = info.free_bytes, .total_bytes = info.total_bytes};
}

// Both wait: the caller may reuse (or read) its host memory on return, and that memory may be
// pinned, where a queued copy would still be reading it.
absl::Status CudaBackend::CopyToBackend(void* dst, const void* src, size_t bytes) {
  RETURN_IF_ERROR(OutsideStep("CopyToBackend"));
  RETURN_IF_ERROR(TakeStickyError());
  return bytes == 0 ? absl::OkStatus() : Copy(dst, src, bytes, "CopyToBackend", Waiting());
}

absl::Status CudaBackend::CopyFromBackend(void* dst, const void* src, size_t bytes) {
  RETURN_IF_ERROR(OutsideStep("CopyFromBackend"));
  RETURN_IF_ERROR(TakeStickyError());
  return bytes == 0 ? absl::OkStatus() : Copy(dst, src, bytes, "CopyFromBackend", Waiting());
}

absl::Status CudaBackend::CopyRows(void* dst, int64_t dst_stride, const void* src,
                                   int64_t src_stride, int64_t row_bytes, int64_t rows) {
  if (rows <= 0 || row_bytes <= 0) return absl::OkStatus();
  Sign(SignedOp::kCopyRows, dst, dst_stride, src, src_stride, row_bytes, rows);
  if (Replaying()) return absl::OkStatus();
  cuda_shim::Error error;
  return CopyStatus(cuda_shim::Copy2D(dst, static_cast<size_t>(dst_stride), src,
                                      static_cast<size_t>(src_stride),
                                      static_cast<size_t>(row_bytes), static_cast<size_t>(rows),
                                      &error, Queued()),
                    error, "CopyRows");
}

absl::Status CudaBackend::Zero(void* dst, size_t bytes) {
  RETURN_IF_ERROR(TakeStickyError());
  if (bytes == 0) return absl::OkStatus();
  Sign(SignedOp::kZero, dst, bytes);
  if (Replaying()) return absl::OkStatus();
  cuda_shim::Error error;
  return CopyStatus(cuda_shim::Zero(dst, bytes, &error, Queued()), error, "Zero");
}

absl::Status CudaBackend::Synchronize() {
  RETURN_IF_ERROR(OutsideStep("Synchronize"));
  RETURN_IF_ERROR(TakeStickyError());
  return stream_.Synchronize();
}

absl::Status CudaBackend::TakeStickyError() { return std::exchange(sticky_, absl::OkStatus()); }

void CudaBackend::Keep(absl::Status status) {
  if (sticky_.ok()) sticky_ = std::move(status);
}

template <typename T>
absl::StatusOr<const T*> CudaBackend::Upload(std::span<const T> values, UploadSlot* slot) {
  if (InStep()) {
    ASSIGN_OR_RETURN(const void* device, StepUpload(values.data(), values.size_bytes(), slot));
    return static_cast<const T*>(device);
  }
  const size_t bytes = std::max<size_t>(values.size_bytes(), sizeof(T));
  if (slot->buffer.size() < bytes) {
    RETURN_IF_ERROR(Reserve(&slot->buffer, std::max(bytes, 2 * slot->buffer.size())));
    slot->held.clear();
  }
  const auto* begin = reinterpret_cast<const uint8_t*>(values.data());
  const bool held = slot->held.size() == values.size_bytes() &&
                    std::equal(slot->held.begin(), slot->held.end(), begin);
  // Queued: `values` is the engine's pageable memory, which the runtime stages before the
  // copy returns; later uploads to the slot follow the kernels that read it in stream order.
  if (!values.empty() && !held) {
    RETURN_IF_ERROR(Copy(slot->buffer.as<void>(), values.data(), values.size_bytes(), "upload",
                         Queued()));
    slot->held.assign(begin, begin + values.size_bytes());
  }
  return slot->buffer.as<const T>();
}

// Embedding's ids (cuda_backend_weights.cc).
template absl::StatusOr<const int32_t*> CudaBackend::Upload<int32_t>(std::span<const int32_t>,
                                                                      UploadSlot*);

absl::Status CudaBackend::ArgMaxRows(const float* x, int64_t rows, int64_t dim, RowArgMax* out) {
  RETURN_IF_ERROR(OutsideStep("ArgMaxRows"));
  RETURN_IF_ERROR(TakeStickyError());
  if (rows <= 0) return absl::OkStatus();
  const size_t bytes = static_cast<size_t>(rows) * sizeof(RowArgMax);
  RETURN_IF_ERROR(Reserve(&argmax_, bytes));
  RETURN_IF_ERROR(CudaArgMaxRows(x, rows, dim, argmax_.as<RowArgMax>(), &stream_));
  return Copy(out, argmax_.as<void>(), bytes, "ArgMaxRows", Waiting());
}

absl::Status CudaBackend::TopKRows(const float* x, int64_t rows, int64_t dim,
                                   std::span<const int32_t> k, std::span<const float> temperature,
                                   int64_t capacity, int32_t* ids, float* values,
                                   int32_t* counts) {
  RETURN_IF_ERROR(OutsideStep("TopKRows"));
  RETURN_IF_ERROR(TakeStickyError());
  RETURN_IF_ERROR(
      CheckTopKRowsArgs("cuda backend TopKRows", rows, dim, k, temperature, capacity));
  if (rows == 0) return absl::OkStatus();
  // [counts: rows][ids: rows x capacity][values: rows x capacity], one copy back.
  const size_t n = static_cast<size_t>(rows), cap = static_cast<size_t>(capacity);
  const size_t bytes = n * sizeof(int32_t) + n * cap * (sizeof(int32_t) + sizeof(float));
  RETURN_IF_ERROR(Reserve(&top_k_results_, bytes));
  ASSIGN_OR_RETURN(const int32_t* device_k, Upload(k, &top_k_));
  ASSIGN_OR_RETURN(const float* device_t, Upload(temperature, &temperatures_));
  auto* device_counts = top_k_results_.as<int32_t>();
  int32_t* device_ids = device_counts + n;
  auto* device_values = reinterpret_cast<float*>(device_ids + n * cap);
  RETURN_IF_ERROR(CudaTopKRows(x, rows, dim, device_k, device_t, capacity, device_ids,
                               device_values, device_counts, &stream_));
  std::vector<std::byte> host(bytes);
  RETURN_IF_ERROR(Copy(host.data(), top_k_results_.as<void>(), bytes, "TopKRows", Waiting()));
  std::memcpy(counts, host.data(), n * sizeof(int32_t));
  std::memcpy(ids, host.data() + n * sizeof(int32_t), n * cap * sizeof(int32_t));
  std::memcpy(values, host.data() + n * sizeof(int32_t) + n * cap * sizeof(int32_t),
              n * cap * sizeof(float));
  return absl::OkStatus();
}

absl::Status CudaBackend::SoftmaxDenominators(const float* x, int64_t rows, int64_t dim,
                                              std::span<const float> temperature,
                                              double* sums) {
  RETURN_IF_ERROR(OutsideStep("SoftmaxDenominators"));
  RETURN_IF_ERROR(TakeStickyError());
  RETURN_IF_ERROR(CheckSoftmaxDenominatorsArgs("cuda backend SoftmaxDenominators", rows, dim,
                                               temperature));
  if (rows == 0) return absl::OkStatus();
  const size_t bytes = static_cast<size_t>(rows) * sizeof(double);
  RETURN_IF_ERROR(Reserve(&denominators_, bytes));
  ASSIGN_OR_RETURN(const float* device_t, Upload(temperature, &temperatures_));
  RETURN_IF_ERROR(CudaSoftmaxDenominators(x, rows, dim, device_t, denominators_.as<double>(),
                                          &stream_));
  return Copy(sums, denominators_.as<void>(), bytes, "SoftmaxDenominators", Waiting());
}

absl::Status CudaBackend::SampleRows(const float* x, int64_t rows, int64_t dim,
                                     std::span<const float> temperature,
                                     std::span<const double> u, int32_t* tokens,
                                     float* token_logits) {
  RETURN_IF_ERROR(OutsideStep("SampleRows"));
  RETURN_IF_ERROR(TakeStickyError());
  RETURN_IF_ERROR(CheckSampleRowsArgs("cuda backend SampleRows", rows, dim, temperature, u));
  if (rows == 0) return absl::OkStatus();
  // The tokens, then (when asked for) their logits: one copy back.
  const size_t count = static_cast<size_t>(rows);
  const size_t bytes = count * (sizeof(int32_t) + (token_logits != nullptr ? sizeof(float) : 0));
  RETURN_IF_ERROR(Reserve(&drawn_, bytes));
  ASSIGN_OR_RETURN(const float* device_t, Upload(temperature, &temperatures_));
  ASSIGN_OR_RETURN(const double* device_u, Upload(u, &uniforms_));
  int32_t* device_tokens = drawn_.as<int32_t>();
  float* device_logits =
      token_logits != nullptr ? reinterpret_cast<float*>(device_tokens + count) : nullptr;
  RETURN_IF_ERROR(
      CudaDrawRows(x, rows, dim, device_t, device_u, device_tokens, device_logits, &stream_));
  if (token_logits == nullptr) {
    return Copy(tokens, drawn_.as<void>(), bytes, "SampleRows", Waiting());
  }
  std::vector<uint8_t> host(bytes);
  RETURN_IF_ERROR(Copy(host.data(), drawn_.as<void>(), bytes, "SampleRows", Waiting()));
  std::memcpy(tokens, host.data(), count * sizeof(int32_t));
  std::memcpy(token_logits, host.data() + count * sizeof(int32_t), count * sizeof(float));
  return absl::OkStatus();
}

absl::Status CudaBackend::EditLogits(float* x, int64_t rows, int64_t dim,
                                     std::span<const LogitEdit> edits, float* previous) {
  RETURN_IF_ERROR(OutsideStep("EditLogits"));
  RETURN_IF_ERROR(TakeStickyError());
  RETURN_IF_ERROR(CheckEditLogitsArgs("cuda backend EditLogits", rows, dim, edits));
  if (edits.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const LogitEdit* device_edits, Upload(edits, &logit_edits_));
  const size_t bytes = edits.size() * sizeof(float);
  if (previous != nullptr) RETURN_IF_ERROR(Reserve(&replaced_, bytes));
  RETURN_IF_ERROR(CudaEditLogits(x, dim, device_edits, static_cast<int64_t>(edits.size()),
                                 previous != nullptr ? replaced_.as<float>() : nullptr,
                                 &stream_));
  if (previous == nullptr) return absl::OkStatus();
  return Copy(previous, replaced_.as<void>(), bytes, "EditLogits", Waiting());
}

void CudaBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                          float* out) {
  if (!sticky_.ok()) return;
  Sign(SignedOp::kRmsNorm, x, weight, n, dim, eps, out);
  if (!Replaying()) Keep(CudaRmsNorm(x, weight, n, dim, eps, out, &stream_));
}

void CudaBackend::Rope(float* x, int64_t n_tokens, int64_t num_heads,
                       std::span<const int32_t> positions, const RopeParams& params) {
  if (!sticky_.ok()) return;
  absl::StatusOr<const int32_t*> device_positions = Upload(positions, &positions_);
  if (!device_positions.ok()) return Keep(device_positions.status());
  absl::StatusOr<const float*> inv_freq = Upload<float>(
      std::span<const float>(params.inv_freq, static_cast<size_t>(params.rope_dim / 2)),
      &inv_freq_);
  if (!inv_freq.ok()) return Keep(inv_freq.status());
  RopeParams device_params = params;
  device_params.inv_freq = *inv_freq;
  Sign(SignedOp::kRope, x, n_tokens, num_heads, params.head_dim, params.rope_dim, params.mscale,
       params.style);
  if (Replaying()) return;
  Keep(CudaRope(x, n_tokens, num_heads, *device_positions, device_params, &stream_));
}

void CudaBackend::SiluMul(const float* gate, const float* up, int64_t count, float* out) {
  if (!sticky_.ok()) return;
  Sign(SignedOp::kSiluMul, gate, up, count, out);
  if (!Replaying()) Keep(CudaSiluMul(gate, up, count, out, &stream_));
}

void CudaBackend::SwiGluRows(const float* gate_up, int64_t n, int64_t width, float* out) {
  if (!sticky_.ok()) return;
  Sign(SignedOp::kSwiGluRows, gate_up, n, width, out);
  if (!Replaying()) Keep(CudaSwiGluRows(gate_up, n, width, out, &stream_));
}

void CudaBackend::Add(const float* a, const float* b, int64_t count, float* out) {
  if (!sticky_.ok()) return;
  Sign(SignedOp::kAdd, a, b, count, out);
  if (!Replaying()) Keep(CudaAdd(a, b, count, out, &stream_));
}

void CudaBackend::Softmax(float* x, int64_t n, int64_t dim) {
  if (!sticky_.ok()) return;
  Sign(SignedOp::kSoftmax, x, n, dim);
  if (!Replaying()) Keep(CudaSoftmax(x, n, dim, &stream_));
}

absl::Status CudaBackend::FitToStep(const PagedKvLayout& layout, AttentionRows* rows) const {
  if (!InStep()) return absl::OkStatus();
  // The step's context bucket fixes the table width and the split plan.
  const int64_t width = (step_context_ + layout.block_size - 1) / layout.block_size;
  if (width < rows->max_blocks || rows->longest_context > step_context_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "cuda backend: a context of %d positions in a step shaped for %d",
        rows->longest_context, step_context_));
  }
  WidenAttentionTables(width, rows);
  rows->longest_context = step_context_;
  return absl::OkStatus();
}

absl::Status CudaBackend::AttendRows(const float* q, const AttentionRows& rows,
                                     const PagedKvLayout& layout, const KvPool& pool,
                                     const PagedAttentionParams& params, float* out) {
  if (rows.entries() == 0) return absl::OkStatus();
  CudaAttentionEntries entries;
  ASSIGN_OR_RETURN(entries.rows, Upload<int32_t>(rows.rows, &entry_rows_));
  ASSIGN_OR_RETURN(entries.tables, Upload<int32_t>(rows.tables, &tables_));
  ASSIGN_OR_RETURN(entries.context_lens, Upload<int32_t>(rows.context_lens, &context_lens_));
  entries.num_entries = rows.entries();
  entries.max_blocks = rows.max_blocks;
  Sign(SignedOp::kAttention, q, out, entries.num_entries, entries.max_blocks, layout.block_size,
       layout.num_kv_heads, layout.head_dim, layout.dtype, pool.k, pool.v, params.num_heads,
       params.num_kv_heads, params.head_dim, params.scale, params.sliding_window);
  if (rows.multi_row_tiles && !batch_invariant_) {
    ASSIGN_OR_RETURN(entries.tiles, Upload<int32_t>(rows.tiles, &tiles_));
    entries.num_tiles = rows.num_tiles();
    Sign(CudaAttentionKernel::kPrefill, entries.num_tiles);
    if (Replaying()) return absl::OkStatus();
    return CudaPagedAttention(q, entries, CudaAttentionKernel::kPrefill, {}, nullptr, layout,
                              pool, params, out, &stream_);
  }
  const int64_t window = params.sliding_window > 0
                             ? std::min(rows.longest_context, params.sliding_window)
                             : rows.longest_context;
  const AttentionSplits splits =
      batch_invariant_
          ? AttentionSplits{}
          : PlanAttentionSplits(entries.num_entries, params.num_heads, window, target_blocks_);
  const int64_t floats = AttentionSplitWorkspaceFloats(entries.num_entries, params.num_heads,
                                                       params.head_dim, splits);
  RETURN_IF_ERROR(Reserve(&split_workspace_, static_cast<size_t>(floats) * sizeof(float)));
  Sign(CudaAttentionKernel::kDecode, splits.num_splits, splits.split_len, floats,
       floats > 0 ? split_workspace_.as<void>() : nullptr);
  if (Replaying()) return absl::OkStatus();
  return CudaPagedAttention(q, entries, CudaAttentionKernel::kDecode, splits,
                            floats > 0 ? split_workspace_.as<float>() : nullptr, layout, pool,
                            params, out, &stream_);
}

void CudaBackend::Attention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                            const float* k_cache, const float* v_cache, int64_t cache_len,
                            const AttentionParams& params, float* out) {
  if (!sticky_.ok()) return;
  if (InStep()) {
    // Its entries are built per call: nothing in a step may stand for them (PagedAttention).
    return Keep(absl::FailedPreconditionError(
        "cuda backend Attention: not allowed inside a recorded step; use PagedAttention"));
  }
  if (static_cast<int64_t>(positions.size()) != n_tokens || cache_len <= 0) {
    return Keep(absl::InvalidArgumentError(absl::StrFormat(
        "cuda backend Attention: %d positions for n_tokens=%d, cache_len=%d", positions.size(),
        n_tokens, cache_len)));
  }
  for (size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0 || positions[i] >= cache_len) {
      return Keep(absl::InvalidArgumentError(absl::StrFormat(
          "cuda backend Attention: positions[%d]=%d is outside [0, cache_len=%d)", i,
          positions[i], cache_len)));
    }
  }
  // The contiguous cache as one block of cache_len positions.
  const PagedKvLayout layout{.num_blocks = 1, .block_size = cache_len,
                             .num_kv_heads = params.num_kv_heads, .head_dim = params.head_dim,
                             .dtype = DType::kF32};
  const PagedAttentionParams paged{.num_heads = params.num_heads,
                                   .num_kv_heads = params.num_kv_heads,
                                   .head_dim = params.head_dim, .scale = params.scale};
  const KvPool pool{const_cast<float*>(k_cache), const_cast<float*>(v_cache)};
  Keep(AttendRows(q, ContiguousAttentionRows(positions), layout, pool, paged, out));
}

absl::Status CudaBackend::WriteKv(const float* k, const float* v, std::span<const int32_t> slots,
                                  const PagedKvLayout& layout, const KvPool& pool) {
  RETURN_IF_ERROR(TakeStickyError());
  // Inside a step, the slots the step's first call checked (every layer writes the same);
  // the layout and pools are checked on every call.
  const bool checked = step_slots_.has_value() && step_slots_->slots == slots.data() &&
                       step_slots_->count == slots.size() &&
                       step_slots_->num_slots == layout.num_slots();
  std::vector<int32_t> distinct;
  if (checked) {
    RETURN_IF_ERROR(CheckPagedKvLayout(name(), "WriteKv", layout, pool));
  } else {
    RETURN_IF_ERROR(CheckWriteKvArgs(name(), slots, layout, pool));
    distinct = LastWriterSlots(slots);
    if (InStep()) {
      step_slots_ = StepSlots{.slots = slots.data(), .count = slots.size(),
                              .num_slots = layout.num_slots(), .distinct = std::move(distinct)};
    }
  }
  const std::vector<int32_t>& rows = step_slots_.has_value() ? step_slots_->distinct : distinct;
  ASSIGN_OR_RETURN(const int32_t* device_slots, Upload<int32_t>(rows, &slots_));
  Sign(SignedOp::kWriteKv, k, v, slots.size(), layout.token_elems(), layout.dtype, pool.k, pool.v);
  if (Replaying()) return absl::OkStatus();
  cuda_shim::Error error;
  const int code = cuda_shim::WriteKv(k, v, device_slots, static_cast<int64_t>(slots.size()),
                                      layout.token_elems(), pool.k, pool.v,
                                      layout.dtype == DType::kF16, &error, Queued());
  return CopyStatus(code, error, "WriteKv");
}

absl::Status CudaBackend::PagedAttention(const float* q, int64_t n_tokens,
                                         std::span<const int32_t> positions,
                                         std::span<const PagedSequence> sequences,
                                         const PagedKvLayout& layout, const KvPool& pool,
                                         const PagedAttentionParams& params, float* out) {
  RETURN_IF_ERROR(TakeStickyError());
  // Inside a step, the entries the step's first call checked and planned (every layer
  // attends over the same rows).
  const bool planned =
      step_attention_.has_value() && step_attention_->positions == positions.data() &&
      step_attention_->num_positions == positions.size() &&
      step_attention_->sequences == sequences.data() &&
      step_attention_->num_sequences == sequences.size() &&
      step_attention_->block_size == layout.block_size &&
      step_attention_->num_blocks == layout.num_blocks &&
      static_cast<int64_t>(positions.size()) == n_tokens;
  if (planned) {
    RETURN_IF_ERROR(CheckPagedAttentionParams(name(), layout, pool, params));
    return AttendRows(q, step_attention_->rows, layout, pool, params, out);
  }
  RETURN_IF_ERROR(
      CheckPagedAttentionArgs(name(), n_tokens, positions, sequences, layout, pool, params));
  AttentionRows rows = PagedAttentionRows(positions, sequences, layout.block_size);
  if (!InStep()) return AttendRows(q, rows, layout, pool, params, out);
  RETURN_IF_ERROR(FitToStep(layout, &rows));
  step_attention_ = StepAttention{.positions = positions.data(),
                                  .sequences = sequences.data(),
                                  .num_positions = positions.size(),
                                  .num_sequences = sequences.size(),
                                  .block_size = layout.block_size,
                                  .num_blocks = layout.num_blocks,
                                  .rows = std::move(rows)};
  return AttendRows(q, step_attention_->rows, layout, pool, params, out);
}

absl::Status CudaBackend::CopyBlocks(std::span<const KvPool> layers, const PagedKvLayout& layout,
                                     std::span<const KvBlockCopy> copies) {
  RETURN_IF_ERROR(OutsideStep("CopyBlocks"));
  RETURN_IF_ERROR(TakeStickyError());
  RETURN_IF_ERROR(CheckCopyBlocksArgs(name(), layers, layout, copies));
  const int64_t bytes = layout.block_bytes();
  for (const KvPool& pool : layers) {
    for (const KvBlockCopy& c : copies) {
      if (c.src == c.dst) continue;
      for (void* base : {pool.k, pool.v}) {
        auto* p = static_cast<uint8_t*>(base);
        RETURN_IF_ERROR(
            Copy(p + c.dst * bytes, p + c.src * bytes, bytes, "CopyBlocks", Queued()));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::SwapBlocks(std::span<const KvPool> from,
                                     const PagedKvLayout& from_layout, std::span<const KvPool> to,
                                     const PagedKvLayout& to_layout,
                                     std::span<const KvBlockCopy> copies) {
  RETURN_IF_ERROR(OutsideStep("SwapBlocks"));
  RETURN_IF_ERROR(TakeStickyError());
  RETURN_IF_ERROR(CheckSwapBlocksArgs(name(), from, from_layout, to, to_layout, copies));
  const int64_t bytes = from_layout.block_bytes();
  for (size_t l = 0; l < from.size(); ++l) {
    for (const KvBlockCopy& c : copies) {
      const void* src_k = static_cast<const uint8_t*>(from[l].k) + c.src * bytes;
      const void* src_v = static_cast<const uint8_t*>(from[l].v) + c.src * bytes;
      RETURN_IF_ERROR(Copy(static_cast<uint8_t*>(to[l].k) + c.dst * bytes, src_k, bytes,
                           "SwapBlocks", Queued()));
      RETURN_IF_ERROR(Copy(static_cast<uint8_t*>(to[l].v) + c.dst * bytes, src_v, bytes,
                           "SwapBlocks", Queued()));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
