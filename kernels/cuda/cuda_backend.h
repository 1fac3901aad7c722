// The "cuda" Backend (kernels/ops.h) over device memory: every activation, output and KV
// pool pointer it is handed is a device pointer on the process's device 0, the one GPU a
// process drives (tessera-worker narrows CUDA_VISIBLE_DEVICES to its rank's; Allocate gives
// them; the Copy* methods move bytes in and out); matrices are read
// from the device copy PackWeights makes (or from a view whose data is a device pointer);
// index spans (token ids, positions, block tables, slots) and RopeParams::inv_freq are host
// memory, uploaded per call. Work is queued on the backend's own stream and not waited for:
// the host waits only in CopyFromBackend (where results come back, and where a failed
// kernel's error surfaces) and CopyToBackend.
//
// MatMul (cuda_backend_weights.cc): F16/BF16 weights through cuBLASLt (CudaGemm) at any n;
// quantized weights through the GEMV kernel, 8 activation rows at a time, and from 64 rows
// on dequantized to F16 a slice at a time for cuBLASLt (CudaGemmQuantized). With
// fp8_weights, PackWeights stores F32/F16/BF16 matrices (not the vocabulary matrices) as FP8
// rows with a scale per row
// (half of BF16's bytes for the decode GEMV to read), which MatMul reads through the GEMV up
// to 8 rows and the FP8 tensor-core GEMM past that (CudaGemmFp8; the dequantizing path where
// the device has none). Attention and PagedAttention are one
// launch over every query row (attention_rows.h): the split-K decode kernel when each
// sequence has one row, the tiled prefill kernel when some sequence has more. The
// element-wise ops return nothing in the Backend interface, so a failure there is kept and
// returned by the next call that returns a status (sticky, as CUDA's own errors are).
//
// Decode steps are recorded as CUDA graphs and replayed (RunStep; keys, warm-up and the
// fallback to eager runs in step_graphs.h): inside a step, index arrays go to a pinned
// arena whose copies to the device are part of the recording, the attention's table width
// and split plan come from the step's context bucket, and a replay runs the host side of
// every op (checks, uploads) but launches nothing until the recording, after comparing what
// the ops would launch with what it holds.
//
// The model allocates its activations, norm vectors and caches here (Backend::Allocate) and
// moves bytes with the Copy* methods, so it runs on this backend as on the CPU ones. Not in
// the registry until its GPU tests have passed on a GPU: tests/kernels/cuda_backend_test.cc
// (every op against ReferenceBackend) and tests/model/cuda_model_test.cc (a tiny model's
// logits and greedy tokens against the CPU reference).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/elementwise_shim.h"  // cuda_shim::Launch
#include "kernels/cuda/step_graphs.h"
#include "kernels/ops.h"

namespace tessera {

struct AttentionRows;  // attention_rows.h

// A matrix (or the stacked rows of several) copied to device memory in its file dtype, or
// as F8E4M3 rows with one float scale per row (CudaBackendOptions::fp8_weights).
class CudaPackedWeight : public PackedWeight {
 public:
  CudaPackedWeight(DeviceBuffer data, DType dtype, int64_t rows, int64_t cols,
                   DeviceBuffer row_scales = {})
      : data_(std::move(data)), row_scales_(std::move(row_scales)), dtype_(dtype), rows_(rows),
        cols_(cols) {}
  TensorView view() const { return TensorView{dtype_, {rows_, cols_}, data_.as<void>()}; }
  // Device floats, one per row, for an F8E4M3 copy; nullptr otherwise.
  const float* row_scales() const { return row_scales_.as<float>(); }

