// Diverse (group) beam search as transformers 4.x's `_group_beam_search` with its
// BeamSearchScorer: num_beams split into num_beam_groups groups searched one after the other
// at each step; a group's scores lose diversity_penalty for every beam of an earlier group
// that chose the same token this step (Hamming diversity, in the processor chain). Each
// group keeps its own n-best list of finished hypotheses (BeamHypotheses) and is done by its
// `early_stopping` rule; at the end the unfinished groups' running beams join their lists
// and the best num_return_sequences hypotheses over all groups are returned. As the scorer
// does, a hypothesis that hit any end id ends with eos_token_ids[0] (the first end id), and
// a done group feeds pad_token_id to the later groups' diversity penalty.
#pragma once

#include <cstdint>
#include <vector>

#include "decoding/beam_candidates.h"
#include "decoding/decoding_strategy.h"

namespace tessera {

class GroupBeamSearchStrategy : public DecodingStrategy {
 public:
  // `config` must be valid with num_beam_groups > 1.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GroupBeamSearchStrategy>> Create(
      const GenerationConfig& config, const StrategyOptions& options, SequenceId first);

  int width() const override { return num_beams_; }
  absl::StatusOr<StrategyDecision> Step(std::span<const StrategyRow> rows) override;
  absl::Status BindForks(std::span<const SequenceId> fork_ids) override;
  std::vector<StrategyResult> Results() const override;
  std::vector<StrategyResult> PartialResults(FinishReason reason) const override;
  std::vector<SequenceId> LiveSequences() const override;

 private:
  // transformers' BeamHypotheses: the group_size best finished hypotheses, in insertion
  // order (which decides ties at the end).
  struct Hypotheses {
    std::vector<StrategyResult> hyps;
    double worst_score = 1e9;
    bool done = false;
  };

  GroupBeamSearchStrategy(LogitsProcessorChain chain, const GenerationConfig& config,
                          const StrategyOptions& options, SequenceId first);
  void AddHypothesis(Hypotheses& h, StrategyResult r, double sum_logprobs,
                     int64_t generated_len) const;
  bool IsDone(const Hypotheses& h, double best_sum_logprobs, int64_t generated_len) const;
  // The running beams of the groups that are not done join their lists (finalize()).
  void AddRunningBeams(const std::vector<Beam>& beams, FinishReason reason,
                       std::vector<Hypotheses>& groups) const;
  // The best num_return_sequences hypotheses over all groups.
  std::vector<StrategyResult> ResultsOf(const std::vector<Hypotheses>& groups) const;

  LogitsProcessorChain chain_;
  StrategyOptions options_;
  int num_beams_;
  int group_size_;
  int num_return_;
  double length_penalty_;
  EarlyStopping early_stopping_;
  int32_t pad_token_;              // what a done group "chooses" (StrategyOptions)
  std::vector<Beam> beams_;        // num_beams, group-major
  std::vector<Hypotheses> groups_;
  // Per beam: -1 or its index in the pending fork ids; empty once BindForks ran.
  std::vector<int> fork_slot_;
  int64_t generated_ = 0;
  bool done_ = false;
};

}  // namespace tessera
