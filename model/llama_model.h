// The Llama-family decoder (Llama 1/2/3, SmolLM, Mistral-style GQA) as a sequence of Backend
// operations: token embedding; per layer RMSNorm → Q/K/V → RoPE → causal GQA/MQA attention
// over a KvCache → output projection + residual → RMSNorm → SwiGLU MLP + residual; final
// RMSNorm; LM head (output.weight, or token_embd.weight when tied).
//
// Weights stay in their stored dtype and memory (views into the WeightStore, which must
// outlive the model), except that the matrices get the backend's packed copy when it makes
// one (Backend::PackWeight; the model owns it); only norm vectors are copied to float32. Activations are float32.
// The model keeps scratch buffers sized for the largest batch seen, so a decode step of one
// token allocates nothing after the first. A LlamaModel is not thread-safe: one Forward at a
// time (the Backend has the same rule). Different KvCaches may be used one after another.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/aligned_buffer.h"
#include "common/tensor.h"
#include "formats/model_config.h"
#include "formats/weight_store.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "model/logits_selection.h"
#include "model/paged_kv_cache.h"
#include "model/rope_frequencies.h"
#include "parallel/communicator.h"
#include "parallel/shard_plan.h"

namespace tessera {

// This rank's share of the model under tensor parallelism (DESIGN.md §4): query / KV heads,
// FFN features and vocabulary rows per tensor rank (ShardPlan::tensor), and the tensor group
// that the row-parallel layers all-reduce over and the LM head all-gathers over. The group
// must outlive the model; group->rank() selects this rank's entry of `ranks`.
// With `sequence_parallel` (Megatron SP) the residual stream and the RMSNorms run on each
// rank's chunk of the step's rows: the row-parallel layers reduce-scatter over rows instead
// of all-reducing, and an all-gather of the normed rows precedes each column-parallel layer.
//
// With `deterministic` the row-parallel layers (O, down) are split by output rows instead:
// each rank all-gathers the layer's input, computes its rows of the output over the whole
// input, and the outputs are all-gathered. Every sum is then computed whole on one rank, as
// one rank computes it, so with a batch-invariant backend the results are bit-equal to one
// rank's; it moves about the same bytes as the all-reduce. Not with sequence parallelism.
struct TensorParallelShard {
  std::vector<TensorShard> ranks;
  Communicator* group = nullptr;
  bool sequence_parallel = false;
  bool deterministic = false;
};

// Called during Load with (bytes done, bytes total) of the weights validated and paged in.
using LoadProgressCallback = std::function<void(int64_t done_bytes, int64_t total_bytes)>;

// A ProgressCallback drawing common/progress_bar.h's bar on stderr ("loading <label>").
LoadProgressCallback MakeProgressBarCallback(std::string label);

// One step of several sequences for ForwardPaged: their new tokens flattened in batch order.
// Row i is token_ids[i] at positions[i]; sequences[s] owns rows [query_start, query_start +
// num_queries) and its block table (kernels/paged_kv.h, filled from an engine StepPlan).
// logits_rows lists the rows whose next-token logits are wanted, in the order they are
// returned; hidden_rows those whose final-norm hidden state is wanted (contrastive search).
// All spans are viewed, not copied.
struct PagedBatch {
  std::span<const int32_t> token_ids;
  std::span<const int32_t> positions;
  std::span<const PagedSequence> sequences;
  std::span<const int64_t> logits_rows;
  std::span<const int64_t> hidden_rows = {};
};

// A pipeline stage's activations (LlamaModel::ForwardPaged on a model loaded with a
// StageShard): every row of the batch after the previous stage's last layer, [rows,
// hidden_size] row-major. A stage without the embedding reads `input`; a stage without the
// LM head fills `output` instead of logits.
struct StageIo {
  std::span<const float> input;
  std::vector<float>* output = nullptr;
};

class LlamaModel {
 public:
  // Validates the config (ModelConfig::Validate) and that every tensor exists with the shape
  // the config implies: matrices in f32/f16/bf16 or a block type whose block divides the
  // row, norms in f32/f16/bf16. Errors are INVALID_ARGUMENT naming the tensor with the
  // expected vs actual shape ("tensor blk.0.ffn_down.weight: expected shape [576, 1536],
  // got [1536, 576]"), a missing one included ("missing tensor blk.3.attn_k.weight ...").
  // output.weight is optional: without it the LM head is token_embd.weight (tied). An
  // optional rope_freqs.weight divides the RoPE frequencies (rope_frequencies.h).
  // Touches every weight page once (so that the first forward does not pay the page
  // faults) and reports progress in bytes. `store` and `backend` must outlive the model.
  // With `tensor_parallel` (null: the whole model) the model keeps views of this rank's
  // slices only (Q/K/V, gate/up, embedding and LM head rows; O and down columns), caches
  // hold its KV heads, and every rank of the group must make the same Forward calls in the
  // same order: the results (logits, hidden states) are the whole model's on every rank.
  // The collectives run on the backend's memory: the group's communicator must exchange
  // buffers of that memory (Communicator::device_buffers() equals !host_addressable(), e.g.
  // NCCL with the cuda backend, MPI with the CPU ones), else FAILED_PRECONDITION.
  // INVALID_ARGUMENT for slices that do not fit the model or its quantization blocks.
  // With `stage` (null: every layer, the embedding and the LM head) the model holds that
  // pipeline stage's contiguous layers only, and the embedding / LM head when the stage has
  // them; its caches hold those layers.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(
      const WeightStore& store, Backend* backend, LoadProgressCallback progress = nullptr,
      const TensorParallelShard* tensor_parallel = nullptr, const StageShard* stage = nullptr);

