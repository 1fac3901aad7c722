#include "decoding/beam_search.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera {

absl::StatusOr<std::unique_ptr<BeamSearchStrategy>> BeamSearchStrategy::Create(
    const GenerationConfig& config, const StrategyOptions& options, SequenceId first) {
  if (config.num_beams < 2 || config.num_beam_groups != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BeamSearchStrategy needs num_beams > 1 and num_beam_groups == 1 (got ",
        config.num_beams, ", ", config.num_beam_groups, ")"));
  }
  ASSIGN_OR_RETURN(LogitsProcessorChain chain,
                   LogitsProcessorChain::Create(config, options.vocab_size));
  return std::unique_ptr<BeamSearchStrategy>(
      new BeamSearchStrategy(std::move(chain), config, options, first));
}

BeamSearchStrategy::BeamSearchStrategy(LogitsProcessorChain chain, const GenerationConfig& config,
                                       const StrategyOptions& options, SequenceId first)
    : chain_(std::move(chain)),
      options_(options),
      num_beams_(static_cast<int>(config.num_beams)),
      num_return_(static_cast<int>(config.num_return_sequences)),
      length_penalty_(config.length_penalty),
      early_stopping_(config.early_stopping),
      do_sample_(config.do_sample),
      finished_(static_cast<size_t>(num_beams_)) {
  // num_beams copies of the prompt; all but the first start dead so that the first step
  // expands only one of them.
  for (int b = 0; b < num_beams_; ++b) {
    beams_.push_back(Beam::Start(first, b == 0 ? 0.0f : kDeadBeamScore));
  }
}

absl::StatusOr<StrategyDecision> BeamSearchStrategy::Step(std::span<const StrategyRow> rows) {
  if (done_) return absl::FailedPreconditionError("BeamSearchStrategy::Step after done");
  if (!fork_slot_.empty()) {
    return absl::FailedPreconditionError("BeamSearchStrategy: forks not bound");
  }
  const size_t vocab = static_cast<size_t>(options_.vocab_size);
  std::vector<std::vector<float>> scores(beams_.size(), std::vector<float>(vocab));
  std::vector<std::vector<float>> raw(beams_.size(), std::vector<float>(vocab));
  std::vector<const StrategyRow*> row_of(beams_.size());
  for (size_t b = 0; b < beams_.size(); ++b) {
    ASSIGN_OR_RETURN(row_of[b], FindRow(rows, beams_[b].seq_id, options_.vocab_size));
    const TokenHistory history{row_of[b]->token_ids, row_of[b]->prompt_len};
    BeamScoreRow(chain_, history, row_of[b]->logits, beams_[b].score, raw[b], scores[b]);
  }
  std::vector<TopAlternatives> tops(beams_.size());
  for (size_t b = 0; b < beams_.size() && options_.top_logprobs > 0; ++b) {
    tops[b] = TopAlternativesOf(row_of[b]->logits, options_.top_logprobs);
  }
  const int keep =
      std::max<int>(2, 1 + static_cast<int>(options_.end_token_ids.size())) * num_beams_;
  std::vector<Candidate> candidates =
      do_sample_ ? SampleCandidates(scores, keep, options_.seed, static_cast<uint64_t>(generated_))
                 : TopCandidates(scores, keep);

  const int64_t generated_after = generated_ + 1;
  auto ends = [&](const Candidate& c) {
    return IsEndToken(options_.end_token_ids, c.token) ||
           generated_after >= options_.max_new_tokens;
  };
  auto extend = [&](const Candidate& c) {
    const Beam& parent = beams_[static_cast<size_t>(c.beam)];
    StrategyResult r;
    r.token_ids = parent.tokens;
    r.token_ids.push_back(c.token);
    r.token_logprobs = parent.token_logprobs;
    r.token_logprobs.push_back(raw[static_cast<size_t>(c.beam)][static_cast<size_t>(c.token)]);
    r.top_logprobs = parent.top_logprobs;
    if (options_.top_logprobs > 0) r.top_logprobs.push_back(tops[static_cast<size_t>(c.beam)]);
    return r;
  };

  // The first num_beams candidates that ended join the finished list, unless finishing is
  // closed (all slots finished with early_stopping true, or no improvement possible).
  const bool all_finished = std::all_of(finished_.begin(), finished_.end(),
                                        [](const Finished& f) { return f.finished; });
  const bool closed = (all_finished && early_stopping_ == EarlyStopping::kTrue) ||
                      !improvement_possible_;
  std::vector<Finished> ended;
  const float length_divisor =
      static_cast<float>(std::pow(static_cast<double>(generated_after), length_penalty_));
  for (size_t k = 0; k < candidates.size() && k < static_cast<size_t>(num_beams_); ++k) {
    if (!ends(candidates[k]) || closed) continue;
    Finished f;
    f.score = candidates[k].score / length_divisor;
    f.finished = true;
    f.result = extend(candidates[k]);
    f.result.score = f.score;
    f.result.finish_reason = IsEndToken(options_.end_token_ids, candidates[k].token)
                                 ? FinishReason::kStop
                                 : FinishReason::kLength;
    ended.push_back(std::move(f));
  }
  MergeFinished(std::move(ended), finished_);

  // The best num_beams candidates that did not end continue (ties: candidate order).
  std::vector<size_t> open;
  for (size_t k = 0; k < candidates.size(); ++k) {
    if (!ends(candidates[k])) open.push_back(k);
  }
  std::stable_sort(open.begin(), open.end(), [&](size_t a, size_t b) {
    return candidates[a].score > candidates[b].score;
  });
  if (open.size() > static_cast<size_t>(num_beams_)) open.resize(static_cast<size_t>(num_beams_));
  generated_ = generated_after;

  // Whether the best running beam can still beat the worst finished one.
  const bool now_all_finished = std::all_of(finished_.begin(), finished_.end(),
                                            [](const Finished& f) { return f.finished; });
  if (!open.empty() && now_all_finished) {
    const double best_length = early_stopping_ == EarlyStopping::kNever && length_penalty_ > 0
                                   ? static_cast<double>(options_.max_new_tokens)
                                   : static_cast<double>(generated_);
    const float best_possible = candidates[open[0]].score /
                                static_cast<float>(std::pow(best_length, length_penalty_));
    float worst = finished_[0].score;
    for (const Finished& f : finished_) worst = std::min(worst, f.score);
    improvement_possible_ = improvement_possible_ && best_possible > worst;
  }
  const bool any_open = !open.empty();
  done_ = !improvement_possible_ ||
          (now_all_finished && early_stopping_ == EarlyStopping::kTrue) || !any_open;
  if (done_) {
    StrategyDecision decision;
    decision.done = true;
    return decision;
  }

  std::vector<std::pair<int, int32_t>> next;
  std::vector<Beam> next_beams;
  for (size_t k : open) {
    const Candidate& c = candidates[k];
    next.emplace_back(c.beam, c.token);
    Beam beam = beams_[static_cast<size_t>(c.beam)];
    beam.score = c.score;
    beam.tokens.push_back(c.token);
    beam.token_logprobs.push_back(raw[static_cast<size_t>(c.beam)][static_cast<size_t>(c.token)]);
    if (options_.top_logprobs > 0) beam.top_logprobs.push_back(tops[static_cast<size_t>(c.beam)]);
    next_beams.push_back(std::move(beam));
  }
  StrategyDecision decision = MoveBeams(beams_, next, &fork_slot_);
  beams_ = std::move(next_beams);
  return decision;
}

