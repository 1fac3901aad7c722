// `tessera generate` for beam search, diverse beam search and contrastive search (and
// several sequences per prompt, best_of included): the prompt runs as one request through the
// engine (worker/batch_runner.h), whose DecodingStrategy returns num_return_sequences sequences,
// best first. Text mode prints each sequence's text (separated by a line "--- sequence i
// (score s) ---" when there are several); --json prints one object per sequence as
// tools/generation_json.h describes, plus "score" (the beam score, length-penalised, or the
// cumulative logprob). Nothing streams: beams are only final at the end.
#pragma once

#include <cstdint>
#include <span>

#include "decoding/generation_config.h"
#include "tools/model_session.h"

namespace tessera {

struct StrategyGenerateOptions {
  bool json = false;
  bool top_logprobs = false;   // --logprobs N was given: print the alternatives
  int64_t max_new_tokens = 0;  // resolved, >= 1, within the context
  uint64_t default_seed = 0;
};

// Runs the request and prints it; returns the CLI exit status (1 on an engine failure, with
// the message on stderr).
int RunStrategyGenerate(ModelSession& session, std::span<const int32_t> prompt,
                        const GenerationConfig& config, const StrategyGenerateOptions& options);

}  // namespace tessera
