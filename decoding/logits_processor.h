// Logits processors: each rewrites one sequence's row of next-token logits in place, given
// the ids the sequence holds (prompt followed by the tokens generated so far). Semantics
// follow Hugging Face transformers' generation/logits_process.py; a removed token gets
// -infinity. Processors are immutable after construction and safe to call from any thread
// on different rows.
//
// LogitsProcessorChain::Create builds, from a GenerationConfig, the list transformers'
// `_get_logits_processor` would build for a decoder-only model, in its order:
//   1. sequence bias    (logit_bias as one-token sequences, plus sequence_bias)
//   1b. Hamming diversity (diverse beam search: diversity_penalty per earlier-group choice)
//   2. repetition penalty
//   3. frequency / presence penalties (OpenAI; not in transformers, kept with the penalties)
//   4. no-repeat n-gram
//   5. bad words        (single EOS ids are dropped from the list, as transformers does)
//   6. min new tokens   (EOS and stop ids -> -inf while fewer than min_new_tokens generated)
//   then, only when do_sample:
//   7. temperature, 8. top-k, 9. top-p, 10. min-p, 11. typical-p
// Warpers keep at least `min_tokens_to_keep` tokens: 1, or (number of EOS ids + 1) for
// beam sampling, as transformers does.
//
// Processors 1 and 2-6 change a few tokens each (penalty_processors.h): when the chain
// starts with them (no Hamming diversity among them), Edits gives what they do to a row as
// per-token LogitEdits, which a backend applies where the logits are (Backend::EditLogits);
// the selections below (top_k_candidates, nucleus, plain sampling) then describe the rest of
// the chain over the edited row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "decoding/generation_config.h"
#include "kernels/logit_edit.h"

namespace tessera {

// The ids of one sequence: prompt + generated, contiguous, and where the prompt ends.
struct TokenHistory {
  std::span<const int32_t> ids;
  size_t prompt_len = 0;
  // Diverse beam search only: the tokens the earlier beam groups chose at this step.
  std::span<const int32_t> earlier_groups_tokens = {};

  std::span<const int32_t> generated() const { return ids.subspan(prompt_len); }
  size_t num_generated() const { return ids.size() - prompt_len; }
};

class LogitsProcessor {
 public:
  virtual ~LogitsProcessor() = default;
  // A short stable name ("top_p"), for tests and debugging.
  virtual std::string_view name() const = 0;
  // `logits` is one row of vocabulary size; ids in `history` are < logits.size() (ids beyond
  // it are ignored). NaN inputs give unspecified (but memory-safe) outputs.
  virtual void Apply(const TokenHistory& history, std::span<float> logits) const = 0;
};

// The top-k selection a chain's draw depends on (see LogitsProcessorChain::top_k_candidates).
struct TopKSelection {
  int64_t k = 0;
  float temperature = 1.0f;
};

// The nucleus a chain's draw depends on (see LogitsProcessorChain::nucleus).
struct NucleusSelection {
  float temperature = 1.0f;
  double top_p = 1.0;  // 1: none
  double min_p = 0.0;  // 0: none
  int64_t min_keep = 1;
};

class LogitsProcessorChain {
 public:
  LogitsProcessorChain() = default;
  LogitsProcessorChain(LogitsProcessorChain&&) = default;
  LogitsProcessorChain& operator=(LogitsProcessorChain&&) = default;

  // Validates `config` and checks every token id it names is < vocab_size (INVALID_ARGUMENT
  // naming the field). Processors that would change nothing are left out.
  [[nodiscard]] static absl::StatusOr<LogitsProcessorChain> Create(const GenerationConfig& config,
                                                                   int32_t vocab_size);

  // Applies every processor in order. logits.size() must be the vocab_size given to Create.
  void Apply(const TokenHistory& history, std::span<float> logits) const;

  // Whether the chain starts with processors that change a few tokens each (Edits).
  bool has_edits() const { return edit_count_ > 0; }
  // Whether those are all the chain holds (greedy decoding is then the argmax of the row
  // after Edits).
  bool only_edits() const { return edit_count_ == processors_.size(); }
  // What those first processors do to a row of this history: one LogitEdit per token they
  // change (row 0), tokens ascending. ApplyLogitEdit of each to its logit, then
  // ApplyPastEdits, is Apply, bit for bit.
  std::vector<LogitEdit> Edits(const TokenHistory& history) const;
  // Applies the processors past those (all of them when has_edits() is false).
  void ApplyPastEdits(const TokenHistory& history, std::span<float> logits) const;

  // In what follows, "the row" is the row after Edits (the raw row without them).
  // Set when the rest of the chain is sampling warpers only (temperature, top-k below the
  // vocabulary size, then any of top-p and min-p): every token outside TopKOfRow(row, k, temperature)
  // (common/row_top_k.h) ends at -inf, and nothing decides on the others from values outside
  // that set. ApplyToCandidates over just those tokens, in ascending id order, then leaves
  // them exactly as Apply leaves them in the whole row.
  const std::optional<TopKSelection>& top_k_candidates() const { return top_k_candidates_; }
  // Set when the rest of the chain is sampling with no processor but the temperature (1 when
  // there is none): it then divides the row by it, and a draw needs nothing else
  // (SampleRows).
  const std::optional<float>& plain_sampling_temperature() const {
    return plain_sampling_temperature_;
  }
  // Set when the rest of the chain is the temperature (or none), then top-p and / or min-p, without
  // top-k: a draw then needs the row's most likely tokens down to what those keep and (for
  // top-p) the row's softmax denominator at the temperature, nothing else (ApplyToNucleus).
  const std::optional<NucleusSelection>& nucleus() const { return nucleus_; }
  // ApplyPastEdits for a chain with nucleus(), over `candidates`: the values, in ascending id
  // order, of the row's most likely tokens (every token more likely than a candidate
  // included; all of the row when there are vocab_size of them), whose whole row has softmax
  // denominator `denominator` = Σ exp(l / T - max) at the temperature
  // (Backend::SoftmaxDenominators; unused without top-p). False (and `candidates` left
  // divided by the temperature only) when what top-p or min-p keeps reaches past the
  // candidates; else they are left as ApplyPastEdits leaves them in the whole row (min-p exactly;
  // top-p up to float64 rounding, of the denominator and of the left-out mass taken as
  // 1 - the candidates' probability, where a cumulative probability meets 1 - top_p).
  bool ApplyToNucleus(std::span<float> candidates, double denominator) const;
  // ApplyPastEdits for a chain with top_k_candidates(), over the values of those candidates
  // only (any number of them; they must include every token TopKOfRow selects).
  void ApplyToCandidates(const TokenHistory& history, std::span<float> candidates) const;

  std::vector<std::string_view> names() const;
  bool empty() const { return processors_.empty(); }
  int32_t vocab_size() const { return vocab_size_; }
  // Appends a processor at the end (custom processors, tests). The chain then no longer
  // offers top_k_candidates(), nucleus() or plain_sampling_temperature().
  void Append(std::unique_ptr<LogitsProcessor> processor);

 private:
  std::vector<std::unique_ptr<LogitsProcessor>> processors_;
  size_t edit_count_ = 0;  // the first processors, all SparseLogitsProcessors (Edits)
  int32_t vocab_size_ = 0;
  std::optional<TopKSelection> top_k_candidates_;
  std::optional<float> plain_sampling_temperature_;
  std::optional<NucleusSelection> nucleus_;
};

}  // namespace tessera