 private:
  DeviceBuffer data_, row_scales_;
  DType dtype_;
  int64_t rows_, cols_;
};

struct CudaBackendOptions {
  // Deterministic (batch-invariant) mode (kernels/registry.h): every output row computed the
  // same way whatever the batch around it, by giving up what depends on the batch's size:
  // F16/BF16 and FP8 weights go through the GEMV (whose per-row sums do not depend on the
  // row count) instead of cuBLASLt, and attention through the decode kernel without split-K
  // pieces instead of the prefill tiles.
  bool batch_invariant = false;
  // PackWeights stores F32, F16 and BF16 matrices as FP8 (E4M3) rows with per-row scales
  // (kernels/cuda/fp8_e4m3.h); block-quantized matrices and PackVocabularyMatrix's keep their
  // format.
  bool fp8_weights = false;
};

class CudaBackend : public Backend {
 public:
  // UNAVAILABLE when CUDA is not compiled in or no device is visible.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(CudaBackendOptions options = {});

  std::string_view name() const override { return "cuda"; }
  bool host_addressable() const override { return false; }
  absl::StatusOr<DeviceMemory> DeviceMemoryInfo() const override;
  absl::StatusOr<std::unique_ptr<BackendBuffer>> Allocate(size_t bytes,
                                                          bool huge_pages) override;
  absl::Status CopyToBackend(void* dst, const void* src, size_t bytes) override;
  absl::Status CopyFromBackend(void* dst, const void* src, size_t bytes) override;
  absl::Status CopyRows(void* dst, int64_t dst_stride, const void* src, int64_t src_stride,
                        int64_t row_bytes, int64_t rows) override;
  absl::Status Zero(void* dst, size_t bytes) override;
  absl::Status Synchronize() override;
  int64_t GraphRows(int64_t rows) const override;
  absl::Status RunStep(const StepShape& shape, absl::FunctionRef<absl::Status()> body) override;
  // What RunStep did with the steps it was given (attempts; failed ones also count as
  // fallbacks).
  struct StepGraphStats {
    int64_t warmups = 0, recordings = 0, replays = 0;
    int64_t stale = 0;      // replays whose ops had changed, run eagerly and recorded again
    int64_t fallbacks = 0;  // failed warm-ups, recordings or replays, run eagerly
    int64_t eager = 0;      // steps of keys that failed too often
  };
  const StepGraphStats& step_graph_stats() const { return step_stats_; }
  absl::Status ArgMaxRows(const float* x, int64_t rows, int64_t dim, RowArgMax* out) override;
  absl::Status TopKRows(const float* x, int64_t rows, int64_t dim, std::span<const int32_t> k,
                        std::span<const float> temperature, int64_t capacity, int32_t* ids,
                        float* values, int32_t* counts) override;
  absl::Status SoftmaxDenominators(const float* x, int64_t rows, int64_t dim,
                                   std::span<const float> temperature, double* sums) override;
  absl::Status SampleRows(const float* x, int64_t rows, int64_t dim,
                          std::span<const float> temperature, std::span<const double> u,
                          int32_t* tokens, float* token_logits) override;
  absl::Status EditLogits(float* x, int64_t rows, int64_t dim, std::span<const LogitEdit> edits,
                          float* previous) override;
  absl::Status MatMul(const float* x, int64_t n, int64_t k, const TensorView& w,
                      float* y) override;
  // Adds in the GEMM's epilogue (cuBLASLt's beta) or the GEMV's store; the FP8 tensor-core
  // GEMM, whose output is scaled after it, writes `scratch` and adds.
  absl::Status MatMulAdd(const float* x, int64_t n, int64_t k, const TensorView& w,
                         float* scratch, float* y) override;
  absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeights(
      std::span<const TensorView> parts) override;
  // In the file's dtype even with fp8_weights.
  absl::StatusOr<std::unique_ptr<PackedWeight>> PackVocabularyMatrix(
      const TensorView& w) override;
  absl::Status Embedding(const TensorView& table, std::span<const int32_t> ids,
                         float* out) override;
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override;
  void Rope(float* x, int64_t n_tokens, int64_t num_heads, std::span<const int32_t> positions,
            const RopeParams& params) override;
  void SiluMul(const float* gate, const float* up, int64_t count, float* out) override;
  void SwiGluRows(const float* gate_up, int64_t n, int64_t width, float* out) override;
  // cuBLASLt reaches its throughput at hundreds of rows, not the CPU's cache-sized 64.
  int64_t stacked_rows_per_call() const override { return 512; }
  void Add(const float* a, const float* b, int64_t count, float* out) override;
  void Attention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                 const float* k_cache, const float* v_cache, int64_t cache_len,
                 const AttentionParams& params, float* out) override;
  void Softmax(float* x, int64_t n, int64_t dim) override;
  absl::Status WriteKv(const float* k, const float* v, std::span<const int32_t> slots,
                       const PagedKvLayout& layout, const KvPool& pool) override;
  absl::Status PagedAttention(const float* q, int64_t n_tokens,
                              std::span<const int32_t> positions,
                              std::span<const PagedSequence> sequences,
                              const PagedKvLayout& layout, const KvPool& pool,
                              const PagedAttentionParams& params, float* out) override;
  absl::Status CopyBlocks(std::span<const KvPool> layers, const PagedKvLayout& layout,
                          std::span<const KvBlockCopy> copies) override;
  absl::Status SwapBlocks(std::span<const KvPool> from, const PagedKvLayout& from_layout,
                          std::span<const KvPool> to, const PagedKvLayout& to_layout,
                          std::span<const KvBlockCopy> copies) override;

