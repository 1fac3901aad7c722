// What the leader wants back of each logits row of a step, when not the whole row
// (LlamaModel::ForwardPaged): greedy rows want their argmax (and, when they report
// logprobs, the row's log-normalizer and most likely tokens), top-k sampled rows their
// candidates (common/row_top_k.h), top-p or min-p sampled rows their most likely tokens and
// (for top-p) the row's softmax denominator, plainly sampled rows their drawn token
// (common/row_sample.h), others the row itself; each after its penalties and biases, which
// the backend applies first (LogitsRowWant::edits). On a device backend the logits then
// stay on the device except for the rows that need them whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "common/row_argmax.h"
#include "kernels/logit_edit.h"

namespace tessera {

struct LogitsRowWant {
  enum class Kind : uint8_t { kRow, kArgMax, kTopK, kNucleus, kDraw };
  Kind kind = Kind::kRow;
  int64_t top_k = 0;          // kTopK: TopKOfRow's k (> 0)
  float temperature = 1.0f;   // kTopK, kNucleus, kDraw (> 0)
  double top_p = 1.0;         // kNucleus: in (0, 1]; 1 for none
  double min_p = 0.0;         // kNucleus: in [0, 1); 0 for none (one of the two is set)
  double u = 0.0;             // kDraw: the draw's uniform in [0, 1)
  // kArgMax, kTopK, kNucleus and kDraw: >= 0 also asks for the raw row's log-probabilities
  // (Sampler's raw logprobs): its log-normalizer and, when > 0, its `logprobs` most likely
  // tokens (for kArgMax and kDraw TopKOfRow at temperature 1, ties included; for kTopK, at
  // most top_k, and kNucleus they are among the candidates), and for kDraw the drawn
  // token's logit; -1 for none.
  int64_t logprobs = -1;
  // Applied to the row where the logits are before anything else (Backend::EditLogits; the
  // chain's sparse processors, LogitsProcessorChain::Edits): everything above but the
  // logprobs, a whole row that comes back included, is then of the edited row; the
  // logprobs stay the raw row's, taken before the edits. Tokens ascending, each once, below
  // the vocabulary size; `row` is not read.
  std::vector<LogitEdit> edits;
};

struct TopKCandidates {
  std::vector<int32_t> ids;  // ascending
  std::vector<float> values;  // the raw logits of `ids`
};

struct LogitsSelection {
  // In: one want per logits row (empty: every row comes back whole).
  std::vector<LogitsRowWant> wants;
  // Out, one entry per logits row:
  std::vector<RowArgMax> argmax;            // kArgMax rows
  // kTopK rows, kNucleus rows (the kNucleusCandidates most likely tokens, ties included)
  // and unedited kArgMax and kDraw rows with logprobs > 0 (their `logprobs` most likely);
  // empty when the row came back whole.
  std::vector<TopKCandidates> candidates;
  // Rows with logprobs >= 0: log Σ exp(raw row) in float64 (the max plus the
  // log of SoftmaxDenominators' sum at temperature 1), from which a token's logprob is
  // float(logit - log_normalizer) (decoding/sampler.h's LogprobOf).
  std::vector<double> log_normalizers;
  // kNucleus rows with top-p (at their temperature), and kArgMax, kTopK and kDraw rows with
  // logprobs (at temperature 1): SoftmaxDenominators' sum.
  std::vector<double> denominators;
  std::vector<int32_t> drawn;               // kDraw rows: the token (-1: no value is finite)
  // kDraw rows with logprobs >= 0 and a token: the drawn token's raw logit.
  std::vector<float> drawn_logits;
  // Rows whose want has edits, when they were applied (LogitsSelection::edited): the value
  // each edit replaced, parallel to the want's edits (the raw row's logits there; elsewhere
  // the edited row's are the raw ones).
  std::vector<std::vector<float>> unedited;
  // Edited rows with logprobs >= 0: the raw row's max(1, logprobs) most likely tokens
  // (TopKOfRow at temperature 1, ties included), taken before the edits (`candidates` holds
  // the edited row's selection).
  std::vector<TopKCandidates> raw_candidates;
  // Whether the row's edits were applied: all rows with edits but those that report
  // logprobs and whose raw row holds a NaN or +inf (or more ties at its largest value than
  // the room for them), which come back whole and unedited.
  std::vector<bool> edited;
  // Where the row is in the returned logits, or -1. kRow rows always come back, and so do
  // kTopK and kNucleus rows whose candidates could not be taken (more ties than the room for
  // them, a NaN in the row, or for kNucleus a nucleus that reaches past them:
  // common/row_nucleus.h), and rows with logprobs that hold a NaN or +inf.
  std::vector<int64_t> row_index;
};

// How many candidates past k the device keeps room for (ties at the k-th value); a row with
// more comes back whole.
inline constexpr int64_t kTopKTieRoom = 32;
// How many of the most likely tokens a kNucleus row sends back: what top-p or min-p keeps
// must lie within them (common/row_nucleus.h), else the row comes back whole.
inline constexpr int64_t kNucleusCandidates = 1024;
// The most alternatives a kArgMax or kDraw row's logprobs may ask for (a kNucleus row's:
// kNucleusCandidates).
inline constexpr int64_t kMaxLogprobCandidates = 1024;

// The raw logit an edit of edited row r replaced at `token`; std::nullopt when no edit of
// the row touches it (the edited row then holds the raw value).
std::optional<float> ReplacedLogit(const LogitsSelection& selection, size_t r, int32_t token);

// INVALID_ARGUMENT unless `selection` has one want per each of `rows` logits rows of `vocab`
// logits, each want's edits are for ascending distinct tokens below `vocab`, each
// kTopK want a top_k > 0 and a temperature > 0, each kNucleus want a temperature > 0, a
// top_p in (0, 1] and a min_p in [0, 1), not both 1 and 0, and each kDraw want a temperature
// > 0 and a u in [0, 1); logprobs is -1, or in [0, kMaxLogprobCandidates] on a kArgMax or
// kDraw want, [0, kNucleusCandidates] on a kNucleus want, or [0, top_k] on a kTopK want
// ([0, kMaxLogprobCandidates] with edits, whose logprobs do not come from the candidates).
[[nodiscard]] absl::Status CheckLogitsSelection(const LogitsSelection& selection, int64_t rows,
                                                int64_t vocab);

}  // namespace tessera
