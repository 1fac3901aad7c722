// Turns a scheduler StepPlan into the model's batch: the scheduled sequences' new tokens
// flattened in plan order, their positions, one PagedSequence per entry (viewing the plan's
// block tables), and the rows whose logits decoding needs (the last row of each entry with
// needs_logits). Pure data plumbing, no model or scheduler state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/step_plan.h"
#include "kernels/paged_kv.h"
#include "model/llama_model.h"

namespace tessera {

struct StepBatch {
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;
  std::vector<PagedSequence> sequences;  // block tables view the plan: it must outlive this
  std::vector<int64_t> logits_rows;
  std::vector<size_t> logits_entries;  // plan.sequences index of each logits row
  // Every row of the entries that want hidden states, and the entry of each.
  std::vector<int64_t> hidden_rows;
  std::vector<size_t> hidden_entries;

  // A view for LlamaModel::ForwardPaged; valid while this StepBatch is unchanged.
  PagedBatch view() const { return {token_ids, positions, sequences, logits_rows, hidden_rows}; }
};

StepBatch BuildStepBatch(const StepPlan& plan);

// The plan's copy-on-write pairs in the kernels' type.
std::vector<KvBlockCopy> ToKvBlockCopies(const std::vector<BlockCopy>& copies);

}  // namespace tessera