  const ModelConfig& config() const { return config_; }
  // The KV heads this rank holds (config().num_kv_heads without tensor parallelism): the
  // geometry of the caches it takes.
  int64_t local_kv_heads() const { return local_kv_heads_; }
  bool sequence_parallel() const { return sequence_parallel_; }
  // The pipeline stage this model runs (every layer and both ends when loaded whole).
  const StageShard& stage() const { return stage_; }
  bool is_whole() const {
    return stage_.has_embedding && stage_.has_lm_head && stage_.layers.begin == 0 &&
           stage_.layers.end == config_.num_layers;
  }
  Backend* backend() const { return backend_; }
  // Whether ForwardPaged may pad decode batches and hand them to Backend::RunStep, on a
  // backend that records steps (default true; false: --enforce-eager).
  void set_record_decode_steps(bool on) { record_decode_steps_ = on; }
  // How many packed copies the backend made (Q/K/V and gate/up count once when stacked).
  int64_t packed_weight_count() const { return static_cast<int64_t>(packed_weights_.size()); }
  const RopeFrequencies& rope() const { return rope_; }

  // A cache for up to `max_tokens` positions (0 = the model's context length).
  [[nodiscard]] absl::StatusOr<KvCache> NewKvCache(int64_t max_tokens = 0) const;

  // Runs `tokens` at positions [start_pos, start_pos + tokens.size()), reading cache rows
  // [0, start_pos) and writing rows [start_pos, start_pos + n); afterwards
  // cache.num_tokens() == start_pos + n. `logits` receives vocab_size floats for the last
  // token, or [n, vocab_size] row-major when `all_logits`.
  // Errors, checked before anything is written to the cache: INVALID_ARGUMENT for empty
  // `tokens`, a token outside [0, vocab_size), start_pos < 0 or > cache.num_tokens() (a
  // gap), or a cache whose geometry does not match the model; OUT_OF_RANGE when
  // start_pos + n exceeds cache.max_tokens() (the message has both numbers). An error from
  // the backend afterwards is returned as is and leaves the cache rows undefined.
  [[nodiscard]] absl::Status Forward(std::span<const int32_t> tokens, int64_t start_pos,
                                     KvCache& cache, bool all_logits,
                                     std::vector<float>* logits);

  // A cache of `num_blocks` blocks of `block_size` tokens with this model's geometry, whose
  // elements are `dtype` (kF32 or kF16; PagedKvCache::Create).
  [[nodiscard]] absl::StatusOr<PagedKvCache> NewPagedKvCache(
      int64_t num_blocks, int64_t block_size, DType dtype = DType::kF32) const;

