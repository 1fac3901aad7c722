// `tessera generate --json`: one JSON object per returned sequence, on one line of stdout:
//   {"index": 0, "text": "...", "token_ids": [...],
//    "logprobs": [{"token_id": 1, "text": "...", "logprob": -0.1,
//                  "top_logprobs": [{"token_id": .., "text": .., "logprob": ..}, ...]}, ...],
//    "cumulative_logprob": -1.5, "finish_reason": "stop" | "length",
//    "stop_token_id": 2 | null, "prompt_tokens": 7, "seed": 42}
// Logprobs are log-softmax of the model's raw logits (before penalties and warpers, as
// vLLM reports them); "top_logprobs" is present only when alternatives were asked for
// (--logprobs N). The stop token is not part of token_ids, logprobs or the cumulative sum.
// Invalid UTF-8 in texts (a token holding part of a character) becomes U+FFFD.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "decoding/sampler.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"
#include "tools/generation_loop.h"

namespace tessera {

struct GeneratedSequence {
  std::string text;
  std::vector<SampleResult> tokens;
  FinishReason finish_reason = FinishReason::kLength;
  int32_t stop_token = -1;
};

struct SequenceJsonOptions {
  int64_t index = 0;
  int64_t prompt_tokens = 0;
  uint64_t seed = 0;
  bool top_logprobs = false;
};

nlohmann::json SequenceToJson(const Tokenizer& tokenizer, const GeneratedSequence& sequence,
                              const SequenceJsonOptions& options);

// One line of compact JSON (no trailing newline), invalid UTF-8 replaced.
std::string JsonLine(const nlohmann::json& j);

}  // namespace tessera
