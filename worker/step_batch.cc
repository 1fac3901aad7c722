#include "worker/step_batch.h"

namespace tessera {

StepBatch BuildStepBatch(const StepPlan& plan) {
  StepBatch batch;
  batch.token_ids.reserve(static_cast<size_t>(plan.num_batched_tokens));
  batch.positions.reserve(static_cast<size_t>(plan.num_batched_tokens));
  batch.sequences.reserve(plan.sequences.size());
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    const ScheduledSequence& e = plan.sequences[i];
    const int64_t start = static_cast<int64_t>(batch.token_ids.size());
    const int64_t m = static_cast<int64_t>(e.token_ids.size());
    batch.sequences.push_back({start, m, e.start_position + m, e.block_table});
    for (int64_t j = 0; j < m; ++j) {
      batch.token_ids.push_back(e.token_ids[static_cast<size_t>(j)]);
      batch.positions.push_back(static_cast<int32_t>(e.start_position + j));
      if (e.wants_hidden_states) {
        batch.hidden_rows.push_back(start + j);
        batch.hidden_entries.push_back(i);
      }
    }
    if (e.needs_logits && m > 0) {
      batch.logits_rows.push_back(start + m - 1);
      batch.logits_entries.push_back(i);
    }
  }
  return batch;
}

std::vector<KvBlockCopy> ToKvBlockCopies(const std::vector<BlockCopy>& copies) {
  std::vector<KvBlockCopy> out;
  out.reserve(copies.size());
  for (const BlockCopy& c : copies) out.push_back({c.src, c.dst});
  return out;
}

}  // namespace tessera
