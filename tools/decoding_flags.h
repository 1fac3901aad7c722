// The decoding flags of `tessera generate`, named after transformers' GenerationConfig
// fields in kebab case (--top-k is top_k), and how they combine with a
// generation_config.json into one validated GenerationConfig: transformers' defaults, then
// the file (--generation-config), then every flag given on the command line.
//
// As in transformers, decoding is greedy unless --do-sample; the sampling warpers
// (--temperature, --top-k (default 50), --top-p, --min-p, --typical-p) only act when
// sampling. Modes the single-sequence loop cannot run yet (beam search, contrastive search,
// more than one returned sequence) are rejected, not ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "decoding/generation_config.h"

namespace tessera {

// What `tessera generate` generates at most when neither a flag nor the file says.
inline constexpr int64_t kDefaultMaxNewTokens = 128;

struct DecodingFlags {
  std::string generation_config_file;
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 50;
  double top_p = 1.0;
  double min_p = 0.0;
  double typical_p = 1.0;
  double repetition_penalty = 1.0;
  double frequency_penalty = 0.0;
  double presence_penalty = 0.0;
  int64_t no_repeat_ngram_size = 0;
  int64_t min_new_tokens = 0;
  int64_t max_new_tokens = kDefaultMaxNewTokens;  // --max-new-tokens or --max-tokens
  uint64_t seed = 0;
  int64_t logprobs = 0;
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop_strings;
  double max_time = 0.0;
  int64_t num_beams = 1;
  int64_t num_beam_groups = 1;
  double diversity_penalty = 0.0;
  double penalty_alpha = 0.0;
  double length_penalty = 1.0;
  std::string early_stopping = "false";
  int64_t num_return_sequences = 1;
  int64_t best_of = 1;

  // The options AddDecodingFlags registered, to tell which ones the command line gave.
  std::vector<std::pair<std::string, const CLI::Option*>> options;
  bool Given(std::string_view flag) const;
};

// Registers the flags on `app`; `flags` must outlive it.
void AddDecodingFlags(CLI::App* app, DecodingFlags* flags);

struct DecodingSettings {
  GenerationConfig config;  // validated
  // --max-new-tokens / --max-tokens when given (0 allowed: generate nothing).
  std::optional<int64_t> max_new_tokens_flag;
  // Flags that change nothing as given (sampling flags without --do-sample).
  std::vector<std::string> warnings;

  // The flag, else the config's max_new_tokens, else max_length minus the prompt, else
  // kDefaultMaxNewTokens.
  int64_t MaxNewTokens(int64_t prompt_tokens) const;
};

// INVALID_ARGUMENT for a bad value, with the message starting with the flag that gave it
// ("--top-k: generation config: field 'top_k' must be >= 0 (is -1)"), or with the file's
// path when the value came from the file; NOT_FOUND for an unreadable file;
// INVALID_ARGUMENT "--num-beams > 1 (beam search) is not supported yet by tessera generate"
// for the modes above.
[[nodiscard]] absl::StatusOr<DecodingSettings> ResolveDecodingFlags(const DecodingFlags& flags);

// `status` (a GenerationConfig error naming a field) with the flag that set the field, or
// the --generation-config file, in front of its message; unchanged when neither applies.
[[nodiscard]] absl::Status AttributeToFlag(const DecodingFlags& flags, const absl::Status& status);

}  // namespace tessera
