#include "decoding/group_beam_search.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera {

absl::StatusOr<std::unique_ptr<GroupBeamSearchStrategy>> GroupBeamSearchStrategy::Create(
    const GenerationConfig& config, const StrategyOptions& options, SequenceId first) {
  if (config.num_beam_groups < 2 || config.do_sample) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GroupBeamSearchStrategy needs num_beam_groups > 1 and do_sample false (got ",
        config.num_beam_groups, ", ", config.do_sample, ")"));
  }
  ASSIGN_OR_RETURN(LogitsProcessorChain chain,
                   LogitsProcessorChain::Create(config, options.vocab_size));
  return std::unique_ptr<GroupBeamSearchStrategy>(
      new GroupBeamSearchStrategy(std::move(chain), config, options, first));
}

GroupBeamSearchStrategy::GroupBeamSearchStrategy(LogitsProcessorChain chain,
                                                 const GenerationConfig& config,
                                                 const StrategyOptions& options, SequenceId first)
    : chain_(std::move(chain)),
      options_(options),
      num_beams_(static_cast<int>(config.num_beams)),
      group_size_(static_cast<int>(config.num_beams / config.num_beam_groups)),
      num_return_(static_cast<int>(config.num_return_sequences)),
      length_penalty_(config.length_penalty),
      early_stopping_(config.early_stopping),
      pad_token_(options.pad_token_id),
      groups_(static_cast<size_t>(config.num_beam_groups)) {
  // Every group starts from its own copy of the prompt (its other beams dead).
  for (int b = 0; b < num_beams_; ++b) {
    beams_.push_back(Beam::Start(first, b % group_size_ == 0 ? 0.0f : kDeadBeamScore));
  }
}

void GroupBeamSearchStrategy::AddHypothesis(Hypotheses& h, StrategyResult r, double sum_logprobs,
                                            int64_t generated_len) const {
  const double score =
      sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty_);
  if (static_cast<int>(h.hyps.size()) < group_size_ || score > h.worst_score) {
    r.score = score;
    h.hyps.push_back(std::move(r));
    if (static_cast<int>(h.hyps.size()) > group_size_) {
      // Drop the worst (the first of the worst on ties); the next worst becomes the bar.
      std::vector<std::pair<double, size_t>> order;
      for (size_t i = 0; i < h.hyps.size(); ++i) order.emplace_back(h.hyps[i].score, i);
      std::sort(order.begin(), order.end());
      h.hyps.erase(h.hyps.begin() + static_cast<std::ptrdiff_t>(order[0].second));
      h.worst_score = order[1].first;
    } else {
      h.worst_score = std::min(score, h.worst_score);
    }
  }
}

bool GroupBeamSearchStrategy::IsDone(const Hypotheses& h, double best_sum_logprobs,
                                     int64_t generated_len) const {
  if (static_cast<int>(h.hyps.size()) < group_size_) return false;
  if (early_stopping_ == EarlyStopping::kTrue) return true;
  const double length = early_stopping_ == EarlyStopping::kNever && length_penalty_ > 0
                            ? static_cast<double>(options_.max_new_tokens)
                            : static_cast<double>(generated_len);
  return h.worst_score >= best_sum_logprobs / std::pow(length, length_penalty_);
}

void GroupBeamSearchStrategy::AddRunningBeams(const std::vector<Beam>& beams,
                                              FinishReason reason,
                                              std::vector<Hypotheses>& groups) const {
  // Before the first step nothing was generated; the prompt's beams then score 0.
  const int64_t length = std::max<int64_t>(generated_, 1);
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].done) continue;
    for (size_t j = 0; j < static_cast<size_t>(group_size_); ++j) {
      const Beam& beam = beams[g * static_cast<size_t>(group_size_) + j];
      if (beam.seq_id < 0 || beam.score <= kDeadBeamScore) continue;
      AddHypothesis(groups[g], RunningBeamResult(beam, 0.0, reason), beam.score, length);
    }
  }
}

