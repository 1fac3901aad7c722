// The decoding parameters of one request: the Hugging Face transformers GenerationConfig
// fields Tessera supports (same names, same defaults as transformers'
// `_get_default_generation_params`), plus the OpenAI-style extras a server needs
// (frequency/presence penalties, logit bias, seed, stop token ids, logprobs).
//
// Plain data; Validate() is the one place that decides which values are legal, so the
// processors and samplers built from a validated config may assume them. Parsing a
// generation_config.json ignores unknown keys and rejects ill-typed known keys
// (INVALID_ARGUMENT naming the key).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera {

// transformers' `early_stopping`: true, false or "never" (beam search only).
enum class EarlyStopping { kFalse, kTrue, kNever };

// transformers' `sequence_bias` entry: `bias` is added to the logit of the last id of `ids`
// whenever the sequence's ids end with all but the last of `ids`.
struct SequenceBias {
  std::vector<int32_t> ids;
  float bias = 0.0f;
  bool operator==(const SequenceBias&) const = default;
};

struct GenerationConfig {
  // The largest `logprobs` (top alternatives per token) a request may ask for (OpenAI's 20).
  static constexpr int64_t kMaxLogprobs = 20;
  // Limits on stop_strings: how many, and bytes per string.
  static constexpr size_t kMaxStopStrings = 16;
  static constexpr size_t kMaxStopStringBytes = 256;
  static constexpr int64_t kMaxBestOf = 64;
  static constexpr int64_t kMaxBeams = 256;

  // --- Strategy (transformers' get_generation_mode) ---
  bool do_sample = false;
  int64_t num_beams = 1;
  int64_t num_beam_groups = 1;     // > 1: diverse (group) beam search
  double diversity_penalty = 0.0;  // diverse beam search: subtracted per token another group chose
  double penalty_alpha = 0.0;      // > 0 with top_k > 1 and greedy: contrastive search
  double length_penalty = 1.0;     // beam score = sum logprob / length^length_penalty
  EarlyStopping early_stopping = EarlyStopping::kFalse;
  int64_t num_return_sequences = 1;
  // OpenAI / vLLM `best_of`: sample this many sequences (sharing the prompt's KV) and return
  // the num_return_sequences with the highest cumulative logprob. Unset: num_return_sequences.
  std::optional<int64_t> best_of;

  // --- Length ---
  std::optional<int64_t> max_new_tokens;  // unset: the server's limit
  std::optional<int64_t> max_length;      // prompt + new tokens; max_new_tokens wins when both
  int64_t min_new_tokens = 0;             // EOS and stop ids are masked until this many

  // --- Logits processors (applied to every strategy) ---
  double repetition_penalty = 1.0;  // transformers (CTRL) semantics over prompt + generated ids
  double frequency_penalty = 0.0;   // OpenAI semantics over generated ids only, in [-2, 2]
  double presence_penalty = 0.0;    // OpenAI semantics over generated ids only, in [-2, 2]
  int64_t no_repeat_ngram_size = 0;
  std::map<int32_t, float> logit_bias;  // OpenAI: token id -> bias in [-100, 100]
  std::vector<SequenceBias> sequence_bias;
  std::vector<std::vector<int32_t>> bad_words_ids;

  // --- Sampling warpers (only when do_sample) ---
  double temperature = 1.0;
  int64_t top_k = 50;  // 0: off
  double top_p = 1.0;
  double min_p = 0.0;  // 0: off
  double typical_p = 1.0;

  // --- Stopping, randomness, outputs ---
  std::vector<int32_t> eos_token_ids;   // transformers' eos_token_id (one or many)
  std::vector<int32_t> stop_token_ids;  // further ids that end generation (vLLM's name)
  // transformers' pad_token_id; only diverse beam search reads it (what a finished group
  // feeds the diversity penalty). Unset: eos_token_ids[0], as transformers defaults it.
  std::optional<int32_t> pad_token_id;
  // Texts that end generation (transformers' `stop_strings`, OpenAI's `stop`): output stops
  // before the first occurrence, which is not returned (decoding/stop_strings.h).
  std::vector<std::string> stop_strings;
  // transformers' `max_time`: seconds of generation after which the request ends with what
  // it has (FinishReason::kDeadline). Unset: no limit.
  std::optional<double> max_time;
  std::optional<uint64_t> seed;         // unset: the server picks one per request
  // Unset: no logprobs. N: the chosen token's log-probability plus the N most likely
  // alternatives, in [0, kMaxLogprobs].
  std::optional<int64_t> logprobs;

  // INVALID_ARGUMENT naming the first field whose value (or combination with another
  // field) transformers would reject or that makes no sense; see the .cc for the rules.
  [[nodiscard]] absl::Status Validate() const;

  // transformers' GenerationMode for this config.
  bool IsBeamSearch() const { return num_beams > 1; }
  bool IsContrastiveSearch() const {
    return num_beams == 1 && !do_sample && penalty_alpha > 0 && top_k > 1;
  }
  bool IsGroupBeamSearch() const { return num_beams > 1 && num_beam_groups > 1; }

  bool operator==(const GenerationConfig&) const = default;
};

// Reads the fields above from a parsed generation_config.json object, starting from
// `base` (transformers' defaults unless given). Unknown keys are ignored; a known key with
// the wrong type is INVALID_ARGUMENT naming `source` and the key. JSON null means "unset"
// (keeps the base value). The result is validated.
[[nodiscard]] absl::StatusOr<GenerationConfig> GenerationConfigFromJson(const nlohmann::json& j,
                                                                        std::string_view source,
                                                                        GenerationConfig base = {});

// Every field of `config` under the names GenerationConfigFromJson reads, so that
// GenerationConfigFromJson(GenerationConfigToJson(c), ...) == c (how a request's settings
// travel from the coordinator to a replica's leader).
nlohmann::json GenerationConfigToJson(const GenerationConfig& config);

// Same from a file. NOT_FOUND if it cannot be opened, INVALID_ARGUMENT if it is not JSON.
[[nodiscard]] absl::StatusOr<GenerationConfig> GenerationConfigFromJsonFile(
    const std::string& path, GenerationConfig base = {});

}  // namespace tessera
