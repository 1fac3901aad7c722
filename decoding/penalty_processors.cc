#include "decoding/penalty_processors.h"

#include <algorithm>
#include <limits>
#include <unordered_map>

namespace tessera {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

bool InVocab(int32_t id, std::span<float> logits) {
  return id >= 0 && static_cast<size_t>(id) < logits.size();
}

}  // namespace

SequenceBiasProcessor::SequenceBiasProcessor(std::string name,
                                             std::map<std::vector<int32_t>, float> biases)
    : name_(std::move(name)) {
  for (auto& [ids, bias] : biases) {
    if (ids.size() == 1) {
      single_.emplace_back(ids[0], bias);
    } else if (!ids.empty()) {
      multi_.emplace_back(ids, bias);
    }
  }
}

void SequenceBiasProcessor::Apply(const TokenHistory& history, std::span<float> logits) const {
  // transformers sums the biases into a zero row first and adds the row once.
  std::unordered_map<int32_t, float> bias;
  for (const auto& [id, b] : single_) bias[id] += b;
  const std::span<const int32_t> ids = history.ids;
  for (const auto& [seq, b] : multi_) {
    const size_t prefix = seq.size() - 1;
    if (prefix > ids.size()) continue;
    if (std::equal(seq.begin(), seq.end() - 1, ids.end() - prefix)) bias[seq.back()] += b;
  }
  for (const auto& [id, b] : bias) {
    if (InVocab(id, logits)) logits[id] += b;
  }
}

void HammingDiversityProcessor::Apply(const TokenHistory& history,
                                      std::span<float> logits) const {
  // One subtraction of penalty * count per token, as transformers' bincount does.
  const auto tokens = history.earlier_groups_tokens;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t token = tokens[i];
    if (token < 0 || static_cast<size_t>(token) >= logits.size()) continue;
    if (std::find(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(i), token) !=
        tokens.begin() + static_cast<std::ptrdiff_t>(i)) {
      continue;  // counted at its first occurrence
    }
    const auto count = std::count(tokens.begin(), tokens.end(), token);
    logits[token] -= penalty_ * static_cast<float>(count);
  }
}

void RepetitionPenaltyProcessor::Apply(const TokenHistory& history, std::span<float> logits) const {
  std::vector<int32_t> seen(history.ids.begin(), history.ids.end());
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  for (int32_t id : seen) {
    if (!InVocab(id, logits)) continue;
    float& l = logits[id];
    l = l < 0 ? l * penalty_ : l / penalty_;
  }
}

void FrequencyPresencePenaltyProcessor::Apply(const TokenHistory& history,
                                              std::span<float> logits) const {
  std::unordered_map<int32_t, int64_t> counts;
  for (int32_t id : history.generated()) ++counts[id];
  for (const auto& [id, count] : counts) {
    if (!InVocab(id, logits)) continue;
    logits[id] = static_cast<float>(static_cast<double>(logits[id]) -
                                    static_cast<double>(count) * frequency_ - presence_);
  }
}

void NoRepeatNGramProcessor::Apply(const TokenHistory& history, std::span<float> logits) const {
  const std::span<const int32_t> ids = history.ids;
  const size_t n = static_cast<size_t>(n_);
  if (n == 0 || ids.size() < n) return;
  // The next token completes an n-gram starting with the last n-1 ids; every earlier window
  // whose first n-1 ids equal them bans its last id.
  const std::span<const int32_t> prefix = ids.subspan(ids.size() + 1 - n);
  for (size_t start = 0; start + n <= ids.size(); ++start) {
    if (std::equal(prefix.begin(), prefix.end(), ids.begin() + start)) {
      const int32_t banned = ids[start + n - 1];
      if (InVocab(banned, logits)) logits[banned] = kNegInf;
    }
  }
}

void MinNewTokensProcessor::Apply(const TokenHistory& history, std::span<float> logits) const {
  if (static_cast<int64_t>(history.num_generated()) >= min_new_tokens_) return;
  for (int32_t id : ids_) {
    if (InVocab(id, logits)) logits[id] = kNegInf;
  }
}

}  // namespace tessera