absl::StatusOr<StrategyDecision> GroupBeamSearchStrategy::Step(std::span<const StrategyRow> rows) {
  if (done_) return absl::FailedPreconditionError("GroupBeamSearchStrategy::Step after done");
  if (!fork_slot_.empty()) {
    return absl::FailedPreconditionError("GroupBeamSearchStrategy: forks not bound");
  }
  const size_t vocab = static_cast<size_t>(options_.vocab_size);
  std::vector<const StrategyRow*> row_of(beams_.size());
  for (size_t b = 0; b < beams_.size(); ++b) {
    if (beams_[b].seq_id < 0) continue;  // a slot of a group that is done
    ASSIGN_OR_RETURN(row_of[b], FindRow(rows, beams_[b].seq_id, options_.vocab_size));
  }
  const int64_t generated_after = generated_ + 1;
  const int keep =
      std::max<int>(2, 1 + static_cast<int>(options_.end_token_ids.size())) * group_size_;
  std::vector<int32_t> current_tokens(beams_.size(), 0);
  std::vector<std::pair<int, int32_t>> next;  // (parent beam, token) for live groups
  std::vector<Beam> next_beams;
  std::vector<int> next_index_of_beam(beams_.size(), -1);

  for (size_t g = 0; g < groups_.size(); ++g) {
    const size_t first = g * static_cast<size_t>(group_size_);
    Hypotheses& hyps = groups_[g];
    if (hyps.done) {  // transformers keeps feeding it padding, which later groups see
      std::fill(current_tokens.begin() + static_cast<std::ptrdiff_t>(first),
                current_tokens.begin() + static_cast<std::ptrdiff_t>(first + group_size_),
                pad_token_);
      continue;
    }
    std::vector<std::vector<float>> scores(static_cast<size_t>(group_size_),
                                           std::vector<float>(vocab));
    std::vector<std::vector<float>> raw(static_cast<size_t>(group_size_),
                                        std::vector<float>(vocab));
    const std::span<const int32_t> earlier(current_tokens.data(), first);
    for (size_t j = 0; j < static_cast<size_t>(group_size_); ++j) {
      const StrategyRow& row = *row_of[first + j];
      const TokenHistory history{row.token_ids, row.prompt_len, earlier};
      BeamScoreRow(chain_, history, row.logits, beams_[first + j].score, raw[j], scores[j]);
    }
    const std::vector<Candidate> candidates = TopCandidates(scores, keep);
    std::vector<TopAlternatives> tops(static_cast<size_t>(group_size_));
    for (size_t j = 0; j < tops.size() && options_.top_logprobs > 0; ++j) {
      tops[j] = TopAlternativesOf(row_of[first + j]->logits, options_.top_logprobs);
    }
    int chosen = 0;
    for (size_t rank = 0; rank < candidates.size() && chosen < group_size_; ++rank) {
      const Candidate& c = candidates[rank];
      const size_t parent = first + static_cast<size_t>(c.beam);
      const float raw_logprob = raw[static_cast<size_t>(c.beam)][static_cast<size_t>(c.token)];
      if (IsEndToken(options_.end_token_ids, c.token)) {
        if (rank >= static_cast<size_t>(group_size_)) continue;
        // The scorer keeps the hypothesis without its end id and finalize() appends
        // eos_token_id[0], whichever end id fired.
        const int32_t eos = options_.end_token_ids.front();
        StrategyResult r = RunningBeamResult(beams_[parent], 0.0, FinishReason::kStop);
        r.token_ids.push_back(eos);
        r.token_logprobs.push_back(raw[static_cast<size_t>(c.beam)][static_cast<size_t>(eos)]);
        if (options_.top_logprobs > 0) r.top_logprobs.push_back(tops[static_cast<size_t>(c.beam)]);
        AddHypothesis(hyps, std::move(r), c.score, generated_after);
        continue;
      }
      Beam beam = beams_[parent];
      beam.score = c.score;
      beam.tokens.push_back(c.token);
      beam.token_logprobs.push_back(raw_logprob);
      if (options_.top_logprobs > 0) beam.top_logprobs.push_back(tops[static_cast<size_t>(c.beam)]);
      current_tokens[first + static_cast<size_t>(chosen)] = c.token;
      next_index_of_beam[first + static_cast<size_t>(chosen)] = static_cast<int>(next.size());
      next.emplace_back(static_cast<int>(parent), c.token);
      next_beams.push_back(std::move(beam));
      ++chosen;
    }
    if (chosen < group_size_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "diverse beam search: group ", g, " has only ", chosen, " of ", group_size_,
          " continuations left after the logits processors"));
    }
    hyps.done = IsDone(hyps, candidates.front().score, generated_after);
  }
  generated_ = generated_after;

  const bool all_done = std::all_of(groups_.begin(), groups_.end(),
                                    [](const Hypotheses& h) { return h.done; });
  if (all_done || generated_ >= options_.max_new_tokens) {
    // finalize(): the running beams of groups not done join their lists.
    std::vector<Beam> running(beams_.size());
    for (size_t b = 0; b < beams_.size(); ++b) {
      if (next_index_of_beam[b] >= 0) {
        running[b] = next_beams[static_cast<size_t>(next_index_of_beam[b])];
      }
    }
    AddRunningBeams(running, FinishReason::kLength, groups_);
    done_ = true;
    StrategyDecision decision;
    decision.done = true;
    return decision;
  }
  // Beams of done groups are dropped; the others move to their chosen continuations.
  StrategyDecision decision = MoveBeams(beams_, next, &fork_slot_);
  std::vector<Beam> moved;
  for (size_t b = 0; b < beams_.size(); ++b) {
    if (next_index_of_beam[b] >= 0) {
      moved.push_back(next_beams[static_cast<size_t>(next_index_of_beam[b])]);
    } else {
      moved.push_back(Beam::Start(-1, kDeadBeamScore));  // a done group's slot
    }
  }
  // fork_slot_ is indexed like `next`; re-index it by beam.
  std::vector<int> slot_by_beam(beams_.size(), -1);
  for (size_t b = 0; b < beams_.size(); ++b) {
    if (next_index_of_beam[b] >= 0) {
      slot_by_beam[b] = fork_slot_[static_cast<size_t>(next_index_of_beam[b])];
      // A continuing beam keeps its parent's sequence id (copied with the Beam).
    }
  }
  fork_slot_ = std::move(slot_by_beam);
  beams_ = std::move(moved);
  return decision;
}

