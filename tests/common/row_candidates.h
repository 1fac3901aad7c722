// TopKOfRow (common/row_top_k.h) for tests: a row's candidates as vectors of their count,
// with room for the whole row (never truncated).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/row_top_k.h"

namespace tessera::testing {

struct RowCandidates {
  std::vector<int32_t> ids;  // ascending
  std::vector<float> values;
};

// Empty when TopKOfRow reports a NaN in the row (or selects nothing).
inline RowCandidates CandidatesOfRow(std::span<const float> row, int64_t k, float temperature) {
  RowCandidates c;
  c.ids.resize(row.size());
  c.values.resize(row.size());
  const int32_t count = TopKOfRow(row, k, temperature, c.ids, c.values);
  const size_t kept = count < 0 ? 0 : static_cast<size_t>(count);
  c.ids.resize(kept);
  c.values.resize(kept);
  return c;
}

}  // namespace tessera::testing
