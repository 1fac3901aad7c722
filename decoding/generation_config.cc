#include "decoding/generation_config.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace tessera {
namespace {

absl::Status FieldError(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrFormat("generation config: field '%s' %s", field, why));
}

absl::Status CheckIds(std::string_view field, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    if (id < 0) return FieldError(field, absl::StrFormat("holds a negative token id %d", id));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status GenerationConfig::Validate() const {
  // Individual values. transformers' warpers reject these in their constructors.
  if (!std::isfinite(temperature) || temperature < 0) {
    return FieldError("temperature", absl::StrFormat("must be >= 0 (is %g)", temperature));
  }
  if (do_sample && temperature == 0) {
    return FieldError("temperature",
                      "must be > 0 when do_sample is true (set do_sample=false for greedy)");
  }
  if (top_k < 0) return FieldError("top_k", absl::StrFormat("must be >= 0 (is %d)", top_k));
  if (!(top_p > 0 && top_p <= 1)) {
    return FieldError("top_p", absl::StrFormat("must be in (0, 1] (is %g)", top_p));
  }
  if (!(min_p >= 0 && min_p <= 1)) {
    return FieldError("min_p", absl::StrFormat("must be in [0, 1] (is %g)", min_p));
  }
  if (!(typical_p > 0 && typical_p <= 1)) {
    return FieldError("typical_p", absl::StrFormat("must be in (0, 1] (is %g)", typical_p));
  }
  if (!std::isfinite(repetition_penalty) || !(repetition_penalty > 0)) {
    return FieldError("repetition_penalty",
                      absl::StrFormat("must be > 0 (is %g)", repetition_penalty));
  }
  if (!(frequency_penalty >= -2 && frequency_penalty <= 2)) {
    return FieldError("frequency_penalty",
                      absl::StrFormat("must be in [-2, 2] (is %g)", frequency_penalty));
  }
  if (!(presence_penalty >= -2 && presence_penalty <= 2)) {
    return FieldError("presence_penalty",
                      absl::StrFormat("must be in [-2, 2] (is %g)", presence_penalty));
  }
  if (no_repeat_ngram_size < 0) {
    return FieldError("no_repeat_ngram_size",
                      absl::StrFormat("must be >= 0 (is %d)", no_repeat_ngram_size));
  }
  if (min_new_tokens < 0) {
    return FieldError("min_new_tokens", absl::StrFormat("must be >= 0 (is %d)", min_new_tokens));
  }
  if (max_new_tokens.has_value() && *max_new_tokens <= 0) {
    return FieldError("max_new_tokens", absl::StrFormat("must be > 0 (is %d)", *max_new_tokens));
  }
  if (max_length.has_value() && *max_length <= 0) {
    return FieldError("max_length", absl::StrFormat("must be > 0 (is %d)", *max_length));
  }
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0) {
      return FieldError("logit_bias", absl::StrFormat("holds a negative token id %d", id));
    }
    if (!(bias >= -100 && bias <= 100)) {
      return FieldError(
          "logit_bias",
          absl::StrFormat("bias of token %d must be in [-100, 100] (is %g)", id, bias));
    }
  }
  for (const SequenceBias& sb : sequence_bias) {
    if (sb.ids.empty()) return FieldError("sequence_bias", "holds an empty token sequence");
    if (auto s = CheckIds("sequence_bias", sb.ids); !s.ok()) return s;
    if (!std::isfinite(sb.bias)) return FieldError("sequence_bias", "holds a non-finite bias");
  }
  for (const std::vector<int32_t>& word : bad_words_ids) {
    if (word.empty()) return FieldError("bad_words_ids", "holds an empty token sequence");
    if (auto s = CheckIds("bad_words_ids", word); !s.ok()) return s;
  }
  if (auto s = CheckIds("eos_token_id", eos_token_ids); !s.ok()) return s;
  if (auto s = CheckIds("stop_token_ids", stop_token_ids); !s.ok()) return s;
  if (pad_token_id.has_value()) {
    if (auto s = CheckIds("pad_token_id", {*pad_token_id}); !s.ok()) return s;
  }
  if (stop_strings.size() > kMaxStopStrings) {
    return FieldError("stop_strings", absl::StrFormat("holds %d strings, at most %d are allowed",
                                                      stop_strings.size(), kMaxStopStrings));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    if (stop_strings[i].empty()) {
      return FieldError("stop_strings", absl::StrFormat("[%d] is empty", i));
    }
    if (stop_strings[i].size() > kMaxStopStringBytes) {
      return FieldError("stop_strings", absl::StrFormat("[%d] has %d bytes, at most %d", i,
                                                        stop_strings[i].size(),
                                                        kMaxStopStringBytes));
    }
  }
  if (max_time.has_value() && !(*max_time > 0 && std::isfinite(*max_time))) {
    return FieldError("max_time", absl::StrFormat("must be > 0 seconds (is %g)", *max_time));
  }
  if (logprobs.has_value() && (*logprobs < 0 || *logprobs > kMaxLogprobs)) {
    return FieldError("logprobs",
                      absl::StrFormat("must be in [0, %d] (is %d)", kMaxLogprobs, *logprobs));
  }

  // Beam search and its relatives (transformers 4.x GenerationConfig.validate).
  if (num_beams < 1 || num_beams > kMaxBeams) {
    return FieldError("num_beams",
                      absl::StrFormat("must be in [1, %d] (is %d)", kMaxBeams, num_beams));
  }
  if (num_beam_groups < 1) {
    return FieldError("num_beam_groups", absl::StrFormat("must be >= 1 (is %d)", num_beam_groups));
  }
  if (num_beam_groups > num_beams) {
    return FieldError("num_beam_groups", absl::StrFormat("(%d) must be <= num_beams (%d)",
                                                         num_beam_groups, num_beams));
  }
  if (num_beams % num_beam_groups != 0) {
    return FieldError("num_beam_groups", absl::StrFormat("(%d) must divide num_beams (%d)",
                                                         num_beam_groups, num_beams));
  }
  if (!std::isfinite(diversity_penalty) || diversity_penalty < 0) {
    return FieldError("diversity_penalty",
                      absl::StrFormat("must be >= 0 (is %g)", diversity_penalty));
  }
  if (num_beam_groups > 1) {
    if (do_sample) {
      return FieldError("num_beam_groups",
                        "> 1 (diverse beam search) cannot be used with do_sample");
    }
    if (diversity_penalty == 0) {
      return FieldError("diversity_penalty",
                        "must be > 0 with num_beam_groups > 1, otherwise the groups are identical");
    }
  }
  if (!(penalty_alpha >= 0 && penalty_alpha <= 1)) {
    return FieldError("penalty_alpha", absl::StrFormat("must be in [0, 1] (is %g)", penalty_alpha));
  }
  if (penalty_alpha > 0) {
    // Contrastive search is a greedy method over top_k candidates.
    if (num_beams > 1) {
      return FieldError("penalty_alpha", "> 0 (contrastive search) cannot be used with num_beams > 1");
    }
    if (do_sample) {
      return FieldError("penalty_alpha", "> 0 (contrastive search) cannot be used with do_sample");
    }
    if (top_k <= 1) {
      return FieldError("penalty_alpha",
                        absl::StrFormat("> 0 (contrastive search) needs top_k > 1 (is %d)", top_k));
    }
  }
  if (!std::isfinite(length_penalty)) return FieldError("length_penalty", "must be finite");
  if (num_return_sequences < 1) {
    return FieldError("num_return_sequences",
                      absl::StrFormat("must be >= 1 (is %d)", num_return_sequences));
  }
  if (num_return_sequences > 1) {
    if (num_beams == 1 && !do_sample) {
      return FieldError("num_return_sequences",
                        absl::StrFormat("(%d) must be 1 for greedy decoding without beams",
                                        num_return_sequences));
    }
    if (num_beams > 1 && num_return_sequences > num_beams) {
      return FieldError("num_return_sequences", absl::StrFormat("(%d) must be <= num_beams (%d)",
                                                                num_return_sequences, num_beams));
    }
  }
  if (best_of.has_value()) {
    if (*best_of < num_return_sequences || *best_of > kMaxBestOf) {
      return FieldError("best_of", absl::StrFormat("must be in [num_return_sequences = %d, %d] "
                                                   "(is %d)",
                                                   num_return_sequences, kMaxBestOf, *best_of));
    }
    if (*best_of > num_return_sequences && (!do_sample || num_beams > 1)) {
      return FieldError("best_of", "> num_return_sequences needs do_sample (without beams)");
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