  // Runs every row of `batch` at once (one MatMul per weight over all rows), writing each
  // row's K/V into its slot of `cache` (through its sequence's block table) and attending
  // over the sequence's cached positions [0, context_len). `logits` receives
  // [batch.logits_rows.size(), vocab_size] row-major (empty when no row is asked for), and
  // `hidden_states` (may be null when batch.hidden_rows is empty) [hidden_rows.size(),
  // hidden_size]: each row after the final RMSNorm, the input of the LM head.
  // Each sequence's result equals Forward of that sequence alone (within the backend's
  // rounding: the same kernels run on the same rows).
  // Errors, checked before anything is written to the cache: INVALID_ARGUMENT for empty
  // token_ids, positions of another length, a token outside [0, vocab_size), a logits row
  // (or hidden row) outside [0, rows), a cache whose geometry does not match the model, or a bad sequence,
  // position, block id (kernels/paged_kv.h's checks, naming the field). An error from the
  // backend afterwards is returned as is and leaves the written cache slots undefined.
  // A pipeline stage reads io.input instead of embedding the tokens (INVALID_ARGUMENT when
  // it does not hold rows x hidden_size floats) and, without the LM head, writes
  // io.output instead of logits and hidden states (both are then left empty).
  // With a `selection` whose wants name one per logits row (a model with the LM head), the
  // rows are reduced where the logits are (model/logits_selection.h): kArgMax rows to their
  // argmax (Backend::ArgMaxRows), kTopK rows to their candidates (Backend::TopKRows), and
  // `logits` receives only the rows that come back whole, at selection->row_index (INVALID_ARGUMENT
  // for a want of another count, or a kTopK want without a k > 0 and temperature > 0). On a
  // device backend the other rows' logits never leave it.
  [[nodiscard]] absl::Status ForwardPaged(const PagedBatch& batch, PagedKvCache& cache,
                                          std::vector<float>* logits,
                                          std::vector<float>* hidden_states = nullptr,
                                          StageIo io = {},
                                          LogitsSelection* selection = nullptr);

 private:
  struct Layer {
    const float* attn_norm = nullptr;  // [hidden], in norms_
    TensorView wq, wk, wv, wo;     // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
    const float* ffn_norm = nullptr;   // [hidden], in norms_
    TensorView w_gate, w_up, w_down;  // [ffn, hidden] x2, [hidden, ffn]
    // When the backend packs them together: Q, K and V stacked, and gate and up stacked
    // (views with `packed` set and no data); one MatMul then covers each pair of inputs.
    TensorView wqkv, w_gate_up;
  };