absl::Status GroupBeamSearchStrategy::BindForks(std::span<const SequenceId> fork_ids) {
  return BindForkIds("GroupBeamSearchStrategy", fork_ids, fork_slot_, beams_);
}

std::vector<StrategyResult> GroupBeamSearchStrategy::ResultsOf(
    const std::vector<Hypotheses>& groups) const {
  // All groups' hypotheses sorted ascending (stable), the best popped from the back.
  std::vector<const StrategyResult*> all;
  for (const Hypotheses& h : groups) {
    for (const StrategyResult& r : h.hyps) all.push_back(&r);
  }
  std::stable_sort(all.begin(), all.end(), [](const StrategyResult* a, const StrategyResult* b) {
    return a->score < b->score;
  });
  std::vector<StrategyResult> out;
  while (!all.empty() && static_cast<int>(out.size()) < num_return_) {
    out.push_back(*all.back());
    all.pop_back();
  }
  return out;
}

std::vector<StrategyResult> GroupBeamSearchStrategy::Results() const { return ResultsOf(groups_); }

std::vector<StrategyResult> GroupBeamSearchStrategy::PartialResults(FinishReason reason) const {
  if (done_) return Results();
  std::vector<Hypotheses> groups = groups_;
  AddRunningBeams(beams_, reason, groups);
  return ResultsOf(groups);
}

std::vector<SequenceId> GroupBeamSearchStrategy::LiveSequences() const {
  std::vector<SequenceId> out;
  if (done_) return out;
  for (const Beam& b : beams_) {
    if (b.seq_id >= 0 && std::find(out.begin(), out.end(), b.seq_id) == out.end()) {
      out.push_back(b.seq_id);
    }
  }
  return out;
}

}  // namespace tessera
