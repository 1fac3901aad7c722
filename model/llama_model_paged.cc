// LlamaModel::ForwardPaged: the batched forward over a paged KV cache (llama_model.h).
// Same operations as the contiguous Forward, run over all rows of the batch at once; only
// the attention differs: K/V rows go through WriteKv into their slots and PagedAttention
// reads each sequence through its block table.
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/llama_model.h"

namespace tessera {

absl::StatusOr<PagedKvCache> LlamaModel::NewPagedKvCache(int64_t num_blocks,
                                                         int64_t block_size,
                                                         DType dtype) const {
  return PagedKvCache::Create(static_cast<int64_t>(layers_.size()), num_blocks, block_size,
                              local_kv_heads_, config_.head_dim, dtype, backend_);
}

absl::Status LlamaModel::CheckPagedBatch(const PagedBatch& batch,
                                         const PagedKvCache& cache) const {
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(batch.token_ids.size());
  if (n == 0) return absl::InvalidArgumentError("ForwardPaged: batch.token_ids is empty");
  if (static_cast<int64_t>(batch.positions.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ForwardPaged: batch.positions has ", batch.positions.size(), " entries, token_ids ", n));
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = batch.token_ids[static_cast<size_t>(i)];
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("ForwardPaged: batch.token_ids[", i, "] = ",
                                                     t, " is outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
    }
  }
  if (static_cast<int64_t>(batch.logits_rows.size()) > n) {
    return absl::InvalidArgumentError(absl::StrCat("ForwardPaged: batch.logits_rows has ",
                                                   batch.logits_rows.size(),
                                                   " entries, more than the ", n, " rows"));
  }
  for (const auto& [field, rows] : {std::pair{"logits_rows", batch.logits_rows},
                                    std::pair{"hidden_rows", batch.hidden_rows}}) {
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t r = rows[i];
      if (r < 0 || r >= n) {
        return absl::InvalidArgumentError(absl::StrCat("ForwardPaged: batch.", field, "[", i,
                                                       "] = ", r, " is outside [0, ", n, ")"));
      }
    }
  }
  const PagedKvLayout& layout = cache.layout();
  const int64_t num_layers = static_cast<int64_t>(layers_.size());
  if (cache.num_layers() != num_layers || layout.num_kv_heads != local_kv_heads_ ||
      layout.head_dim != c.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ForwardPaged: paged KV cache geometry (layers ", cache.num_layers(), ", kv heads ",
        layout.num_kv_heads, ", head_dim ", layout.head_dim, ") does not match the model (",
        num_layers, ", ", local_kv_heads_, ", ", c.head_dim, ")"));
  }
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    if (batch.sequences[s].context_len > c.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ForwardPaged: batch.sequences[", s, "].context_len ", batch.sequences[s].context_len,
          " exceeds the model's context length ", c.max_position_embeddings));
    }
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::RunPagedLayer(int64_t layer_index, const PagedBatch& batch,
                                       PagedKvCache& cache) {
  const Layer& layer = layers_[static_cast<size_t>(layer_index)];
  const int64_t n = static_cast<int64_t>(batch.token_ids.size());
  float* q = q_->as<float>();
  float* k = k_->as<float>();
  float* v = v_->as<float>();
  float* attn = attn_->as<float>();
  const KvPool& pool = cache.pool(layer_index);
  Backend& b = *backend_;

  RETURN_IF_ERROR(ProjectQkv(layer, n, q, k, v));
  b.Rope(q, n, local_heads_, batch.positions, rope_params_);
  b.Rope(k, n, local_kv_heads_, batch.positions, rope_params_);
  RETURN_IF_ERROR(b.WriteKv(k, v, slots_, cache.layout(), pool));
  RETURN_IF_ERROR(b.PagedAttention(q, n, batch.positions, batch.sequences, cache.layout(), pool,
                                   paged_params_, attn));
  return OutputProjectionAndMlp(layer, n);
}