 private:
  CudaBackend() = default;
  // The first failure of a void op since the last status was returned (then cleared).
  absl::Status TakeStickyError();
  void Keep(absl::Status status);
  // A device buffer that host index arrays are uploaded to, and the bytes it holds: the same
  // array again (a step's positions, block tables and slots go to every layer) is not
  // copied again.
  // Inside a recorded step the slot's last upload is instead a region of the step's arena
  // (step_offset, -1 before its first upload in the step) holding step_held, uploaded from
  // step_source (the same memory again in the step holds the same values: RunStep's rule).
  struct UploadSlot {
    DeviceBuffer buffer;
    std::vector<uint8_t> held;
    int64_t step_offset = -1;
    std::vector<uint8_t> step_held;
    const void* step_source = nullptr;
  };
  // `values` in slot->buffer (grown as needed); its device address.
  template <typename T>
  absl::StatusOr<const T*> Upload(std::span<const T> values, UploadSlot* slot);
  // Inside a step: rows' tables widened to the step's context bucket (FAILED_PRECONDITION
  // when a context exceeds it).
  absl::Status FitToStep(const PagedKvLayout& layout, AttentionRows* rows) const;
  // PackWeights, converting float matrices to FP8 when `to_fp8` (and fp8_weights).
  absl::StatusOr<std::unique_ptr<PackedWeight>> Pack(std::span<const TensorView> parts,
                                                     bool to_fp8);
  // MatMul (scratch null) and MatMulAdd (y += the product).
  absl::Status Project(const float* x, int64_t n, int64_t k, const TensorView& w,
                       float* scratch, float* y);
  // Runs the decode or prefill attention kernel over `rows` (attention_rows.h).
  absl::Status AttendRows(const float* q, const AttentionRows& rows,
                          const PagedKvLayout& layout, const KvPool& pool,
                          const PagedAttentionParams& params, float* out);

  // Work queued on stream_ (every op) or waiting for it (copies the host reads or may reuse).
  cuda_shim::Launch Queued() const { return {.stream = stream_.handle(), .wait = false}; }
  cuda_shim::Launch Waiting() const { return {.stream = stream_.handle(), .wait = true}; }

