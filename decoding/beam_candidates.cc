#include "decoding/beam_candidates.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "decoding/philox.h"

namespace tessera {

void LogSoftmax(std::span<const float> logits, std::span<float> out) {
  double max = -std::numeric_limits<double>::infinity();
  for (float x : logits) max = std::max(max, static_cast<double>(x));
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  const double log_sum = std::log(sum) + max;
  for (size_t i = 0; i < logits.size(); ++i) {
    out[i] = static_cast<float>(static_cast<double>(logits[i]) - log_sum);
  }
}

void BeamScoreRow(const LogitsProcessorChain& chain, const TokenHistory& history,
                  std::span<const float> logits, float beam_score, std::span<float> raw_logprobs,
                  std::span<float> scores) {
  LogSoftmax(logits, raw_logprobs);
  std::copy(raw_logprobs.begin(), raw_logprobs.end(), scores.begin());
  chain.Apply(history, scores);
  for (float& s : scores) s += beam_score;
}

std::vector<Candidate> TopCandidates(const std::vector<std::vector<float>>& rows, int k) {
  std::vector<Candidate> all;
  for (size_t b = 0; b < rows.size(); ++b) {
    for (size_t v = 0; v < rows[b].size(); ++v) {
      const float s = rows[b][v];
      if (s == -std::numeric_limits<float>::infinity() || std::isnan(s)) continue;
      all.push_back({static_cast<int>(b), static_cast<int32_t>(v), s});
    }
  }
  const size_t keep = std::min(all.size(), static_cast<size_t>(std::max(k, 0)));
  // Stable: equal scores keep the flat (beam-major) order.
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(keep), all.end(),
                    [](const Candidate& a, const Candidate& b) {
                      if (a.score != b.score) return a.score > b.score;
                      return a.beam != b.beam ? a.beam < b.beam : a.token < b.token;
                    });
  all.resize(keep);
  return all;
}

std::vector<Candidate> SampleCandidates(const std::vector<std::vector<float>>& rows, int k,
                                        uint64_t seed, uint64_t position) {
  double max = -std::numeric_limits<double>::infinity();
  for (const auto& row : rows) {
    for (float s : row) max = std::max(max, static_cast<double>(s));
  }
  std::vector<Candidate> out;
  if (!std::isfinite(max)) return out;
  std::vector<std::vector<double>> weights(rows.size());
  double total = 0.0;
  for (size_t b = 0; b < rows.size(); ++b) {
    weights[b].resize(rows[b].size());
    for (size_t v = 0; v < rows[b].size(); ++v) {
      const double w = std::isnan(rows[b][v]) ? 0.0 : std::exp(rows[b][v] - max);
      weights[b][v] = w;
      total += w;
    }
  }
  for (int draw = 0; draw < k && total > 0.0; ++draw) {
    const double target = SamplingUniform(seed, static_cast<uint64_t>(draw), position) * total;
    double acc = 0.0;
    size_t pick_b = 0, pick_v = 0;
    bool found = false;
    for (size_t b = 0; b < weights.size() && !found; ++b) {
      for (size_t v = 0; v < weights[b].size(); ++v) {
        if (weights[b][v] <= 0.0) continue;
        acc += weights[b][v];
        pick_b = b;
        pick_v = v;
        if (acc > target) {
          found = true;
          break;
        }
      }
    }
    // Rounding can leave target just above the running sum: the last positive entry wins.
    out.push_back({static_cast<int>(pick_b), static_cast<int32_t>(pick_v), rows[pick_b][pick_v]});
    total -= weights[pick_b][pick_v];
    weights[pick_b][pick_v] = 0.0;
  }
  return out;
}

absl::StatusOr<const StrategyRow*> FindRow(std::span<const StrategyRow> rows, SequenceId seq,
                                           int32_t vocab_size) {
  for (const StrategyRow& row : rows) {
    if (row.seq_id != seq) continue;
    if (row.logits.size() != static_cast<size_t>(vocab_size)) {
      return absl::InvalidArgumentError(absl::StrCat("decoding strategy: row of sequence ", seq,
                                                     " has ", row.logits.size(),
                                                     " logits, vocab_size is ", vocab_size));
    }
    return &row;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("decoding strategy: no row for live sequence ", seq));
}

bool IsEndToken(const std::vector<int32_t>& end_ids, int32_t token) {
  return std::find(end_ids.begin(), end_ids.end(), token) != end_ids.end();
}

StrategyDecision MoveBeams(const std::vector<Beam>& parents,
                           const std::vector<std::pair<int, int32_t>>& next,
                           std::vector<int>* fork_slot) {
  StrategyDecision decision;
  absl::flat_hash_map<SequenceId, size_t> continuation_of;  // parent seq -> continuation
  std::vector<std::vector<size_t>> members;                 // next indices per continuation
  for (size_t i = 0; i < next.size(); ++i) {
    const SequenceId parent = parents[static_cast<size_t>(next[i].first)].seq_id;
    auto [it, inserted] = continuation_of.emplace(parent, decision.continuations.size());
    if (inserted) {
      decision.continuations.push_back({parent, {}});
      members.emplace_back();
    }
    decision.continuations[it->second].tokens.push_back(next[i].second);
    members[it->second].push_back(i);
  }
  fork_slot->assign(next.size(), -1);
  int slot = 0;
  for (const auto& m : members) {
    for (size_t j = 1; j < m.size(); ++j) (*fork_slot)[m[j]] = slot++;
  }
  for (const Beam& beam : parents) {
    if (beam.seq_id < 0) continue;  // no sequence behind it (a done group's slot)
    if (!continuation_of.contains(beam.seq_id) &&
        std::find(decision.pruned.begin(), decision.pruned.end(), beam.seq_id) ==
            decision.pruned.end()) {
      decision.pruned.push_back(beam.seq_id);
    }
  }
  return decision;
}

absl::Status BindForkIds(std::string_view strategy, std::span<const SequenceId> fork_ids,
                         std::vector<int>& fork_slot, std::vector<Beam>& beams) {
  size_t expected = 0;
  for (int slot : fork_slot) expected += slot >= 0;
  if (fork_ids.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(strategy), "::BindForks: got ", fork_ids.size(),
                                                   " fork ids, expected ", expected));
  }
  for (size_t b = 0; b < beams.size() && b < fork_slot.size(); ++b) {
    if (fork_slot[b] >= 0) beams[b].seq_id = fork_ids[static_cast<size_t>(fork_slot[b])];
  }
  fork_slot.clear();
  return absl::OkStatus();
}

StrategyResult RunningBeamResult(const Beam& beam, double score, FinishReason reason) {
  StrategyResult r;
  r.token_ids = beam.tokens;
  r.token_logprobs = beam.token_logprobs;
  r.top_logprobs = beam.top_logprobs;
  r.score = score;
  r.finish_reason = reason;
  return r;
}

}  // namespace tessera
