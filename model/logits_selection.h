// What the leader wants back of each logits row of a step, when not the whole row
// (LlamaModel::ForwardPaged): greedy rows want their argmax, top-k sampled rows their
// candidates (common/row_top_k.h), plainly sampled rows their drawn token
// (common/row_sample.h), others the row itself. On a device backend the logits then stay on
// the device except for the rows that need them whole.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/row_argmax.h"

namespace tessera {

struct LogitsRowWant {
  enum class Kind : uint8_t { kRow, kArgMax, kTopK, kDraw };
  Kind kind = Kind::kRow;
  int64_t top_k = 0;          // kTopK: TopKOfRow's k (> 0)
  float temperature = 1.0f;   // kTopK, kDraw (> 0)
  double u = 0.0;             // kDraw: the draw's uniform in [0, 1)
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
  std::vector<TopKCandidates> candidates;   // kTopK rows (empty when the row came back whole)
  std::vector<int32_t> drawn;               // kDraw rows: the token (-1: no value is finite)
  // Where the row is in the returned logits, or -1. kRow rows always come back, and so do
  // kTopK rows whose candidates could not be taken (more ties than the room for them, or a
  // NaN in the row).
  std::vector<int64_t> row_index;
};

// How many candidates past k the device keeps room for (ties at the k-th value); a row with
// more comes back whole.
inline constexpr int64_t kTopKTieRoom = 32;

// INVALID_ARGUMENT unless `selection` has one want per each of `rows` logits rows, each
// kTopK want a top_k > 0 and a temperature > 0, and each kDraw want a temperature > 0 and a
// u in [0, 1).
[[nodiscard]] absl::Status CheckLogitsSelection(const LogitsSelection& selection, int64_t rows);

}  // namespace tessera