  // Recorded steps (cuda_backend_graphs.cc). kEager outside them.
  enum class StepMode { kEager, kWarmup, kCapture, kReplay };
  bool InStep() const { return step_mode_ != StepMode::kEager; }
  // In a replay the ops upload and sign but launch nothing.
  bool Replaying() const { return step_mode_ == StepMode::kReplay; }
  // Adds an op's launch-deciding values to the step's signature (inside a step).
  template <typename... T>
  void Sign(T... values) {
    if (InStep()) signature_.Add(values...);
  }
  // FAILED_PRECONDITION naming `op` inside a step (Backend::RunStep's rules).
  absl::Status OutsideStep(const char* op) const;
  // `bytes` at `data` in the step's arena (once per slot when unchanged); its device address.
  absl::StatusOr<const void*> StepUpload(const void* data, size_t bytes, UploadSlot* slot);
  // Runs body in `mode` for `key`; the signature of what it launched in *signature.
  absl::Status RunStepAs(StepMode mode, int64_t context, absl::FunctionRef<absl::Status()> body,
                         uint64_t* signature);
  // Records body as a graph for `key`, stores and launches it.
  absl::Status CaptureStep(const StepGraphKey& key, absl::FunctionRef<absl::Status()> body);
  absl::Status LaunchGraph(void* graph);
  std::vector<UploadSlot*> Slots();
  void EnableStepGraphs();  // Create

  CudaStream stream_;
  absl::Status sticky_;
  StepMode step_mode_ = StepMode::kEager;
  int64_t step_context_ = 0;  // the step's context bucket (GraphContextFor)
  StepSignature signature_;
  // The step's first PagedAttention and WriteKv results of checking and planning their index
  // spans, which every layer passes again (RunStep's rule: the same memory in a step holds
  // the same values): later layers skip the checks, the planning and the uploads' compares.
  struct StepAttention {
    const int32_t* positions = nullptr;
    const PagedSequence* sequences = nullptr;
    size_t num_positions = 0, num_sequences = 0;
    int64_t block_size = 0, num_blocks = 0;
    AttentionRows rows;  // fitted to the step
  };
  struct StepSlots {
    const int32_t* slots = nullptr;
    size_t count = 0;
    int64_t num_slots = 0;
    std::vector<int32_t> distinct;  // LastWriterSlots
  };
  std::optional<StepAttention> step_attention_;
  std::optional<StepSlots> step_slots_;
  std::unique_ptr<StepGraphCache> graphs_;  // null: steps run eagerly
  StepGraphStats step_stats_;
  // A step's uploads: written to arena_host_ (pinned) and copied to the same offsets of
  // arena_device_ by copies the recording holds; arena_wanted_ > size: grow before the next
  // step (which drops the recordings that copy from the old one).
  PinnedBuffer arena_host_;
  DeviceBuffer arena_device_;
  size_t arena_used_ = 0, arena_wanted_ = 0;
  int64_t target_blocks_ = 0;  // thread blocks that fill the GPU (PlanAttentionSplits)
  bool batch_invariant_ = false;
  bool fp8_weights_ = false;
  // (rows, k) of FP8 matrices whose GEMM cuBLASLt refused (CudaGemmFp8's UNIMPLEMENTED):
  // MatMul reads them another way from then on.
  std::set<std::pair<int64_t, int64_t>> fp8_gemm_refused_;
  UploadSlot ids_, positions_, entry_rows_, tables_, context_lens_, tiles_, inv_freq_, slots_;
  UploadSlot top_k_, temperatures_, uniforms_, logit_edits_;
  // argmax_: ArgMaxRows' results; top_k_results_: TopKRows' counts, ids and values, one
  // copy back; drawn_: SampleRows' tokens; denominators_: SoftmaxDenominators' sums.
  DeviceBuffer split_workspace_, argmax_, top_k_results_, drawn_, denominators_, replaced_;
  // MatMul's F16 copy of a slice of a quantized matrix, for batches of kDequantizedGemmRows
  // rows or more (CudaGemmQuantized), at most kDequantScratchBytes.
  DeviceBuffer dequantized_;
};

}  // namespace tessera