void BeamSearchStrategy::MergeFinished(std::vector<Finished> ended,
                                       std::vector<Finished>& finished) const {
  if (ended.empty()) return;
  std::vector<Finished> merged = std::move(finished);
  for (Finished& f : ended) merged.push_back(std::move(f));
  // Existing entries first on equal scores, as transformers concatenates them first.
  std::stable_sort(merged.begin(), merged.end(),
                   [](const Finished& a, const Finished& b) { return a.score > b.score; });
  merged.resize(static_cast<size_t>(num_beams_));
  finished = std::move(merged);
}

absl::Status BeamSearchStrategy::BindForks(std::span<const SequenceId> fork_ids) {
  return BindForkIds("BeamSearchStrategy", fork_ids, fork_slot_, beams_);
}

std::vector<StrategyResult> BeamSearchStrategy::ResultsOf(
    const std::vector<Finished>& finished) const {
  std::vector<StrategyResult> out;
  for (const Finished& f : finished) {
    if (static_cast<int>(out.size()) == num_return_) break;
    if (f.finished) out.push_back(f.result);
  }
  return out;
}

std::vector<StrategyResult> BeamSearchStrategy::Results() const { return ResultsOf(finished_); }

std::vector<StrategyResult> BeamSearchStrategy::PartialResults(FinishReason reason) const {
  if (done_) return Results();
  // Before the first step only the prompt's beam lives, with nothing generated.
  const double divisor =
      generated_ == 0 ? 1.0 : std::pow(static_cast<double>(generated_), length_penalty_);
  std::vector<Finished> running;
  for (const Beam& beam : beams_) {
    if (beam.score <= kDeadBeamScore) continue;
    Finished f;
    f.score = static_cast<float>(beam.score / divisor);
    f.finished = true;
    f.result = RunningBeamResult(beam, f.score, reason);
    running.push_back(std::move(f));
  }
  std::vector<Finished> finished = finished_;
  MergeFinished(std::move(running), finished);
  return ResultsOf(finished);
}

std::vector<SequenceId> BeamSearchStrategy::LiveSequences() const {
  std::vector<SequenceId> out;
  if (done_) return out;
  for (const Beam& b : beams_) {
    if (std::find(out.begin(), out.end(), b.seq_id) == out.end()) out.push_back(b.seq_id);
  }
  return out;
}

}  // namespace tessera
