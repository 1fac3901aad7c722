// Beam search and beam-search multinomial sampling as transformers' `_beam_search` does
// them (its vectorised form, 4.50 and later): every step keeps the K = max(2, 1 + #end ids)
// * num_beams best (or sampled) continuations over all beams, continues the num_beams best
// that did not end, and merges those among the first num_beams that ended (an end id, or
// max_new_tokens reached) into the finished list when their length-penalised score is
// higher, subject to `early_stopping` (true / false heuristic / "never").
#pragma once

#include <cstdint>
#include <vector>

#include "decoding/beam_candidates.h"
#include "decoding/decoding_strategy.h"

namespace tessera {

class BeamSearchStrategy : public DecodingStrategy {
 public:
  // `config` must be valid with num_beams > 1 and num_beam_groups == 1.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BeamSearchStrategy>> Create(
      const GenerationConfig& config, const StrategyOptions& options, SequenceId first);

  int width() const override { return num_beams_; }
  absl::StatusOr<StrategyDecision> Step(std::span<const StrategyRow> rows) override;
  absl::Status BindForks(std::span<const SequenceId> fork_ids) override;
  std::vector<StrategyResult> Results() const override;
  std::vector<StrategyResult> PartialResults(FinishReason reason) const override;
  std::vector<SequenceId> LiveSequences() const override;

 private:
  struct Finished {
    float score = kDeadBeamScore;
    bool finished = false;
    StrategyResult result;
  };

  BeamSearchStrategy(LogitsProcessorChain chain, const GenerationConfig& config,
                     const StrategyOptions& options, SequenceId first);
  // Merges `ended` into `finished` (top num_beams by score).
  void MergeFinished(std::vector<Finished> ended, std::vector<Finished>& finished) const;
  // The first num_return_sequences finished entries.
  std::vector<StrategyResult> ResultsOf(const std::vector<Finished>& finished) const;

  LogitsProcessorChain chain_;
  StrategyOptions options_;
  int num_beams_;
  int num_return_;
  double length_penalty_;
  EarlyStopping early_stopping_;
  bool do_sample_;
  std::vector<Beam> beams_;         // running, best first after the first step
  std::vector<Finished> finished_;  // num_beams slots, best first
  // Per beam: -1 or its index in the pending fork ids; empty once BindForks ran.
  std::vector<int> fork_slot_;
  bool improvement_possible_ = true;
  int64_t generated_ = 0;
  bool done_ = false;
};

}  // namespace tessera
