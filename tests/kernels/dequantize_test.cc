// DequantizeRow against values made by llama.cpp's gguf-py (and, for Q8_1/Q8_K which it
// lacks, numpy code written from the format spec): tests/fixtures/kernels/*.py.
#include "kernels/cpu/dequantize.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

class DequantizeFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DequantizeFixtureTest, MatchesGgufPy) {
  const testing::KernelFixture f = testing::LoadKernelFixture("dequant_" + GetParam() + ".bin");
  ASSERT_GT(f.n, 0);
  EXPECT_EQ(absl::AsciiStrToLower(std::string(DTypeName(f.type))), GetParam());
  const absl::StatusOr<int64_t> raw_bytes = RowBytes(f.type, f.n);
  ASSERT_TRUE(raw_bytes.ok());
  ASSERT_EQ(f.payload.size(), static_cast<size_t>(*raw_bytes + 4 * f.n));
  std::vector<float> expected(static_cast<size_t>(f.n));
  std::memcpy(expected.data(), f.payload.data() + *raw_bytes, 4 * f.n);

  std::vector<float> got(static_cast<size_t>(f.n), -1.0f);
  ASSERT_TRUE(DequantizeRow(f.type, f.payload.data(), got.data(), f.n).ok());
  for (int64_t i = 0; i < f.n; ++i) {
    // Both sides compute d * q (+ m) in float32; allow one ulp for operation order.
    EXPECT_NEAR(got[i], expected[i], 1e-6f * std::max(1.0f, std::fabs(expected[i])))
        << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllWeightTypes, DequantizeFixtureTest,
                         ::testing::Values("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k",
                                           "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "f16", "bf16"));

TEST(DequantizeTest, F32AndF64AreCopies) {
  const std::vector<float> f = {1.5f, -2.0f, 3.25f};
  const std::vector<double> d = {1.5, -2.0, 3.25};
  std::vector<float> out(3);
  ASSERT_TRUE(DequantizeRow(DType::kF32, f.data(), out.data(), 3).ok());
  EXPECT_EQ(out, f);
  ASSERT_TRUE(DequantizeRow(DType::kF64, d.data(), out.data(), 3).ok());
  EXPECT_EQ(out, f);
}

TEST(DequantizeTest, RejectsIntegerTypes) {
  const int32_t v[2] = {1, 2};
  float out[2];
  const absl::Status s = DequantizeRow(DType::kI32, v, out, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dtype i32"), std::string::npos) << s.message();
}

TEST(DequantizeTest, RejectsPartialBlocks) {
  std::vector<uint8_t> raw(64);
  float out[64];
  const absl::Status s = DequantizeRow(DType::kQ4_0, raw.data(), out, 33);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n=33"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace tessera
