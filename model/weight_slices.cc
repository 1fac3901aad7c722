#include "model/weight_slices.h"

#include <string>

#include "absl/strings/str_format.h"

namespace tessera {
namespace {

absl::Status CheckMatrix(const TensorView& w, std::string_view name) {
  if (w.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor %s: a slice needs a matrix, got shape %s", std::string(name), w.ShapeString()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TensorView> SliceRows(const TensorView& w, ShardRange rows, std::string_view name) {
  if (absl::Status s = CheckMatrix(w, name); !s.ok()) return s;
  if (rows.begin < 0 || rows.end > w.dim(0) || rows.begin >= rows.end) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor %s: rows [%d, %d) are not a non-empty part of its %d rows",
                        std::string(name), rows.begin, rows.end, w.dim(0)));
  }
  TensorView out = w;
  out.packed = nullptr;  // a packed copy covers the whole matrix
  out.data = w.RowPtr(rows.begin);
  out.shape[0] = rows.size();
  return out;
}

absl::StatusOr<TensorView> SliceColumns(const TensorView& w, ShardRange cols,
                                        std::string_view name) {
  if (absl::Status s = CheckMatrix(w, name); !s.ok()) return s;
  const DTypeTraits& t = Traits(w.dtype);
  if (cols.begin < 0 || cols.end > w.dim(1) || cols.begin >= cols.end) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor %s: columns [%d, %d) are not a non-empty part of its %d columns",
                        std::string(name), cols.begin, cols.end, w.dim(1)));
  }
  if (cols.begin % t.block_elems != 0 || cols.end % t.block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor %s: columns [%d, %d) do not fall on %s block boundaries (%d elements); "
        "choose a tensor-parallel size that splits on whole blocks",
        std::string(name), cols.begin, cols.end, DTypeName(w.dtype), t.block_elems));
  }
  TensorView out = w;
  out.packed = nullptr;
  out.row_stride_bytes = w.RowStrideBytes();
  out.data = static_cast<const uint8_t*>(w.data) + cols.begin / t.block_elems * t.block_bytes;
  out.shape[1] = cols.size();
  return out;
}

}  // namespace tessera
