// `tessera generate --input FILE.jsonl`: the offline batch API. Every non-blank input line
// is one request, run together through the engine's continuous-batching scheduler
// (worker/batch_runner.h) on one model; a progress bar on stderr counts finished requests.
//
// Input line: a JSON object with
//   "id"        optional string (or integer); default: the 1-based line number, as a string.
//   "prompt"    string (wrapped as one user message when --chat is given), or
//   "messages"  [{"role": ..., "content": ...}, ...] through the chat template (--chat-template
//               or the model's), content never parsed for control tokens (chat_prompt.h).
//   decoding settings under their generation_config.json names (max_new_tokens, max_length,
//   do_sample, temperature, top_k, top_p, min_p, typical_p, repetition_penalty,
//   frequency_penalty, presence_penalty, no_repeat_ngram_size, min_new_tokens, seed,
//   logit_bias, bad_words_ids, stop_token_ids, num_beams, num_beam_groups,
//   diversity_penalty, length_penalty, early_stopping, penalty_alpha, ...), "n" (or
//   "num_return_sequences") for parallel sampling or the beams returned, and "priority" (lower is
//   more urgent; read with --priority-scheduling).
// The decoding flags of the command line (decoding_flags.h) are the defaults every line
// starts from; a setting on a line overrides them for that line only. max_new_tokens is the
// line's max_new_tokens / max_length, else the flags' (default 128), capped by the model's
// context. "logprobs": N adds each token's logprob (of the raw logits) and its N most likely
// alternatives to the completion, with "cumulative_logprob".
//
// Output: one JSON line per input line, in input order whatever the finishing order:
//   {"id": "...", "completions": [{"index": 0, "text": "...", "token_ids": [...],
//    "finish_reason": "stop" | "length", "stop_token_id": 2 | null,
//    "score": -0.41 (beam and contrastive search only),
//    "logprobs": [{"token_id": 1, "logprob": -0.2, "top_logprobs": [...]}, ...],
//    "cumulative_logprob": -3.1 (the last two when the line asks for "logprobs")}, ...],
//    "usage": {"prompt_tokens": 7, "completion_tokens": 12}}
// token_ids and text exclude the stop token (as single `tessera generate` does); a line's
// "stop_strings" end a completion's text before the first one (its tokens are kept);
// completion_tokens counts every generated token of every completion, stop tokens included.
// A line that cannot run (not JSON, no prompt, an invalid setting, refused by admission)
// gives {"id": ..., "error": {"code": "INVALID_ARGUMENT", "message": "line 3: ..."}} with the
// absl status code name and a message naming the field, and the run goes on.
//
// Exit status: 0 when every line succeeded, 1 when any line failed (or the model failed),
// 2 for bad usage (unreadable --input, unwritable --output, bad flags).
#pragma once

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "model/llama_model.h"
#include "tools/decoding_flags.h"
#include "tools/engine_flags.h"
#include "worker/model_group.h"

namespace tessera {

// The flags only batch mode reads; each needs --input.
struct BatchFlags : EngineFlags {
  std::string input;
  std::string output;  // empty: stdout

  CLI::Option* input_option = nullptr;
};

// Registers --input, --output and the engine flags on `app`; `flags` must outlive it. The
// engine flags need --input unless `engine_flags_need_input` is false (tessera-worker,
// whose engine also serves a coordinator).
void AddBatchFlags(CLI::App* app, BatchFlags* flags, bool engine_flags_need_input = true);

// What batch mode shares with single-prompt `tessera generate`.
struct BatchGenerateOptions {
  std::string model;
  std::string backend;
  int threads = 0;
  bool deterministic = false;
  bool no_pack_weights = false;  // BackendOptions::pack_weights off
  bool fp8_weights = false;      // BackendOptions::fp8_weights (--quantization fp8)
  bool chat = false;
  std::string chat_template_file;
  const DecodingFlags* decoding = nullptr;  // not null
  const BatchFlags* batch = nullptr;        // not null
  // tessera-worker's leader: its tensor-parallel shard and the leader side of its group,
  // whose followers run the same steps (worker/model_group.h). Null: one rank.
  const TensorParallelShard* tensor_parallel = nullptr;
  const StageShard* stage = nullptr;
  ModelGroupLeader* model_group = nullptr;
  RankRole role = {};  // with pipeline stages (worker/stage_runner.h)
};

// Runs the batch; returns the exit status above.
int RunBatchGenerate(const BatchGenerateOptions& options);

}  // namespace tessera
