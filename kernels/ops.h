// The backend interface: every operation the model needs, over activations in float32 and
// weights in their stored dtype. A Backend interprets pointers in its own memory space (host
// memory for CPU backends). Shapes are row-major, outermost first. Unless stated otherwise,
// calls on one Backend come from one thread at a time; a backend may use its own threads
// inside a call. The CPU reference backend defines the results; other backends are tested
// against it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/row_argmax.h"
#include "common/row_sample.h"
#include "common/row_top_k.h"
#include "common/tensor.h"
#include "kernels/logit_edit.h"
#include "kernels/paged_kv.h"

namespace tessera {

enum class RopeStyle {
  kAdjacentPairs,  // GGML "normal" mode: rotates (x[2i], x[2i+1]) — Llama in GGUF
  kHalves,         // GPT-NeoX / HF rotate_half: rotates (x[i], x[i + d/2])
};

struct RopeParams {
  int64_t head_dim = 0;
  int64_t rope_dim = 0;             // leading dims of each head that rotate (<= head_dim)
  const float* inv_freq = nullptr;  // rope_dim / 2 frequencies (scaling already applied)
  float mscale = 1.0f;              // multiplies cos and sin (YaRN attention factor)
  RopeStyle style = RopeStyle::kAdjacentPairs;
};

struct AttentionParams {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // divides num_heads (GQA/MQA); query head h reads kv head
                             // h / (num_heads / num_kv_heads)
  int64_t head_dim = 0;
  float scale = 0.0f;        // usually 1/sqrt(head_dim)
};

// Memory in a backend's space (see Backend::Allocate). Move-only through its owner pointer.
class BackendBuffer {
 public:
  virtual ~BackendBuffer() = default;
  virtual void* data() const = 0;
  virtual size_t size() const = 0;
  template <typename T>
  T* as() const { return static_cast<T*>(data()); }
};

// `bytes` of zeroed host memory, 64-byte aligned (huge pages asked for when `huge_pages`):
// what the CPU backends' Allocate returns. RESOURCE_EXHAUSTED when it cannot be had.
absl::StatusOr<std::unique_ptr<BackendBuffer>> AllocateHostBuffer(size_t bytes,
                                                                  bool huge_pages = false);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // Memory. A model keeps its activations, norm weights and KV pools in this backend's
  // space; it reads and writes them from the host directly only when host_addressable(),
  // and otherwise only through the copies below. The CPU backends' space is host memory.
  virtual bool host_addressable() const { return true; }
  // Free and total bytes of the device memory this backend allocates from, for sizing the KV
  // cache to what the weights leave (BatchRunnerOptions::device_memory_fraction).
  // FAILED_PRECONDITION for backends whose memory is the host's (the default): their
  // caller sizes the cache.
  struct DeviceMemory {
    int64_t free_bytes = 0;
    int64_t total_bytes = 0;
  };
  [[nodiscard]] virtual absl::StatusOr<DeviceMemory> DeviceMemoryInfo() const;
  // `bytes` of zeroed memory in this backend's space; RESOURCE_EXHAUSTED when it cannot be
  // had. `huge_pages`: a large, long-lived buffer (KV pools) that may use huge pages.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<BackendBuffer>> Allocate(
      size_t bytes, bool huge_pages = false) {
    return AllocateHostBuffer(bytes, huge_pages);
  }
  // Host memory -> this backend's space, and back.
  [[nodiscard]] virtual absl::Status CopyToBackend(void* dst, const void* src, size_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  [[nodiscard]] virtual absl::Status CopyFromBackend(void* dst, const void* src, size_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  // Zeroes `bytes` at dst in this backend's space.
  [[nodiscard]] virtual absl::Status Zero(void* dst, size_t bytes) {
    if (bytes > 0) std::memset(dst, 0, bytes);
    return absl::OkStatus();
  }
  // Waits for the work this backend has queued (a device backend's stream), so that another
  // party working on the same memory (NCCL on its own stream) sees its writes and may write
  // what the next ops read; also returns a failure of that work. Host backends finish every
  // op before returning: nothing to wait for.
  [[nodiscard]] virtual absl::Status Synchronize() { return absl::OkStatus(); }
  // Within this backend's space: `rows` rows of `row_bytes`, row r from src + r * src_stride
  // to dst + r * dst_stride (strides in bytes); the regions must not overlap.
  [[nodiscard]] virtual absl::Status CopyRows(void* dst, int64_t dst_stride, const void* src,
                                              int64_t src_stride, int64_t row_bytes,
                                              int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<std::byte*>(dst) + r * dst_stride,
                  static_cast<const std::byte*>(src) + r * src_stride,
                  static_cast<size_t>(row_bytes));
    }
    return absl::OkStatus();
  }

  // Recorded decode steps (CUDA graphs). A decode step launches hundreds of small kernels;
  // a device backend may record one step's work and replay the recording for later steps of
  // the same shape, one launch each. Shapes are few because the caller pads a step's rows
  // to GraphRows(rows) (rows with no KV slot and a one-position context of their own).
  struct StepShape {
    int64_t rows = 0;         // the padded row count, GraphRows(real rows)
    int64_t max_context = 0;  // the longest context_len among the step's sequences
  };
  // The row count a decode step of `rows` rows is padded to for RunStep; 0 when this backend
  // does not record steps (the default) or `rows` is above its largest bucket.
  virtual int64_t GraphRows(int64_t rows) const { return 0; }
  // Runs `body`, which queues one step's work on this backend, perhaps as a replay of a
  // recording of an earlier step of the same shape; returns the body's error (or the
  // recording's). The body must
  //   * only queue work: no call that brings results to the host, waits or allocates
  //     (CopyToBackend, CopyFromBackend, Synchronize, ArgMaxRows, TopKRows,
  //     SoftmaxDenominators, SampleRows, EditLogits, Allocate answer FAILED_PRECONDITION
  //     inside it);
  //   * for one shape, make the same calls in the same order on the same buffers with the
  //     same sizes (only the contents of index spans may differ from step to step);
  //   * within the step, pass an index span at the same memory only while it holds the same
  //     values (every layer's positions, block tables and slots: a backend may check and
  //     plan them once per step);
  //   * give the same results when run again for the same step (a backend runs it again,
  //     without recording, when a replay would not launch what the body asks for).
  // The default runs `body` once.
  [[nodiscard]] virtual absl::Status RunStep(const StepShape& shape,
                                             absl::FunctionRef<absl::Status()> body) {
    return body();
  }

  // out[i] = ArgMaxOfRow of row i of x [rows, dim] (this backend's memory; out is host
  // memory): greedy decoding's choice without the rows leaving the backend.
  [[nodiscard]] virtual absl::Status ArgMaxRows(const float* x, int64_t rows, int64_t dim,
                                                RowArgMax* out);
  // Top-k sampling's candidates without the rows leaving the backend: for row r of x
  // [rows, dim] (this backend's memory), TopKOfRow(row r, k[r], temperature[r]) into
  // ids/values [r * capacity, (r + 1) * capacity) and its return value into counts[r]
  // (ids, values and counts are host memory; k and temperature have `rows` entries, k[r] <= 0
  // skips row r with count 0; temperature[r] > 0). A count above `capacity` means only
  // `capacity` candidates were written; -1 means the row holds a NaN.
  [[nodiscard]] virtual absl::Status TopKRows(const float* x, int64_t rows, int64_t dim,
                                              std::span<const int32_t> k,
                                              std::span<const float> temperature,
                                              int64_t capacity, int32_t* ids, float* values,
                                              int32_t* counts);
  // Top-p's normalizer without the rows leaving the backend: for row r of x [rows, dim]
  // (this backend's memory) with temperature[r] > 0, sums[r] = Σ_i exp(x[r, i] / T - max)
  // in float64 (NaN weighs 0), T = temperature[r] and max the row's largest x / T; 0 when
  // that max is not finite. Rows with temperature[r] <= 0 are skipped (sums[r] = 0). sums is
  // host memory. A device may add in another order than the host's sequential sum (float64
  // rounding).
  [[nodiscard]] virtual absl::Status SoftmaxDenominators(const float* x, int64_t rows,
                                                         int64_t dim,
                                                         std::span<const float> temperature,
                                                         double* sums);
  // The logits processors that change a few tokens (kernels/logit_edit.h) without the rows
  // leaving the backend: x[e.row, e.token] = ApplyLogitEdit(x[e.row, e.token], e) for each
  // edit e (host memory) of x [rows, dim] (this backend's memory); `previous`, when not
  // null, receives the value each edit replaced (host memory, one float per edit: the raw
  // row's, for its logprobs). The edits must be in ascending (row, token) order, each pair
  // once, within x (INVALID_ARGUMENT naming the edit otherwise, x unchanged).
  [[nodiscard]] virtual absl::Status EditLogits(float* x, int64_t rows, int64_t dim,
                                                std::span<const LogitEdit> edits,
                                                float* previous);
  // Plain sampling without the rows leaving the backend: for row r of x [rows, dim] (this
  // backend's memory) with u[r] >= 0, tokens[r] = DrawFromRow(row r / temperature[r], u[r])
  // (common/row_sample.h; the division is TemperatureWarper's float division); u[r] < 0
  // skips row r with token -1. tokens is host memory; temperature and u have `rows` entries,
  // temperature[r] > 0, u[r] < 1. A device backend's float64 sums may round otherwise than the
  // host's sequential one: the token then differs only where u * total falls within
  // that rounding of a boundary between two tokens. `token_logits`, when not null (host
  // memory, `rows` floats), receives x[r, tokens[r]] for each row with a token (its logit
  // before the division: what its logprob needs), in the same copy back.
  [[nodiscard]] virtual absl::Status SampleRows(const float* x, int64_t rows, int64_t dim,
                                                std::span<const float> temperature,
                                                std::span<const double> u, int32_t* tokens,
                                                float* token_logits);

  // y[n, m] = x[n, k] · Wᵀ where W is [m, k] in any supported weight dtype.
  // INVALID_ARGUMENT when W's shape or dtype does not fit.
  [[nodiscard]] virtual absl::Status MatMul(const float* x, int64_t n, int64_t k,
                                            const TensorView& w, float* y) = 0;
  // y[n, m] += x[n, k] · Wᵀ: a projection added into the residual stream. A backend may add
  // in the product's own write (a device GEMM's epilogue, the GEMV's store) and save the
  // separate pass over y; by default MatMul into `scratch` (n * m floats), then Add. The
  // results equal that default's up to float rounding (the fused sum is rounded once).
  [[nodiscard]] virtual absl::Status MatMulAdd(const float* x, int64_t n, int64_t k,
                                               const TensorView& w, float* scratch, float* y) {
    if (absl::Status s = MatMul(x, n, k, w, scratch); !s.ok()) return s;
    Add(y, scratch, n * w.dim(0), y);
    return absl::OkStatus();
  }

  // A copy of matrix w in the layout this backend's MatMul reads fastest, or nullptr when it
  // has none for w (the default). The caller owns the copy, keeps it alive while it is used
  // and sets w.packed to it on the views it passes to MatMul (and Embedding, for a tied
  // table); this backend then reads only the copy, so w's own pages may be dropped. MatMul
  // results equal those on the unpacked view up to float summation order; Embedding's are
  // the same.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeight(const TensorView& w) {
    return PackWeights({&w, 1});
  }
  // The same for the rows of `parts` stacked in order, when they share a dtype and a width:
  // one MatMul over the copy (a view of shape [Σ rows, k] with `packed` set and no data)
  // computes all the parts at once, e.g. the Q, K and V projections of one input. nullptr
  // when the backend does not pack them together (the caller then packs them one by one).
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeights(
      std::span<const TensorView> parts) {
    return std::unique_ptr<PackedWeight>();
  }
  // PackWeight for a vocabulary matrix (the token embedding table, the LM head, or the one
  // table both read): a backend that re-quantizes the layers' matrices (the cuda backend's
  // FP8 weights) keeps these at the file's precision, as they set the logits and every
  // token's first activations.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<PackedWeight>> PackVocabularyMatrix(
      const TensorView& w) {
    return PackWeight(w);
  }

  // out[i, :] = table[ids[i], :] dequantized; table is [vocab, dim] in any weight dtype.
  // INVALID_ARGUMENT when an id is outside [0, vocab).
  [[nodiscard]] virtual absl::Status Embedding(const TensorView& table,
                                               std::span<const int32_t> ids, float* out) = 0;

  // out[i, :] = x[i, :] / sqrt(mean(x[i, :]²) + eps) * weight; x and out may alias.
  virtual void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                       float* out) = 0;

  // xn = RmsNorm(x, norm_weight) over n rows of k, then y = MatMul(xn, w): a layer's norm and
  // the first projection that reads it, with the same results as those two calls. A backend
  // may do the norm in the MatMul's own pass over its input (the CPU backend normalizes,
  // quantizes and sums each activation row in one parallel region). xn is written either way
  // (later projections of the same input read it); x and xn may alias.
  [[nodiscard]] virtual absl::Status RmsNormMatMul(const float* x, const float* norm_weight,
                                                   int64_t n, int64_t k, float eps,
                                                   const TensorView& w, float* xn, float* y) {
    RmsNorm(x, norm_weight, n, k, eps, xn);
    return MatMul(xn, n, k, w, y);
  }

  // Rotates, in place, each of `num_heads` heads of x[n_tokens, num_heads, head_dim] by
  // its token's position.
  virtual void Rope(float* x, int64_t n_tokens, int64_t num_heads,
                    std::span<const int32_t> positions, const RopeParams& params) = 0;

  // out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
  virtual void SiluMul(const float* gate, const float* up, int64_t count, float* out) = 0;
  // SwiGLU over a stacked gate|up MatMul's output: row i of out [n, width] = SiluMul of the
  // two halves of row i of gate_up [n, 2 * width] (gate first), the same values as SiluMul
  // row by row, in one call (one launch on a device). out must not overlap gate_up.
  virtual void SwiGluRows(const float* gate_up, int64_t n, int64_t width, float* out) {
    for (int64_t i = 0; i < n; ++i) {
      SiluMul(gate_up + 2 * i * width, gate_up + (2 * i + 1) * width, width, out + i * width);
    }
  }
  // How many rows one MatMul over stacked matrices (PackWeights) takes: the model's output
  // scratch for it holds that many rows of the stacked width. Small where that scratch
  // should stay in a CPU's cache; a device's GEMM wants many rows to reach its peak.
  virtual int64_t stacked_rows_per_call() const { return 64; }

  // out[i] = a[i] + b[i]; out may alias a or b.
  virtual void Add(const float* a, const float* b, int64_t count, float* out) = 0;

  // Causal attention of n_tokens queries against a contiguous cache.
  // q: [n_tokens, num_heads, head_dim]; k_cache, v_cache: [cache_len, num_kv_heads,
  // head_dim]; query i sees cache rows [0, positions[i]] (positions[i] < cache_len).
  // out: [n_tokens, num_heads, head_dim].
  virtual void Attention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                         const float* k_cache, const float* v_cache, int64_t cache_len,
                         const AttentionParams& params, float* out) = 0;

  // In-place softmax over each row of x[n, dim].
  virtual void Softmax(float* x, int64_t n, int64_t dim) = 0;

  // Paged KV cache (layout, batch description and checks in kernels/paged_kv.h). These ops
  // validate their arguments (O(tokens + table entries)) because slots and block tables come
  // from the scheduler: INVALID_ARGUMENT naming the field for an out-of-range slot, block id
  // or position, UNIMPLEMENTED for a layout dtype the backend lacks. On error nothing is
  // written. The defaults answer UNIMPLEMENTED so that backends without a paged cache (and
  // test doubles) need not override them.

  // Scatters the rows of k, v [slots.size(), num_kv_heads, head_dim] (float32) into one
  // layer's pools, converted to the layout's dtype (ties to even for kF16): row i goes to flat slot slots[i] = block * block_size + offset (see
  // ComputeSlotMapping); rows whose slot is kPaddingSlot (-1) are skipped. Two rows with the
  // same slot: the later row wins.
  [[nodiscard]] virtual absl::Status WriteKv(const float* k, const float* v,
                                             std::span<const int32_t> slots,
                                             const PagedKvLayout& layout, const KvPool& pool) {
    return Unimplemented("WriteKv");
  }

  // Causal attention for a batch of sequences over one layer's paged cache.
  // q: [n_tokens, num_heads, head_dim]; positions: [n_tokens]. For each sequence s and each
  // row i in [s.query_start, s.query_start + s.num_queries), out row i is the attention of
  // q row i over the cached positions [WindowStart(positions[i], sliding_window),
  // positions[i]] of s, read through s.block_table; positions[i] < s.context_len. The
  // current tokens' KV must already be written (WriteKv). The sequences' row ranges are
  // disjoint and in increasing order; rows that belong to no sequence are left unchanged.
  // out: [n_tokens, num_heads, head_dim]; must not alias q or the pools.
  [[nodiscard]] virtual absl::Status PagedAttention(const float* q, int64_t n_tokens,
                                                    std::span<const int32_t> positions,
                                                    std::span<const PagedSequence> sequences,
                                                    const PagedKvLayout& layout,
                                                    const KvPool& pool,
                                                    const PagedAttentionParams& params,
                                                    float* out) {
    return Unimplemented("PagedAttention");
  }

  // For each layer's pools and each pair in order, copies block src's K and V to block dst
  // (copy-on-write after a fork; StepPlan::block_copies). src == dst is a no-op.
  [[nodiscard]] virtual absl::Status CopyBlocks(std::span<const KvPool> layers,
                                                const PagedKvLayout& layout,
                                                std::span<const KvBlockCopy> copies) {
    return Unimplemented("CopyBlocks");
  }

  // Swapping preempted sequences out of and back into the KV cache: for each layer and each
  // pair, copies block src of `from` to block dst of `to`, where one side is this backend's
  // cache and the other a host-memory pool set of the same geometry (the layouts may differ
  // in num_blocks only). StepPlan::swap_out / swap_in.
  [[nodiscard]] virtual absl::Status SwapBlocks(std::span<const KvPool> from,
                                                const PagedKvLayout& from_layout,
                                                std::span<const KvPool> to,
                                                const PagedKvLayout& to_layout,
                                                std::span<const KvBlockCopy> copies) {
    return Unimplemented("SwapBlocks");
  }

 private:
  absl::Status Unimplemented(std::string_view op) const {
    return absl::UnimplementedError(std::string(name()) + " backend has no " + std::string(op));
  }
};

}  // namespace tessera
