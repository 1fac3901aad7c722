// LlamaModel's recorded decode steps (Backend::RunStep): a decode batch on a backend that
// records steps is padded to the backend's row bucket and run as one body (embedding, layers,
// final norm, LM head) that the backend may replay; the logits rows are reduced or copied
// afterwards, outside the recording.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/llama_model.h"

namespace tessera {

int64_t LlamaModel::RecordedDecodeRows(const PagedBatch& batch) const {
  const auto n = static_cast<int64_t>(batch.token_ids.size());
  if (!record_decode_steps_ || !is_whole() || tensor_group_ != nullptr ||
      !batch.hidden_rows.empty() || static_cast<int64_t>(batch.sequences.size()) != n ||
      static_cast<int64_t>(batch.logits_rows.size()) != n) {
    return 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    const PagedSequence& s = batch.sequences[static_cast<size_t>(i)];
    if (s.query_start != i || s.num_queries != 1 ||
        batch.logits_rows[static_cast<size_t>(i)] != i) {
      return 0;
    }
  }
  return backend_->GraphRows(n);
}

absl::Status LlamaModel::ForwardRecordedDecode(const PagedBatch& batch, int64_t padded,
                                               PagedKvCache& cache, std::vector<float>* logits,
                                               std::vector<float>* hidden_states,
                                               LogitsSelection* selection) {
  if (hidden_states != nullptr) hidden_states->clear();  // no hidden rows were asked for
  const ModelConfig& c = config_;
  const auto n = static_cast<int64_t>(batch.token_ids.size());
  const auto rows = static_cast<size_t>(padded);
  // Padding rows: token 0 at position 0, a context of one position in block 0 (read, never
  // written: their slot is the padding slot), so that every row attends to something finite.
  step_ids_.assign(batch.token_ids.begin(), batch.token_ids.end());
  step_ids_.resize(rows, 0);
  step_positions_.assign(batch.positions.begin(), batch.positions.end());
  step_positions_.resize(rows, 0);
  step_sequences_.assign(batch.sequences.begin(), batch.sequences.end());
  for (int64_t i = n; i < padded; ++i) {
    step_sequences_.push_back(PagedSequence{.query_start = i, .num_queries = 1,
                                            .context_len = 1, .block_table = kPaddingTable});
  }
  slots_.resize(rows, kPaddingSlot);
  int64_t max_context = 0;
  for (const PagedSequence& s : batch.sequences) {
    max_context = std::max(max_context, s.context_len);
  }

  RETURN_IF_ERROR(EnsureScratch(padded));
  const int64_t vocab = c.vocab_size;
  ASSIGN_OR_RETURN(float* all, Floats(&outputs_, padded * vocab));
  const PagedBatch step{.token_ids = step_ids_, .positions = step_positions_,
                        .sequences = step_sequences_, .logits_rows = {}};
  const auto body = [&]() -> absl::Status {
    RETURN_IF_ERROR(StageInput(step.token_ids, {}));
    for (size_t l = 0; l < layers_.size(); ++l) {
      RETURN_IF_ERROR(RunPagedLayer(static_cast<int64_t>(l), step, cache));
    }
    backend_->RmsNorm(x_->as<float>(), output_norm_, padded, c.hidden_size,
                      static_cast<float>(c.rms_norm_eps), xn_->as<float>());
    return LmHead(xn_->as<float>(), padded, all);
  };
  RETURN_IF_ERROR(backend_->RunStep({.rows = padded, .max_context = max_context}, body));
  if (selection != nullptr) return SelectFromLogits(all, n, selection, logits);
  logits->resize(static_cast<size_t>(n * vocab));
  return backend_->CopyFromBackend(logits->data(), all,
                                   static_cast<size_t>(n * vocab) * sizeof(float));
}

}  // namespace tessera
