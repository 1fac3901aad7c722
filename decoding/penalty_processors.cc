#include "decoding/penalty_processors.h"

#include <algorithm>

#include "common/check.h"

namespace tessera {
namespace {

bool InVocab(int32_t id, int32_t vocab_size) { return id >= 0 && id < vocab_size; }

// The edit of `token` in `edits`, made when absent.
LogitEdit& EditOf(std::map<int32_t, LogitEdit>& edits, int32_t token) {
  LogitEdit& edit = edits[token];
  edit.token = token;
  return edit;
}

}  // namespace

void SparseLogitsProcessor::Apply(const TokenHistory& history, std::span<float> logits) const {
  std::map<int32_t, LogitEdit> edits;
  AddEdits(history, static_cast<int32_t>(logits.size()), edits);
  for (const auto& [token, edit] : edits) logits[token] = ApplyLogitEdit(logits[token], edit);
}

SequenceBiasProcessor::SequenceBiasProcessor(std::string name,
                                             std::map<std::vector<int32_t>, float> biases,
                                             LogitEditStep step)
    : name_(std::move(name)), step_(step) {
  TESSERA_CHECK_MSG(step == kEditBias || step == kEditLateBias,
                    "a sequence bias is a kEditBias or kEditLateBias step");
  for (auto& [ids, bias] : biases) {
    if (ids.size() == 1) {
      single_.emplace_back(ids[0], bias);
    } else if (!ids.empty()) {
      multi_.emplace_back(ids, bias);
    }
  }
}

void SequenceBiasProcessor::AddEdits(const TokenHistory& history, int32_t vocab_size,
                                     std::map<int32_t, LogitEdit>& edits) const {
  // transformers sums the biases into a zero row first and adds the row once: each token's
  // biases add up from 0, in this order, before the one addition to its logit.
  const auto add = [&](int32_t id, float b) {
    if (!InVocab(id, vocab_size)) return;
    LogitEdit& edit = EditOf(edits, id);
    edit.steps |= step_;
    (step_ == kEditBias ? edit.bias : edit.late_bias) += b;  // from LogitEdit's 0
  };
  for (const auto& [id, b] : single_) add(id, b);
  const std::span<const int32_t> ids = history.ids;
  for (const auto& [seq, b] : multi_) {
    const size_t prefix = seq.size() - 1;
    if (prefix > ids.size()) continue;
    if (std::equal(seq.begin(), seq.end() - 1, ids.end() - prefix)) add(seq.back(), b);
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

void RepetitionPenaltyProcessor::AddEdits(const TokenHistory& history, int32_t vocab_size,
                                          std::map<int32_t, LogitEdit>& edits) const {
  for (int32_t id : history.ids) {  // once per distinct id
    if (!InVocab(id, vocab_size)) continue;
    LogitEdit& edit = EditOf(edits, id);
    edit.steps |= kEditRepetition;
    edit.penalty = penalty_;
  }
}

void FrequencyPresencePenaltyProcessor::AddEdits(const TokenHistory& history, int32_t vocab_size,
                                                 std::map<int32_t, LogitEdit>& edits) const {
  std::map<int32_t, int64_t> counts;
  for (int32_t id : history.generated()) ++counts[id];
  for (const auto& [id, count] : counts) {
    if (!InVocab(id, vocab_size)) continue;
    LogitEdit& edit = EditOf(edits, id);
    edit.steps |= kEditFrequencyPresence;
    edit.frequency = static_cast<double>(count) * frequency_;
    edit.presence = presence_;
  }
}

void NoRepeatNGramProcessor::AddEdits(const TokenHistory& history, int32_t vocab_size,
                                      std::map<int32_t, LogitEdit>& edits) const {
  const std::span<const int32_t> ids = history.ids;
  const size_t n = static_cast<size_t>(n_);
  if (n == 0 || ids.size() < n) return;
  // The next token completes an n-gram starting with the last n-1 ids; every earlier window
  // whose first n-1 ids equal them bans its last id.
  const std::span<const int32_t> prefix = ids.subspan(ids.size() + 1 - n);
  for (size_t start = 0; start + n <= ids.size(); ++start) {
    if (std::equal(prefix.begin(), prefix.end(), ids.begin() + start)) {
      const int32_t banned = ids[start + n - 1];
      if (InVocab(banned, vocab_size)) EditOf(edits, banned).steps |= kEditNgramBan;
    }
  }
}

void MinNewTokensProcessor::AddEdits(const TokenHistory& history, int32_t vocab_size,
                                     std::map<int32_t, LogitEdit>& edits) const {
  if (static_cast<int64_t>(history.num_generated()) >= min_new_tokens_) return;
  for (int32_t id : ids_) {
    if (InVocab(id, vocab_size)) EditOf(edits, id).steps |= kEditEndBan;
  }
}

}  // namespace tessera