  LlamaModel() = default;
  // Grows the scratch buffers (in the backend's memory) to n_tokens rows.
  [[nodiscard]] absl::Status EnsureScratch(int64_t n_tokens);
  // Copies the norm vectors into one buffer in the backend's memory (Load).
  [[nodiscard]] absl::Status UploadNorms(const std::vector<const std::vector<float>*>& norms);
  // `rows` rows of `hidden` floats at `src` (backend memory) into `dst` (host memory).
  [[nodiscard]] absl::Status RowsToHost(const float* src, int64_t rows, float* dst);
  // *buffer (in the backend's memory) holding at least `floats` floats: grown when smaller.
  [[nodiscard]] absl::StatusOr<float*> Floats(std::unique_ptr<BackendBuffer>* buffer,
                                              int64_t floats);
  // A collective of the tensor group on backend memory: the backend's queued work first.
  [[nodiscard]] absl::Status BeforeCollective() { return backend_->Synchronize(); }
  [[nodiscard]] absl::Status RunLayer(int64_t layer_index, int64_t n, int64_t start_pos,
                                      KvCache& cache);
  // xn = RMSNorm(residual) with the attention norm, then q, k, v = xn · Wq, Wk, Wv for n rows:
  // one MatMul over the stacked copy when there is one.
  [[nodiscard]] absl::Status ProjectQkv(const Layer& layer, int64_t n, float* q, float* k,
                                        float* v);
  // xn = RMSNorm(residual) with the FFN norm, then act = silu(xn · Wgate) * (xn · Wup),
  // [n, local FFN features].
  [[nodiscard]] absl::Status GateUp(const Layer& layer, int64_t n, float* act);
  // y = rows [i0, i0 + count) of xn · Wᵀ, xn = RMSNorm(residual) with `norm_weight`: normed
  // here with the projection (Backend::RmsNormMatMul), or, under sequence parallelism, as
  // NormAllRows gathered them (the caller runs it first).
  [[nodiscard]] absl::Status NormMatMul(const float* norm_weight, int64_t i0,
                                        int64_t count, const TensorView& w, float* y);
  // Packs this stage's matrices with the backend (Q/K/V and gate/up stacked where it can),
  // touches the pages of the rest, reporting progress in bytes.
  [[nodiscard]] absl::Status PackOrTouchWeights(const WeightStore& store,
                                                const LoadProgressCallback& progress);
  // The second half of a layer, shared by both KV layouts: attn_ · Wo + residual, then the
  // SwiGLU MLP + residual, over the n rows of the scratch buffers.
  [[nodiscard]] absl::Status OutputProjectionAndMlp(const Layer& layer, int64_t n);
  // The paged twin of RunLayer (llama_model_paged.cc); slots_ holds the row slots.
  [[nodiscard]] absl::Status RunPagedLayer(int64_t layer_index, const PagedBatch& batch,
                                           PagedKvCache& cache);
  [[nodiscard]] absl::Status CheckPagedBatch(const PagedBatch& batch,
                                             const PagedKvCache& cache) const;
  // Restricts the loaded views to this rank's slices (llama_model_tp.cc).
  [[nodiscard]] absl::Status ApplyTensorParallel(const TensorParallelShard& shard);
  // x[i] = embedding of tokens[i]: with tensor parallelism each rank looks up the tokens in
  // its vocabulary rows, zeros elsewhere, and the sum over the group fills every row.
  [[nodiscard]] absl::Status Embed(std::span<const int32_t> tokens, float* x);
  // Sums `count` floats over the tensor group.
  [[nodiscard]] absl::Status ReduceOverTensorGroup(float* data, int64_t count);
  // Under sequence parallelism a step's n rows are padded to tp equal chunks; rank r's
  // residual rows are chunk r. Without it the chunk is all n rows.
  int64_t RowChunk(int64_t n) const;
  // xn = RMSNorm(residual) with `weight` for all n rows: the input of a column-parallel
  // layer (gathered from every rank's chunk under sequence parallelism).
  [[nodiscard]] absl::Status NormAllRows(const float* weight, int64_t n, float* xn);
  // residual += `partial` (n rows of a row-parallel layer's partial sums) summed over the
  // group: all-reduced, or reduce-scattered to this rank's chunk. Overwrites `partial`.
  [[nodiscard]] absl::Status AddRowParallel(float* partial, int64_t n);
  // The residual of all n rows (gathered under sequence parallelism) for the final norm.
  [[nodiscard]] absl::StatusOr<const float*> FullResidual(int64_t n);
  // residual += input · Wᵀ for a row-parallel layer: `input` is this rank's columns
  // [n, in_ranges[rank].size()] of the layer's input, whose ranks' columns are `in_ranges`.
  [[nodiscard]] absl::Status RowParallel(const float* input, int64_t n, const TensorView& w,
                                         const std::vector<ShardRange>& in_ranges);
  // out [n, ranges.back().end] = every rank's columns `local` [n, ranges[rank].size()]
  // placed at its range (an all-gather of equal, padded chunks).
  [[nodiscard]] absl::Status GatherColumns(const float* local, int64_t n,
                                           const std::vector<ShardRange>& ranges, float* out);
  // logits [rows, vocab_size] of `rows` final-norm rows: this rank's vocabulary rows, then
  // gathered from the group.
  [[nodiscard]] absl::Status LmHead(const float* normed, int64_t rows, float* logits);
  // The same into host memory (through a backend buffer when the host cannot read it).
  [[nodiscard]] absl::Status LmHeadToHost(const float* normed, int64_t rows, float* logits);
  // The LM head's rows reduced on the backend as selection->wants say (ForwardPaged).
  [[nodiscard]] absl::Status LmHeadSelect(const float* normed, int64_t rows,
                                          LogitsSelection* selection, std::vector<float>* logits);
  // The same from the first `rows` logits rows `all` (backend memory) the LM head wrote,
  // which the wants' edits change in place.
  [[nodiscard]] absl::Status SelectFromLogits(float* all, int64_t rows,
                                              LogitsSelection* selection,
                                              std::vector<float>* logits);
  // The row count ForwardPaged pads `batch` to for a recorded decode step
  // (Backend::RunStep; llama_model_graphs.cc), 0 when it runs as usual: a whole model
  // without tensor parallelism, one row per sequence, every row's logits and no hidden rows,
  // on a backend that records steps of that size.
  int64_t RecordedDecodeRows(const PagedBatch& batch) const;
  // ForwardPaged of such a batch (checked, slots_ mapped) padded to `padded` rows.
  [[nodiscard]] absl::Status ForwardRecordedDecode(const PagedBatch& batch, int64_t padded,
                                                   PagedKvCache& cache,
                                                   std::vector<float>* logits,
                                                   std::vector<float>* hidden_states,
                                                   LogitsSelection* selection);

