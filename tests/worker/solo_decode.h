// Test helper: what one request generates alone, through the contiguous LlamaModel::Forward
// (no paging, no batching): the reference the batched runner must reproduce.
#pragma once

#include <cstdint>
#include <vector>

#include "decoding/sampler.h"
#include "engine/sequence.h"
#include "model/llama_model.h"

namespace tessera::testing {

struct SoloResult {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
};

// Generates up to max_new_tokens after `prompt`, stopping after a token in `stop_ids`
// (kept) or at the model's context length. Greedy (ArgMax) when `sampler` is null, else
// sampler->Sample(history, row, sequence_index) as the runner calls it.
SoloResult SoloGenerate(LlamaModel& model, const std::vector<int32_t>& prompt,
                        int max_new_tokens, const std::vector<int32_t>& stop_ids,
                        const Sampler* sampler = nullptr, uint64_t sequence_index = 0);

}  // namespace tessera::testing
