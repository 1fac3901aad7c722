#include "decoding/contrastive_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

double CosineSimilarity(std::span<const float> a, std::span<const float> b) {
  double dot = 0.0, na = 0.0, nb = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return dot / (std::sqrt(na) * std::sqrt(nb));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ContrastiveSearchStrategy>> ContrastiveSearchStrategy::Create(
    const GenerationConfig& config, const StrategyOptions& options, SequenceId first) {
  if (!config.IsContrastiveSearch()) {
    return absl::InvalidArgumentError(
        "ContrastiveSearchStrategy needs penalty_alpha > 0, top_k > 1, num_beams 1, no sampling");
  }
  ASSIGN_OR_RETURN(LogitsProcessorChain chain,
                   LogitsProcessorChain::Create(config, options.vocab_size));
  return std::unique_ptr<ContrastiveSearchStrategy>(
      new ContrastiveSearchStrategy(std::move(chain), config, options, first));
}

ContrastiveSearchStrategy::ContrastiveSearchStrategy(LogitsProcessorChain chain,
                                                     const GenerationConfig& config,
                                                     const StrategyOptions& options,
                                                     SequenceId first)
    : chain_(std::move(chain)),
      options_(options),
      top_k_(static_cast<int>(std::min<int64_t>(config.top_k, options.vocab_size))),
      alpha_(config.penalty_alpha),
      first_(first) {}

void ContrastiveSearchStrategy::AddContextHidden(int64_t position, std::span<const float> hidden) {
  prompt_hidden_.try_emplace(position, hidden.begin(), hidden.end());
}

StrategyDecision ContrastiveSearchStrategy::Expand(const StrategyRow& row) {
  const size_t vocab = row.logits.size();
  std::vector<float> processed(row.logits.begin(), row.logits.end());
  chain_.Apply(TokenHistory{row.token_ids, row.prompt_len}, processed);
  std::vector<float> raw(vocab);
  LogSoftmax(row.logits, raw);
  // softmax of the processed row, in float64.
  double max = -std::numeric_limits<double>::infinity();
  for (float x : processed) max = std::max(max, static_cast<double>(x));
  double total = 0.0;
  for (float x : processed) total += std::exp(static_cast<double>(x) - max);
  std::vector<int32_t> order(vocab);
  for (size_t i = 0; i < vocab; ++i) order[i] = static_cast<int32_t>(i);
  const size_t k = std::min(static_cast<size_t>(top_k_), vocab);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int32_t a, int32_t b) {
                      return processed[a] != processed[b] ? processed[a] > processed[b] : a < b;
                    });
  StrategyDecision decision;
  StrategyDecision::Continuation cont{row.seq_id, {}};
  candidates_.clear();
  candidates_top_ = TopAlternativesOf(row.logits, options_.top_logprobs);
  for (size_t i = 0; i < k; ++i) {
    const int32_t t = order[i];
    const double p = std::exp(static_cast<double>(processed[t]) - max) / total;
    if (p <= 0.0 && i > 0) break;  // masked tokens are no candidates
    candidates_.push_back({i == 0 ? row.seq_id : -1, t, p, raw[static_cast<size_t>(t)]});
    cont.tokens.push_back(t);
  }
  decision.continuations.push_back(std::move(cont));
  return decision;
}

absl::StatusOr<StrategyDecision> ContrastiveSearchStrategy::Step(
    std::span<const StrategyRow> rows) {
  if (done_) return absl::FailedPreconditionError("ContrastiveSearchStrategy::Step after done");
  if (candidates_.empty()) {  // the prompt's row: the first candidates
    ASSIGN_OR_RETURN(const StrategyRow* row, FindRow(rows, first_, options_.vocab_size));
    prompt_len_ = row->prompt_len;
    for (size_t p = 0; p < prompt_len_; ++p) {
      if (!prompt_hidden_.contains(static_cast<int64_t>(p))) {
        return absl::FailedPreconditionError(absl::StrCat(
            "contrastive search: no hidden state for prompt position ", p));
      }
    }
    return Expand(*row);
  }
  // Score every candidate against the context.
  size_t best = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  std::vector<const StrategyRow*> row_of(candidates_.size());
  for (size_t c = 0; c < candidates_.size(); ++c) {
    ASSIGN_OR_RETURN(row_of[c], FindRow(rows, candidates_[c].seq_id, options_.vocab_size));
    const std::span<const float> h = row_of[c]->hidden;
    if (h.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "contrastive search: row of sequence ", candidates_[c].seq_id, " has no hidden state"));
    }
    double penalty = -std::numeric_limits<double>::infinity();
    for (const auto& [pos, ctx] : prompt_hidden_) {
      if (static_cast<size_t>(pos) < prompt_len_) penalty = std::max(penalty, CosineSimilarity(ctx, h));
    }
    for (const auto& ctx : chosen_hidden_) penalty = std::max(penalty, CosineSimilarity(ctx, h));
    const double score = (1.0 - alpha_) * candidates_[c].prob - alpha_ * penalty;
    if (score > best_score) {
      best_score = score;
      best = c;
    }
  }
  const CandidateSeq chosen = candidates_[best];
  const StrategyRow& row = *row_of[best];
  chosen_hidden_.emplace_back(row.hidden.begin(), row.hidden.end());
  result_.token_ids.push_back(chosen.token);
  result_.token_logprobs.push_back(chosen.raw_logprob);
  if (options_.top_logprobs > 0) result_.top_logprobs.push_back(candidates_top_);
  result_.score += chosen.raw_logprob;

  std::vector<SequenceId> others;
  for (const CandidateSeq& c : candidates_) {
    if (c.seq_id != chosen.seq_id) others.push_back(c.seq_id);
  }
  const bool stop = IsEndToken(options_.end_token_ids, chosen.token);
  if (stop || static_cast<int64_t>(result_.token_ids.size()) >= options_.max_new_tokens) {
    result_.finish_reason = stop ? FinishReason::kStop : FinishReason::kLength;
    done_ = true;
    StrategyDecision decision;
    decision.done = true;
    return decision;
  }
  StrategyDecision decision = Expand(row);
  decision.pruned = std::move(others);
  return decision;
}

absl::Status ContrastiveSearchStrategy::BindForks(std::span<const SequenceId> fork_ids) {
  size_t expected = 0;
  for (const CandidateSeq& c : candidates_) expected += c.seq_id < 0;
  if (fork_ids.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("ContrastiveSearchStrategy::BindForks: got ",
                                                   fork_ids.size(), " fork ids, expected ",
                                                   expected));
  }
  size_t next = 0;
  for (CandidateSeq& c : candidates_) {
    if (c.seq_id < 0) c.seq_id = fork_ids[next++];
  }
  return absl::OkStatus();
}

std::vector<StrategyResult> ContrastiveSearchStrategy::Results() const { return {result_}; }

std::vector<StrategyResult> ContrastiveSearchStrategy::PartialResults(FinishReason reason) const {
  if (done_) return Results();
  // The tokens chosen so far; the candidates of the next step were not chosen yet.
  StrategyResult partial = result_;
  partial.finish_reason = reason;
  return {partial};
}

std::vector<SequenceId> ContrastiveSearchStrategy::LiveSequences() const {
  std::vector<SequenceId> out;
  if (done_) return out;
  if (candidates_.empty()) return {first_};
  for (const CandidateSeq& c : candidates_) out.push_back(c.seq_id);
  return out;
}

}  // namespace tessera
