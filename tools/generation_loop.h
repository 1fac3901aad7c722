// The single-sequence decoding loop behind `tessera generate`: prefill the prompt, then at
// each step let a Sampler (decoding/sampler.h: the request's logits processors, then argmax
// or a seeded draw) pick the next token from the last row of logits, until a stop id,
// `max_new_tokens` or the model's context is reached. Beam search, contrastive search and
// several sequences per request belong to the engine's decoding strategies, not here.
//
// The same prompt, sampler config and seed give the same tokens on every run (the sampler's
// draws are keyed by position, not by a stateful RNG). Timings are wall-clock. Not
// thread-safe: it drives one LlamaModel.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "decoding/sampler.h"
#include "engine/sequence.h"
#include "model/llama_model.h"

namespace tessera {

// The engine's FinishReason (engine/sequence.h): this loop ends with kLength
// (max_new_tokens or the model's context reached), kStop (a stop id was chosen, or the
// callback saw a stop string) or kDeadline (max_time), named by FinishReasonName.

struct GenerationLimits {
  int64_t max_new_tokens = 0;
  // Ids that end generation when chosen (EOS and stop token ids); the stop token itself is
  // not emitted. The sampler's config should name them too, so that min_new_tokens masks them.
  std::vector<int32_t> stop_ids;
  // Generation ends with FinishReason::kDeadline once this much time has passed since the
  // start (prefill included), with the tokens so far (transformers' max_time).
  absl::Duration max_time = absl::InfiniteDuration();
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;  // emitted through on_token (stop token excluded)
  int64_t decode_steps = 0;      // one-token forwards after the prefill
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  FinishReason finish_reason = FinishReason::kLength;
  int32_t stop_token = -1;  // the stop id chosen, when finish_reason is kStop
  double PrefillTokensPerSecond() const {
    return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0.0;
  }
  double DecodeTokensPerSecond() const {
    return decode_seconds > 0 ? decode_steps / decode_seconds : 0.0;
  }
};

// Calls on_token for each generated token in order, with its logprob and top alternatives
// when the sampler's config asks for logprobs; it returns whether to go on (false: the
// caller saw a stop string, and the loop ends with FinishReason::kStop). The sampler's
// vocabulary must be the model's. An error from on_token or the model ends the loop and is
// returned; FAILED_PRECONDITION if the logits processors removed every token. `stats` may
// be null.
using TokenCallback = std::function<absl::StatusOr<bool>(const SampleResult&)>;
[[nodiscard]] absl::Status GenerateSequence(LlamaModel& model, std::span<const int32_t> prompt,
                                            const Sampler& sampler, const GenerationLimits& limits,
                                            const TokenCallback& on_token, GenerationStats* stats);

}  // namespace tessera