  // x_ = the batch's input rows: embedded tokens on the first stage, else `input` (this
  // rank's chunk of it under sequence parallelism).
  [[nodiscard]] absl::Status StageInput(std::span<const int32_t> tokens,
                                        std::span<const float> input);

  ModelConfig config_;
  StageShard stage_;
  Backend* backend_ = nullptr;
  // The backend's packed copies of the MatMul weights (Backend::PackWeight), which the
  // views' `packed` point to.
  std::vector<std::unique_ptr<PackedWeight>> packed_weights_;
  TensorView token_embd_;
  TensorView lm_head_;  // output.weight or token_embd.weight
  const float* output_norm_ = nullptr;   // [hidden], in norms_
  std::unique_ptr<BackendBuffer> norms_;  // every norm vector, in the backend's memory
  std::vector<Layer> layers_;
  RopeFrequencies rope_;
  RopeParams rope_params_;
  AttentionParams attn_params_;
  PagedAttentionParams paged_params_;

  // This rank's share: the whole model unless tensor-parallel.
  int64_t local_heads_ = 0, local_kv_heads_ = 0, local_ffn_ = 0;
  ShardRange vocab_;                      // rows of token_embd_ / lm_head_ held here
  std::vector<ShardRange> vocab_ranges_;  // every tensor rank's, for the logits gather
  Communicator* tensor_group_ = nullptr;  // null: one rank
  bool sequence_parallel_ = false;
  // In the backend's memory (they feed collectives, which run on device buffers with NCCL):
  std::unique_ptr<BackendBuffer> chunk_, full_x_;  // sequence parallelism: a chunk; all rows
  // Every tensor rank's query columns and FFN features (the inputs of O and down), and
  // under `deterministic` its rows of O's and down's output.
  std::vector<ShardRange> q_ranges_, ffn_ranges_, hidden_ranges_;
  bool deterministic_ = false;
  std::unique_ptr<BackendBuffer> full_input_, output_part_;
  std::unique_ptr<BackendBuffer> local_logits_, gather_send_, gather_recv_;
  std::vector<int32_t> local_ids_;
  std::vector<int64_t> local_rows_;

  // Scratch, sized for scratch_tokens_ rows.
  int64_t scratch_tokens_ = 0;
  // In the backend's memory:
  std::unique_ptr<BackendBuffer> x_, xn_, q_, attn_, gate_, up_;
  std::unique_ptr<BackendBuffer> k_, v_;     // ForwardPaged's new K/V rows before WriteKv
  std::unique_ptr<BackendBuffer> stacked_;   // a stacked MatMul's output rows (Q|K|V or gate|up)
  std::unique_ptr<BackendBuffer> outputs_;   // logits / hidden rows when the host cannot read
                                             // the backend's memory
  std::vector<int32_t> positions_;           // host: ops take index spans from the host
  int64_t stacked_width_ = 0;    // its widest row, 0 when no layer is stacked
  std::vector<int32_t> slots_;   // ForwardPaged's slot mapping
  // A recorded decode step's padded rows (ForwardRecordedDecode).
  std::vector<int32_t> step_ids_, step_positions_;
  std::vector<PagedSequence> step_sequences_;
  static constexpr int32_t kPaddingTable[1] = {0};  // the padding rows' block table
  bool record_decode_steps_ = true;
};

}  // namespace tessera
