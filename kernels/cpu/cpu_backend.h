// "cpu": the fast CPU backend. SIMD kernels picked at run time for this CPU (cpu_features.h)
// and a thread pool owned by the backend. MatMul quantizes each activation row once to the
// Q8 format that matches W (vec_dot.h) and uses integer dot products, as llama.cpp does;
// dtypes without a direct kernel are dequantized row by row and dotted in float.
// Accuracy against "cpu-reference": exact up to float rounding once the reference is fed the
// same Q8-rounded activations (tests/kernels/cpu_backend_test.cc states the bounds).
// One call at a time (ops.h); the backend's own threads run inside each call.
#pragma once

#include <string_view>

#include "common/aligned_buffer.h"
#include "common/thread_pool.h"
#include "kernels/cpu/rope_table.h"
#include "kernels/cpu/vec_dot.h"
#include "kernels/ops.h"

namespace tessera {

class CpuBackend : public Backend {
 public:
  // num_threads: 0 = hardware threads. kernels: nullptr = the best table for this CPU;
  // tests pass each of SupportedCpuKernels() to cover every ISA. batch_invariant: MatMul
  // computes every row with the one-row kernel, so that a row's result is the same bits in
  // any batch (the 4-row kernels sum the blocks in another order); packed weights are
  // batch-invariant as they are. pack_weights: PackWeight(s) repacks Q4_0 / Q4_1 / Q5_0 /
  // Q5_1 / Q8_0 matrices for the table's packed GEMM, when it has one and runs that format
  // (CpuKernels::packs_format; packed_weights.h); false keeps the GGUF layout (weights used
  // straight from the mapped file).
  explicit CpuBackend(int num_threads = 0, const CpuKernels* kernels = nullptr,
                      bool batch_invariant = false, bool pack_weights = true);
  bool batch_invariant() const { return batch_invariant_; }
  bool packs_weights() const { return pack_weights_ && kernels_.packed_gemm != nullptr; }

  std::string_view name() const override { return "cpu"; }
  std::string_view isa() const { return kernels_.isa; }
  int num_threads() const { return pool_.num_threads(); }

  // Reads w.packed instead of w.data when it is set: INVALID_ARGUMENT when it is not a "cpu"
  // packing of w, or when this table has no packed GEMM and w has no data of its own.
  absl::Status MatMul(const float* x, int64_t n, int64_t k, const TensorView& w, float* y) override;
  absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeights(
      std::span<const TensorView> parts) override;
  // Reads table.packed instead of table.data when it is set (a tied LM head's copy).
  absl::Status Embedding(const TensorView& table, std::span<const int32_t> ids,
                         float* out) override;
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override;
  absl::Status RmsNormMatMul(const float* x, const float* norm_weight, int64_t n, int64_t k,
                             float eps, const TensorView& w, float* xn, float* y) override;
  void Rope(float* x, int64_t n_tokens, int64_t num_heads, std::span<const int32_t> positions,
            const RopeParams& params) override;
  void SiluMul(const float* gate, const float* up, int64_t count, float* out) override;
  void Add(const float* a, const float* b, int64_t count, float* out) override;
  void Attention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                 const float* k_cache, const float* v_cache, int64_t cache_len,
                 const AttentionParams& params, float* out) override;
  void Softmax(float* x, int64_t n, int64_t dim) override;
  // Paged-KV ops (cpu_paged.cc): threads over (sequence, query tile, head), online softmax
  // over chunks of positions, SIMD dot / axpy / exp from the ISA table.
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
                          std::span<const KvBlockCopy> copies) override {
    return SwapHostBlocks(name(), from, from_layout, to, to_layout, copies);
  }

 private:
  // RmsNormMatMul's norm, done row by row where MatMul first passes over its input.
  struct RowNorm {
    const float* weight;
    float eps;
    float* out;  // the normalized rows (xn)
  };
  // MatMul, with the rows of x first normalized by `norm` when it is set.
  absl::Status MatMulImpl(const float* x, int64_t n, int64_t k, const TensorView& w, float* y,
                          const RowNorm* norm);
  // Quantizes n rows of x to act_type into act_; returns the bytes per row. For a packed
  // MatMul (`packed` set) also fills act_info_ with the rows' ActBlockInfo. With `norm`, each
  // row is normalized into norm->out first and that is quantized.
  absl::StatusOr<int64_t> QuantizeActivations(const float* x, int64_t n, int64_t k, DType act_type,
                                              const CpuPackedWeight* packed = nullptr,
                                              const RowNorm* norm = nullptr);
  absl::Status MatMulPacked(const float* x, int64_t n, int64_t k, const CpuPackedWeight& w,
                            float* y, const RowNorm* norm);
  // How many claims `units` equal work units (weight tiles, row groups, attention items) are
  // split into for a call over `rows` activation rows: one even share per thread for decode
  // (rows < 4; see kDecodeClaimsPerThread), one unit per claim for batches.
  int64_t Claims(int64_t rows, int64_t units) const;
  // Query heads per attention work item over `work_rows` rows (tokens, or tiles of them):
  // the query heads of up to `max_kv_heads` whole KV heads (consecutive ones), else one
  // whole GQA group, else a part of one, whichever is largest while leaving at least two
  // items per thread.
  int64_t HeadsPerItem(int64_t work_rows, int64_t num_heads, int64_t num_kv_heads,
                       int64_t max_kv_heads = 1) const;
  absl::Status MatMulDequantized(const float* x, int64_t n, int64_t k, const TensorView& w,
                                 float* y);

  const CpuKernels& kernels_;
  bool batch_invariant_ = false;
  bool pack_weights_ = true;
  ThreadPool pool_;
  AlignedBuffer act_;       // quantized activation rows of the current MatMul
  AlignedBuffer act_info_;  // their ActBlockInfo, for a packed MatMul
  RopeTable rope_table_;    // the last Rope call's cos / sin, for the next with the same positions
};

}  // namespace tessera
