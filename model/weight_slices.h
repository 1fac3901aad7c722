// Views of a rank's share of a weight matrix under tensor parallelism, without copying:
// a row slice (column-parallel layers: Q/K/V, gate/up, the vocab-parallel embedding and LM
// head) is a contiguous run of rows; a column slice (row-parallel layers: O and down, split
// along their input) keeps the full row stride and starts at a block boundary, since
// quantized rows are runs of blocks.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "parallel/shard_plan.h"

namespace tessera {

// Rows [rows.begin, rows.end) of the matrix `w` (named `name` in errors).
[[nodiscard]] absl::StatusOr<TensorView> SliceRows(const TensorView& w, ShardRange rows,
                                                   std::string_view name);

// Columns [cols.begin, cols.end) of every row of `w`. INVALID_ARGUMENT when the range is
// outside the matrix or does not start and end on the dtype's block boundaries.
[[nodiscard]] absl::StatusOr<TensorView> SliceColumns(const TensorView& w, ShardRange cols,
                                                      std::string_view name);

}  // namespace tessera
