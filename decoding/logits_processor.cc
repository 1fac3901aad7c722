#include "decoding/logits_processor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/row_nucleus.h"
#include "common/status_macros.h"
#include "decoding/penalty_processors.h"
#include "decoding/sampling_warpers.h"

namespace tessera {
namespace {

absl::Status CheckInVocab(std::string_view field, std::span<const int32_t> ids,
                          int32_t vocab_size) {
  for (int32_t id : ids) {
    if (id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "generation config: field '%s' holds token id %d, outside the vocabulary (size %d)",
          field, id, vocab_size));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckConfigIds(const GenerationConfig& c, int32_t vocab_size) {
  for (const auto& [id, bias] : c.logit_bias) {
    const int32_t one[] = {id};
    RETURN_IF_ERROR(CheckInVocab("logit_bias", one, vocab_size));
  }
  for (const SequenceBias& sb : c.sequence_bias) {
    RETURN_IF_ERROR(CheckInVocab("sequence_bias", sb.ids, vocab_size));
  }
  for (const auto& word : c.bad_words_ids) {
    RETURN_IF_ERROR(CheckInVocab("bad_words_ids", word, vocab_size));
  }
  RETURN_IF_ERROR(CheckInVocab("eos_token_id", c.eos_token_ids, vocab_size));
  RETURN_IF_ERROR(CheckInVocab("stop_token_ids", c.stop_token_ids, vocab_size));
  if (c.pad_token_id.has_value()) {
    const int32_t pad[] = {*c.pad_token_id};
    RETURN_IF_ERROR(CheckInVocab("pad_token_id", pad, vocab_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LogitsProcessorChain> LogitsProcessorChain::Create(const GenerationConfig& c,
                                                                  int32_t vocab_size) {
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("logits processor: vocab_size must be positive (is %d)", vocab_size));
  }
  RETURN_IF_ERROR(c.Validate());
  RETURN_IF_ERROR(CheckConfigIds(c, vocab_size));

  LogitsProcessorChain chain;
  chain.vocab_size_ = vocab_size;
  auto add = [&chain](auto p) { chain.processors_.push_back(std::move(p)); };

  // 1. Sequence bias. transformers keeps one dict; a sequence_bias entry for a single token
  // replaces the logit_bias one.
  std::map<std::vector<int32_t>, float> biases;
  for (const auto& [id, bias] : c.logit_bias) biases[{id}] = bias;
  for (const SequenceBias& sb : c.sequence_bias) biases[sb.ids] = sb.bias;
  if (!biases.empty()) {
    add(std::make_unique<SequenceBiasProcessor>("sequence_bias", std::move(biases)));
  }
  // 1b. Diverse beam search's penalty on the earlier groups' choices.
  if (c.IsGroupBeamSearch() && c.diversity_penalty > 0) {
    add(std::make_unique<HammingDiversityProcessor>(static_cast<float>(c.diversity_penalty)));
  }
  // 2-3. Penalties.
  if (c.repetition_penalty != 1.0) {
    add(std::make_unique<RepetitionPenaltyProcessor>(static_cast<float>(c.repetition_penalty)));
  }
  if (c.frequency_penalty != 0.0 || c.presence_penalty != 0.0) {
    add(std::make_unique<FrequencyPresencePenaltyProcessor>(c.frequency_penalty,
                                                            c.presence_penalty));
  }
  // 4. No-repeat n-gram.
  if (c.no_repeat_ngram_size > 0) {
    add(std::make_unique<NoRepeatNGramProcessor>(c.no_repeat_ngram_size));
  }
  // 5. Bad words: transformers drops the single-token entries that are an EOS id.
  std::map<std::vector<int32_t>, float> bad;
  for (const auto& word : c.bad_words_ids) {
    const bool is_eos =
        word.size() == 1 &&
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), word[0]) != c.eos_token_ids.end();
    if (!is_eos) bad[word] = -std::numeric_limits<float>::infinity();
  }
  if (!bad.empty()) {
    add(std::make_unique<SequenceBiasProcessor>("bad_words", std::move(bad), kEditLateBias));
  }
  // 6. Min new tokens: every id that would end the sequence is masked.
  std::vector<int32_t> end_ids = c.eos_token_ids;
  end_ids.insert(end_ids.end(), c.stop_token_ids.begin(), c.stop_token_ids.end());
  if (c.min_new_tokens > 0 && !end_ids.empty()) {
    add(std::make_unique<MinNewTokensProcessor>(c.min_new_tokens, std::move(end_ids)));
  }
  while (chain.edit_count_ < chain.processors_.size() &&
         dynamic_cast<const SparseLogitsProcessor*>(
             chain.processors_[chain.edit_count_].get()) != nullptr) {
    ++chain.edit_count_;  // 1 and 2-6 change a few tokens each (penalty_processors.h)
  }
  // 7-11. Sampling warpers.
  if (c.do_sample) {
    const int64_t min_keep =
        c.num_beams > 1 ? std::max<int64_t>(2, static_cast<int64_t>(c.eos_token_ids.size()) + 1)
                        : 1;
    if (c.temperature != 1.0) {
      add(std::make_unique<TemperatureWarper>(static_cast<float>(c.temperature)));
    }
    // With no processor but the edits and the temperature so far, a draw can do with less
    // than the (edited) row:
    // top-k's selection when the later warpers compare values within the row only
    // (typical-p needs the whole row's entropy); without top-k, what top-p and min-p keep
    // (and top-p's denominator); with no warper at all, the backend's own draw. Those paths
    // divide by the float temperature: it must neither underflow to 0 nor overflow to inf
    // (a double in range can); the whole row serves such requests.
    const float temperature = static_cast<float>(c.temperature);
    const size_t temperature_warpers = c.temperature != 1.0 ? 1 : 0;
    const bool selectable =
        chain.processors_.size() - chain.edit_count_ == temperature_warpers && temperature > 0 &&
        std::isfinite(temperature);
    if (selectable && c.top_k == 0 && (c.top_p < 1.0 || c.min_p > 0.0) &&
        c.typical_p >= 1.0) {
      chain.nucleus_ = NucleusSelection{temperature, c.top_p, c.min_p, min_keep};
    }
    const int64_t top_k = std::max<int64_t>(c.top_k, min_keep);
    if (selectable && c.top_k != 0 && top_k < vocab_size && c.typical_p >= 1.0) {
      chain.top_k_candidates_ = TopKSelection{top_k, temperature};
    }
    if (c.top_k != 0) add(std::make_unique<TopKWarper>(c.top_k, min_keep));
    if (c.top_p < 1.0) add(std::make_unique<TopPWarper>(c.top_p, min_keep));
    if (c.min_p > 0.0) add(std::make_unique<MinPWarper>(c.min_p, min_keep));
    if (c.typical_p < 1.0) add(std::make_unique<TypicalWarper>(c.typical_p, min_keep));
    if (selectable && chain.processors_.size() - chain.edit_count_ == temperature_warpers) {
      chain.plain_sampling_temperature_ = temperature;
    }
  }
  return chain;
}

bool LogitsProcessorChain::ApplyToNucleus(std::span<float> candidates,
                                          double denominator) const {
  TESSERA_CHECK_MSG(nucleus_.has_value(), "ApplyToNucleus on a chain without a nucleus");
  const NucleusSelection& n = *nucleus_;
  const bool whole_row = candidates.size() == static_cast<size_t>(vocab_size_);
  std::vector<double> p;
  double before = 0;
  if (n.top_p < 1.0) {
    // The left-out tokens are the least likely: the whole row's cut passes all of them
    // first, and must not stop among them.
    before = ProbabilityOutside(candidates, n.temperature, denominator, &p);
    if (before < 0 || before > 1.0 - n.top_p) return false;
  } else if (!whole_row && !MinPRemovesBelowCandidates(candidates, n.temperature, n.min_p)) {
    return false;
  }
  for (float& v : candidates) v /= n.temperature;  // as TemperatureWarper (exact for 1)
  if (n.top_p < 1.0) CutNucleus(candidates, p, before, n.top_p, n.min_keep);
  // Min-p compares with the most likely token, a candidate, and keeps the min_keep most
  // likely, candidates too: the warper itself over the candidates.
  for (const auto& processor : processors_) {
    if (processor->name() == "min_p") processor->Apply(TokenHistory{}, candidates);
  }
  return true;
}

void LogitsProcessorChain::ApplyToCandidates(const TokenHistory& history,
                                             std::span<float> candidates) const {
  TESSERA_CHECK_MSG(top_k_candidates_.has_value(),
                    "ApplyToCandidates on a chain without top_k_candidates");
  // Temperature is element-wise; top-k, top-p and min-p compare values and (for ties) ids,
  // whose order the candidates keep; the tokens left out are -inf in the whole row, where
  // they add exact zeros to every sum these warpers take.
  for (size_t i = edit_count_; i < processors_.size(); ++i) {
    processors_[i]->Apply(history, candidates);
  }
}

void LogitsProcessorChain::Apply(const TokenHistory& history, std::span<float> logits) const {
  TESSERA_CHECK_MSG(logits.size() == static_cast<size_t>(vocab_size_) || processors_.empty(),
                    "logits row size differs from the chain's vocab_size");
  for (const auto& p : processors_) p->Apply(history, logits);
}

std::vector<LogitEdit> LogitsProcessorChain::Edits(const TokenHistory& history) const {
  // Each token's steps apply in the order of LogitEditStep, which is the chain's order, and
  // each step reads only that token's logit: the combined edit is the processors in turn.
  std::map<int32_t, LogitEdit> edits;
  for (size_t i = 0; i < edit_count_; ++i) {
    static_cast<const SparseLogitsProcessor&>(*processors_[i]).AddEdits(history, vocab_size_,
                                                                       edits);
  }
  std::vector<LogitEdit> out;
  out.reserve(edits.size());
  for (const auto& [token, edit] : edits) out.push_back(edit);
  return out;
}

void LogitsProcessorChain::ApplyPastEdits(const TokenHistory& history,
                                          std::span<float> logits) const {
  TESSERA_CHECK_MSG(logits.size() == static_cast<size_t>(vocab_size_) || processors_.empty(),
                    "logits row size differs from the chain's vocab_size");
  for (size_t i = edit_count_; i < processors_.size(); ++i) processors_[i]->Apply(history, logits);
}

std::vector<std::string_view> LogitsProcessorChain::names() const {
  std::vector<std::string_view> out;
  for (const auto& p : processors_) out.push_back(p->name());
  return out;
}

void LogitsProcessorChain::Append(std::unique_ptr<LogitsProcessor> processor) {
  processors_.push_back(std::move(processor));
  top_k_candidates_.reset();
  plain_sampling_temperature_.reset();
  nucleus_.reset();
}

}  // namespace tessera
