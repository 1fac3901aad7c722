// "cpu-reference": the scalar backend whose results define every op. Straightforward loops,
// no SIMD; accumulations (dot products, norms, softmax sums) run in double so that the
// results are as close to exact as float outputs allow. Only MatMul uses threads, each
// computing whole output elements, so results do not depend on the thread count. Not
// thread-safe: one call at a time (see ops.h).
#pragma once

#include <string_view>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/ops.h"

namespace tessera {

class ReferenceBackend : public Backend {
 public:
  // num_threads: 0 = hardware threads.
  explicit ReferenceBackend(int num_threads = 1) : pool_(num_threads) {}

  std::string_view name() const override { return "cpu-reference"; }

  // Dequantizes each row of W to float (kernels/cpu/dequantize.h), then dots it with x in
  // double.
  absl::Status MatMul(const float* x, int64_t n, int64_t k, const TensorView& w,
                      float* y) override;
  absl::Status Embedding(const TensorView& table, std::span<const int32_t> ids,
                         float* out) override;
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override;
  void Rope(float* x, int64_t n_tokens, int64_t num_heads, std::span<const int32_t> positions,
            const RopeParams& params) override;
  void SiluMul(const float* gate, const float* up, int64_t count, float* out) override;
  void Add(const float* a, const float* b, int64_t count, float* out) override;
  void Attention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                 const float* k_cache, const float* v_cache, int64_t cache_len,
                 const AttentionParams& params, float* out) override;
  void Softmax(float* x, int64_t n, int64_t dim) override;
  // Paged-KV ops (reference_paged.cc).
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
  ThreadPool pool_;
};

// Shared argument checks for MatMul / Embedding (also used by the SIMD backend), with
// messages that name the op and the field.
[[nodiscard]] absl::Status CheckMatMulArgs(std::string_view backend, int64_t n, int64_t k,
                                           const TensorView& w);
[[nodiscard]] absl::Status CheckEmbeddingArgs(std::string_view backend, const TensorView& table,
                                              std::span<const int32_t> ids);
// Embedding by dequantizing each looked-up row (both CPU backends: a lookup is a copy, so
// there is nothing for SIMD to win).
[[nodiscard]] absl::Status DequantizeEmbedding(std::string_view backend, const TensorView& table,
                                               std::span<const int32_t> ids, float* out);

}  // namespace tessera
