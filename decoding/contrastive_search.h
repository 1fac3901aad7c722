// Contrastive search (Su et al., 2022) as transformers 4.x's `_contrastive_search`: each
// step takes the top_k tokens of softmax(processed logits), runs every candidate through the
// model (here: one fork per candidate, decoded in the next engine step), and keeps the one
// maximising (1 - penalty_alpha) * p - penalty_alpha * max cosine similarity between its
// last-layer hidden state and those of the whole context (prompt and chosen tokens).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "decoding/beam_candidates.h"
#include "decoding/decoding_strategy.h"

namespace tessera {

class ContrastiveSearchStrategy : public DecodingStrategy {
 public:
  // `config` must be valid and IsContrastiveSearch().
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ContrastiveSearchStrategy>> Create(
      const GenerationConfig& config, const StrategyOptions& options, SequenceId first);

  int width() const override { return top_k_; }
  bool wants_hidden_states() const override { return true; }
  void AddContextHidden(int64_t position, std::span<const float> hidden) override;
  absl::StatusOr<StrategyDecision> Step(std::span<const StrategyRow> rows) override;
  absl::Status BindForks(std::span<const SequenceId> fork_ids) override;
  std::vector<StrategyResult> Results() const override;
  std::vector<StrategyResult> PartialResults(FinishReason reason) const override;
  std::vector<SequenceId> LiveSequences() const override;

 private:
  struct CandidateSeq {
    SequenceId seq_id = -1;
    int32_t token = 0;
    double prob = 0.0;         // under softmax(processed logits)
    float raw_logprob = 0.0f;  // under log_softmax(raw logits)
  };

  ContrastiveSearchStrategy(LogitsProcessorChain chain, const GenerationConfig& config,
                            const StrategyOptions& options, SequenceId first);
  // Candidates for the step after `row`, which continues `row.seq_id`.
  StrategyDecision Expand(const StrategyRow& row);

  LogitsProcessorChain chain_;
  StrategyOptions options_;
  int top_k_;
  double alpha_;
  SequenceId first_;
  size_t prompt_len_ = 0;
  std::map<int64_t, std::vector<float>> prompt_hidden_;  // by position
  std::vector<std::vector<float>> chosen_hidden_;        // of each chosen token
  std::vector<CandidateSeq> candidates_;                 // empty before the first step
  TopAlternatives candidates_top_;  // alternatives of the row the candidates came from
  StrategyResult result_;
  bool done_ = false;
};

}  // namespace tessera
