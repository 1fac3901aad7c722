// Greedy decoding for `tessera generate` (sampling and the other strategies belong to the
// decoding/ layer): prefill the prompt, then pick the argmax token each step until a stop
// token, `max_tokens`, or the model's context is reached. Timings are wall-clock.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "model/llama_model.h"

namespace tessera {

struct GreedyStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;  // emitted through on_token (stop token excluded)
  int64_t decode_steps = 0;      // one-token forwards after the prefill
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  bool stopped = false;          // ended on a stop token
  double PrefillTokensPerSecond() const {
    return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0.0;
  }
  double DecodeTokensPerSecond() const {
    return decode_seconds > 0 ? decode_steps / decode_seconds : 0.0;
  }
};

// Index of the largest logit (the lowest index among ties).
int32_t ArgMax(std::span<const float> logits);

// Calls on_token for each generated token in order; an error from it or the model ends the
// loop and is returned. `stats` may be null.
[[nodiscard]] absl::Status GreedyGenerate(LlamaModel& model, std::span<const int32_t> prompt,
                                          int64_t max_tokens,
                                          const std::vector<int32_t>& stop_ids,
                                          const std::function<absl::Status(int32_t)>& on_token,
                                          GreedyStats* stats);

}  // namespace tessera