absl::Status LlamaModel::ForwardPaged(const PagedBatch& batch, PagedKvCache& cache,
                                      std::vector<float>* logits,
                                      std::vector<float>* hidden_states, StageIo io,
                                      LogitsSelection* selection) {
  if (logits == nullptr) return absl::InvalidArgumentError("ForwardPaged: logits is null");
  if (selection != nullptr && !stage_.has_lm_head) {
    return absl::InvalidArgumentError(
        "ForwardPaged: a logits selection on a stage without the LM head");
  }
  if (selection != nullptr) {
    RETURN_IF_ERROR(
        CheckLogitsSelection(*selection, static_cast<int64_t>(batch.logits_rows.size()),
                             config_.vocab_size));
  }
  if (hidden_states == nullptr && !batch.hidden_rows.empty()) {
    return absl::InvalidArgumentError("ForwardPaged: batch.hidden_rows given but hidden_states is null");
  }
  RETURN_IF_ERROR(CheckPagedBatch(batch, cache));
  const size_t rows_in = batch.token_ids.size() * static_cast<size_t>(config_.hidden_size);
  if (!stage_.has_embedding && io.input.size() != rows_in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ForwardPaged: io.input has ", io.input.size(), " floats; this pipeline stage needs ",
        rows_in, " (rows x hidden_size)"));
  }
  if (!stage_.has_lm_head && io.output == nullptr) {
    return absl::InvalidArgumentError("ForwardPaged: io.output is null on a stage without the LM head");
  }
  // Validates the sequences, positions and block tables before any slot is written.
  RETURN_IF_ERROR(ComputeSlotMapping(batch.sequences, batch.positions, cache.layout(), &slots_));
  if (const int64_t padded = RecordedDecodeRows(batch); padded > 0) {
    return ForwardRecordedDecode(batch, padded, cache, logits, hidden_states, selection);
  }
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(batch.token_ids.size());
  RETURN_IF_ERROR(EnsureScratch(n));

  float* xn = xn_->as<float>();
  RETURN_IF_ERROR(StageInput(batch.token_ids, io.input));
  for (size_t l = 0; l < layers_.size(); ++l) {
    RETURN_IF_ERROR(RunPagedLayer(static_cast<int64_t>(l), batch, cache));
  }

  const int64_t hidden = c.hidden_size;
  ASSIGN_OR_RETURN(const float* all_rows, FullResidual(n));
  if (!stage_.has_lm_head) {  // the next stage goes on from these rows
    logits->clear();
    if (hidden_states != nullptr) hidden_states->clear();
    io.output->resize(static_cast<size_t>(n * hidden));
    return RowsToHost(all_rows, n, io.output->data());
  }
  if (hidden_states != nullptr) {
    // Normed into xn's first rows, then to the host (xn is free until the logits rows).
    const int64_t h_rows = static_cast<int64_t>(batch.hidden_rows.size());
    hidden_states->resize(static_cast<size_t>(h_rows * hidden));
    for (int64_t i = 0; i < h_rows; ++i) {
      backend_->RmsNorm(all_rows + batch.hidden_rows[static_cast<size_t>(i)] * hidden,
                        output_norm_, 1, hidden, static_cast<float>(c.rms_norm_eps),
                        xn + i * hidden);
    }
    RETURN_IF_ERROR(RowsToHost(xn, h_rows, hidden_states->data()));
  }
  // Final norm of the wanted rows only, gathered into xn (row by row: no host copies).
  const int64_t rows = static_cast<int64_t>(batch.logits_rows.size());
  if (selection != nullptr) {
    logits->clear();
    selection->argmax.clear();
    selection->candidates.clear();
    selection->drawn.clear();
    selection->denominators.clear();
    selection->log_normalizers.clear();
    selection->row_index.clear();
  } else {
    logits->resize(static_cast<size_t>(rows * c.vocab_size));
  }
  if (rows == 0) return absl::OkStatus();
  for (int64_t i = 0; i < rows; ++i) {
    backend_->RmsNorm(all_rows + batch.logits_rows[static_cast<size_t>(i)] * hidden,
                      output_norm_, 1, hidden, static_cast<float>(c.rms_norm_eps),
                      xn + i * hidden);
  }
  if (selection != nullptr) return LmHeadSelect(xn, rows, selection, logits);
  return LmHeadToHost(xn, rows, logits->data());
}

}  // namespace tessera
