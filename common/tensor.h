// A non-owning view of a dense tensor: dtype, row-major shape (outermost first) and data.
// Quantized tensors keep GGML's layout: each row of the innermost dimension is a run of
// blocks, so the innermost size is a multiple of the block size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"

namespace tessera {

// A backend's private copy of a weight matrix in the layout its kernels read fastest
// (Backend::PackWeight). Opaque outside the backend that made it; owned by whoever asked
// for it (the model), which must keep it alive as long as views point at it.
struct PackedWeight {
  virtual ~PackedWeight() = default;
};

struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first; empty = scalar
  const void* data = nullptr;
  // Bytes from one row to the next when the rows are a column slice of a wider matrix (a
  // tensor-parallel shard of a row-parallel weight); 0 = dense (rows back to back).
  int64_t row_stride_bytes = 0;
  // When set, the backend that packed this matrix reads the packed copy instead of `data`
  // (which stays valid for every other reader). Views made from this one by slicing must
  // clear it: a packed copy covers the whole matrix it was made from.
  const PackedWeight* packed = nullptr;

  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t dim(int64_t i) const { return shape[static_cast<size_t>(i)]; }
  int64_t NumElements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Innermost dimension (elements per row) and the number of rows.
  int64_t Cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t Rows() const { return Cols() == 0 ? 0 : NumElements() / Cols(); }
  // Bytes of one row's own elements (valid shapes only).
  int64_t RowBytes() const {
    const DTypeTraits& t = Traits(dtype);
    return Cols() / t.block_elems * t.block_bytes;
  }
  // Bytes from one row to the next.
  int64_t RowStrideBytes() const { return row_stride_bytes != 0 ? row_stride_bytes : RowBytes(); }
  bool dense() const { return row_stride_bytes == 0 || row_stride_bytes == RowBytes(); }
  // Bytes of the elements themselves (the gaps of a column slice not counted).
  int64_t NumBytes() const { return Rows() * RowBytes(); }
  const uint8_t* RowPtr(int64_t row) const {
    return static_cast<const uint8_t*>(data) + row * RowStrideBytes();
  }
  std::string ShapeString() const { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }
};

}  // namespace tessera
