// Tensor-parallel weight slices: a column slice keeps the full row stride and must start
// and end on block boundaries; MatMul over a slice (every CPU backend, 1 and 4 activation
// rows) equals MatMul over a dense copy of the same blocks, bit for bit.
#include "model/weight_slices.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quantize.h"
#include "kernels/registry.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kRows = 5, kCols = 128;  // Q8_0: 4 blocks of 32 per row

struct Q8Matrix {
  std::vector<uint8_t> bytes;
  TensorView view;
};

Q8Matrix MakeMatrix() {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  Q8Matrix m;
  m.view.dtype = DType::kQ8_0;
  m.view.shape = {kRows, kCols};
  m.bytes.resize(static_cast<size_t>(kRows * m.view.RowBytes()));
  std::vector<float> row(kCols);
  for (int64_t r = 0; r < kRows; ++r) {
    for (float& x : row) x = dist(rng);
    EXPECT_TRUE(
        QuantizeRow(DType::kQ8_0, row.data(), m.bytes.data() + r * m.view.RowBytes(), kCols).ok());
  }
  m.view.data = m.bytes.data();
  return m;
}

TEST(WeightSlicesTest, ColumnSliceMatMulEqualsADenseCopy) {
  const Q8Matrix m = MakeMatrix();
  auto slice = SliceColumns(m.view, {32, 96}, "w");
  ASSERT_TRUE(slice.ok()) << slice.status();
  EXPECT_EQ(slice->shape, (std::vector<int64_t>{kRows, 64}));
  EXPECT_FALSE(slice->dense());
  EXPECT_EQ(slice->RowStrideBytes(), m.view.RowBytes());
  // The same blocks, copied row after row.
  std::vector<uint8_t> dense(static_cast<size_t>(kRows * slice->RowBytes()));
  for (int64_t r = 0; r < kRows; ++r) {
    std::memcpy(dense.data() + r * slice->RowBytes(), slice->RowPtr(r),
                static_cast<size_t>(slice->RowBytes()));
  }
  TensorView copy{DType::kQ8_0, {kRows, 64}, dense.data()};
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  for (const std::string& name : AvailableBackends()) {
    auto backend = CreateBackend(name, 2);
    if (!backend.ok()) continue;  // e.g. a GPU backend on a machine without one
    for (const int64_t n : {1, 4, 5}) {
      std::vector<float> x(static_cast<size_t>(n * 64));
      for (float& v : x) v = dist(rng);
      std::vector<float> want(static_cast<size_t>(n * kRows)), got(want.size());
      ASSERT_TRUE((*backend)->MatMul(x.data(), n, 64, copy, want.data()).ok());
      ASSERT_TRUE((*backend)->MatMul(x.data(), n, 64, *slice, got.data()).ok());
      EXPECT_EQ(got, want) << name << " n=" << n;
    }
  }
}

TEST(WeightSlicesTest, RowSliceIsContiguous) {
  const Q8Matrix m = MakeMatrix();
  auto rows = SliceRows(m.view, {1, 4}, "w");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->shape, (std::vector<int64_t>{3, kCols}));
  EXPECT_TRUE(rows->dense());
  EXPECT_EQ(rows->data, m.view.RowPtr(1));
}

TEST(WeightSlicesTest, BadSlicesNameTheTensor) {
  const Q8Matrix m = MakeMatrix();
  const auto misaligned = SliceColumns(m.view, {16, 64}, "blk.0.attn_output.weight");
  EXPECT_EQ(misaligned.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(misaligned.status().message()), HasSubstr("blk.0.attn_output.weight"));
  EXPECT_THAT(std::string(misaligned.status().message()), HasSubstr("block"));
  EXPECT_EQ(SliceColumns(m.view, {64, 160}, "w").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SliceRows(m.view, {3, 3}, "w").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SliceRows(m.view, {0, 6}, "w").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
