// BatchRunner: what happens to a step's results besides sampling. Strategy-driven requests
// (beam, contrastive search) advance through their DecodingStrategy; text stops end
// sequences; logprobs are kept per sequence for the outputs.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/batch_runner.h"

namespace tessera {

absl::Status BatchRunner::AdvanceStrategies() {
  for (auto& [request_id, state] : strategies_) {
    if (state.done || state.rows.empty()) continue;
    const std::vector<SequenceId> live = state.strategy->LiveSequences();
    std::vector<StrategyRow> rows;
    for (SequenceId id : live) {
      auto row = state.rows.find(id);
      const Sequence* seq = scheduler_->FindSequence(id);
      if (row == state.rows.end() || seq == nullptr) break;
      rows.push_back({.seq_id = id,
                      .token_ids = seq->token_ids(),
                      .prompt_len = static_cast<size_t>(seq->prompt_len()),
                      .logits = row->second.logits,
                      .hidden = row->second.hidden});
    }
    if (rows.size() != live.size()) continue;  // some sequences still compute their rows
    absl::StatusOr<StrategyDecision> stepped = state.strategy->Step(rows);
    state.rows.clear();
    if (!stepped.ok() || stepped->done) {
      // Done: the strategy's results replace the sequences. A strategy that cannot go on
      // (the processors left too few tokens) ends its request, not the runner.
      state.done = stepped.ok();
      const FinishReason reason = stepped.ok() ? FinishReason::kPruned : FinishReason::kAborted;
      const SequenceGroup* group = scheduler_->FindRequest(request_id);
      std::vector<SequenceId> ending;
      for (const auto& seq : group->sequences()) {
        if (!seq->is_finished()) ending.push_back(seq->id());
      }
      for (SequenceId id : ending) RETURN_IF_ERROR(scheduler_->FinishSequence(id, reason));
      continue;
    }
    const StrategyDecision& decision = *stepped;
    for (SequenceId id : decision.pruned) {
      RETURN_IF_ERROR(scheduler_->FinishSequence(id, FinishReason::kPruned));
    }
    std::vector<SequenceId> forks;
    for (const StrategyDecision::Continuation& c : decision.continuations) {
      for (size_t k = 1; k < c.tokens.size(); ++k) {
        ASSIGN_OR_RETURN(const SequenceId child, scheduler_->ForkSequence(c.parent));
        RETURN_IF_ERROR(scheduler_->AppendToken(child, c.tokens[k]));
        forks.push_back(child);
      }
      RETURN_IF_ERROR(scheduler_->AppendToken(c.parent, c.tokens[0]));
    }
    RETURN_IF_ERROR(state.strategy->BindForks(forks));
  }
  return absl::OkStatus();
}

void BatchRunner::ReplaceWithStrategyResults(RequestOutput& out) {
  auto it = strategies_.find(out.request_id);
  if (it == strategies_.end()) return;
  // Ended before the strategy was done (cancelled, deadline, aborted): the strategy still
  // decides what comes back, from the hypotheses it has.
  FinishReason reason = FinishReason::kCancelled;
  for (const RequestOutput::Completion& c : out.completions) {
    if (c.finish_reason != FinishReason::kPruned && c.finish_reason != FinishReason::kNone) {
      reason = c.finish_reason;
      break;
    }
  }
  const DecodingStrategy& strategy = *it->second.strategy;
  std::vector<StrategyResult> results =
      it->second.done ? strategy.Results() : strategy.PartialResults(reason);
  out.completions.clear();
  for (StrategyResult& r : results) {
    out.completions.push_back({.seq_id = -1,
                               .generated_token_ids = std::move(r.token_ids),
                               .finish_reason = r.finish_reason,
                               .token_logprobs = std::move(r.token_logprobs),
                               .top_logprobs = std::move(r.top_logprobs),
                               .score = r.score});
  }
  strategies_.erase(it);
}

absl::Status BatchRunner::CheckStopTexts(const StepPlan& plan) {
  if (stop_checks_.empty()) return absl::OkStatus();
  absl::flat_hash_set<std::string> checked;
  for (const ScheduledSequence& e : plan.sequences) {
    if (!e.needs_logits || !checked.insert(e.request_id).second) continue;
    auto check = stop_checks_.find(e.request_id);
    const SequenceGroup* group = scheduler_->FindRequest(e.request_id);
    if (check == stop_checks_.end() || group == nullptr) continue;
    // Every live sequence of the request (samples forked this step included).
    std::vector<SequenceId> ending;
    for (const auto& seq : group->sequences()) {
      if (!seq->is_finished() && seq->num_generated() > 0 &&
          check->second(seq->generated_token_ids())) {
        ending.push_back(seq->id());
      }
    }
    for (SequenceId id : ending) {
      RETURN_IF_ERROR(scheduler_->FinishSequence(id, FinishReason::kStop));
    }
  }
  return absl::OkStatus();
}

void BatchRunner::RecordLogprobs(const StepPlan& plan,
                                 const std::vector<std::vector<SampleResult>>& drawn,
                                 const std::vector<SampleFork>& forks) {
  absl::flat_hash_map<SequenceId, size_t> row_of;
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    if (drawn[i].empty()) continue;
    row_of[plan.sequences[i].seq_id] = i;
    // Sample 0 continues the sequence.
    logprobs_[plan.sequences[i].seq_id].push_back(drawn[i][0]);
  }
  // A fork shares its parent's history up to the step that made it, then its own sample;
  // also when the request ended in this very step (best_of compares every sample).
  for (const SampleFork& f : forks) {
    auto row = row_of.find(f.parent);
    if (row == row_of.end() || static_cast<size_t>(f.sample) >= drawn[row->second].size()) {
      continue;
    }
    std::vector<SampleResult> records = logprobs_[f.parent];
    records.back() = drawn[row->second][f.sample];
    logprobs_[f.child] = std::move(records);
  }
}

std::span<const SampleResult> BatchRunner::DrawnLogprobs(SequenceId seq) const {
  auto it = logprobs_.find(seq);
  if (it == logprobs_.end()) return {};
  return it->second;
}

void BatchRunner::AttachLogprobs(RequestOutput& out) {
  for (RequestOutput::Completion& c : out.completions) {
    auto it = logprobs_.find(c.seq_id);
    if (it == logprobs_.end()) continue;
    for (const SampleResult& r : it->second) {
      c.token_logprobs.push_back(r.logprob);
      std::vector<std::pair<int32_t, float>> top;
      for (const TokenLogprob& t : r.top) top.emplace_back(t.token, t.logprob);
      c.top_logprobs.push_back(std::move(top));
    }
    logprobs_.erase(it);
  }
}

void BatchRunner::KeepBest(RequestOutput& out) {
  auto it = keep_best_.find(out.request_id);
  if (it == keep_best_.end()) return;
  const size_t keep = static_cast<size_t>(it->second);
  keep_best_.erase(it);
  auto cumulative = [](const RequestOutput::Completion& c) {
    double sum = 0.0;
    for (float lp : c.token_logprobs) sum += lp;
    return sum;
  };
  std::stable_sort(out.completions.begin(), out.completions.end(),
                   [&](const auto& a, const auto& b) { return cumulative(a) > cumulative(b); });
  if (out.completions.size() > keep) out.completions.resize(keep);
}

}  // namespace tessera
