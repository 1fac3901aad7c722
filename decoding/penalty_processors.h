// The logits processors that apply to every decoding strategy (not only sampling):
// sequence bias / logit bias / bad words, repetition, frequency and presence penalties,
// no-repeat n-grams and min-new-tokens. See logits_processor.h for the contract and order.
// All but the Hamming diversity penalty touch a few tokens of the row each, through one step
// of a LogitEdit (kernels/logit_edit.h): the chain can then hand a backend their edits to
// apply where the logits are.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "decoding/logits_processor.h"
#include "kernels/logit_edit.h"

namespace tessera {

// A processor that changes a few tokens of a row, each by one step of a LogitEdit: Apply
// builds its edits and applies them, and a run of such processors gives each token's edits
// of the whole run at once (LogitsProcessorChain::Edits), which apply in step order.
class SparseLogitsProcessor : public LogitsProcessor {
 public:
  // Adds this processor's step to `edits` (keyed by token; a new entry's token is set) for
  // every token it changes in a row of `vocab_size` (ids outside it are ignored).
  virtual void AddEdits(const TokenHistory& history, int32_t vocab_size,
                        std::map<int32_t, LogitEdit>& edits) const = 0;
  void Apply(const TokenHistory& history, std::span<float> logits) const final;
};

// transformers' SequenceBiasLogitsProcessor (and NoBadWordsLogitsProcessor, which is this
// with bias -inf): a one-token sequence biases its token always; a longer one biases its
// last token when the ids end with the rest. Biases of the same token add up.
class SequenceBiasProcessor : public SparseLogitsProcessor {
 public:
  // Keys are token sequences (non-empty); a later duplicate replaces an earlier one. `step`
  // is kEditBias (before the penalties) or kEditLateBias (bad words, after them).
  SequenceBiasProcessor(std::string name, std::map<std::vector<int32_t>, float> biases,
                        LogitEditStep step = kEditBias);
  std::string_view name() const override { return name_; }
  void AddEdits(const TokenHistory& history, int32_t vocab_size,
                std::map<int32_t, LogitEdit>& edits) const override;

 private:
  std::string name_;
  LogitEditStep step_;
  std::vector<std::pair<int32_t, float>> single_;  // (token, bias)
  std::vector<std::pair<std::vector<int32_t>, float>> multi_;
};

// transformers' HammingDiversityLogitsProcessor: each token's score loses `penalty` times
// the number of earlier beam groups' beams that chose it at this step
// (history.earlier_groups_tokens).
class HammingDiversityProcessor : public LogitsProcessor {
 public:
  explicit HammingDiversityProcessor(float penalty) : penalty_(penalty) {}
  std::string_view name() const override { return "hamming_diversity"; }
  void Apply(const TokenHistory& history, std::span<float> logits) const override;

 private:
  float penalty_;
};

// transformers' RepetitionPenaltyLogitsProcessor: every distinct id of prompt + generated
// has its logit multiplied by `penalty` if negative, else divided by it (once per id).
class RepetitionPenaltyProcessor : public SparseLogitsProcessor {
 public:
  explicit RepetitionPenaltyProcessor(float penalty) : penalty_(penalty) {}
  std::string_view name() const override { return "repetition_penalty"; }
  void AddEdits(const TokenHistory& history, int32_t vocab_size,
                std::map<int32_t, LogitEdit>& edits) const override;

 private:
  float penalty_;
};

// OpenAI's frequency and presence penalties over the GENERATED ids only (the prompt does not
// count, as in the OpenAI API and vLLM): logit[j] -= count[j] * frequency + (count[j] > 0) *
// presence.
class FrequencyPresencePenaltyProcessor : public SparseLogitsProcessor {
 public:
  FrequencyPresencePenaltyProcessor(double frequency, double presence)
      : frequency_(frequency), presence_(presence) {}
  std::string_view name() const override { return "frequency_presence_penalty"; }
  void AddEdits(const TokenHistory& history, int32_t vocab_size,
                std::map<int32_t, LogitEdit>& edits) const override;

 private:
  double frequency_;
  double presence_;
};

// transformers' NoRepeatNGramLogitsProcessor over prompt + generated: a token that would
// complete an n-gram already present gets -inf.
class NoRepeatNGramProcessor : public SparseLogitsProcessor {
 public:
  explicit NoRepeatNGramProcessor(int64_t ngram_size) : n_(ngram_size) {}
  std::string_view name() const override { return "no_repeat_ngram"; }
  void AddEdits(const TokenHistory& history, int32_t vocab_size,
                std::map<int32_t, LogitEdit>& edits) const override;

 private:
  int64_t n_;
};

// transformers' MinNewTokensLengthLogitsProcessor: `ids` get -inf while fewer than
// `min_new_tokens` tokens have been generated.
class MinNewTokensProcessor : public SparseLogitsProcessor {
 public:
  MinNewTokensProcessor(int64_t min_new_tokens, std::vector<int32_t> ids)
      : min_new_tokens_(min_new_tokens), ids_(std::move(ids)) {}
  std::string_view name() const override { return "min_new_tokens"; }
  void AddEdits(const TokenHistory& history, int32_t vocab_size,
                std::map<int32_t, LogitEdit>& edits) const override;

 private:
  int64_t min_new_tokens_;
  std::vector<int32_t> ids_;
};

}  // namespace tessera
