// QuantizeRow: the weight quantizers against gguf-py's quantize (ggml's reference
// quantizers), and the activation formats (Q8_0/Q8_1/Q8_K) against their defining bounds.
#include "kernels/cpu/quantize.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/quant_blocks.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

class QuantizeFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizeFixtureTest, MatchesGgufPy) {
  const testing::KernelFixture f = testing::LoadKernelFixture("quant_" + GetParam() + ".bin");
  ASSERT_GT(f.n, 0);
  const absl::StatusOr<int64_t> bytes = RowBytes(f.type, f.n);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(f.payload.size(), static_cast<size_t>(4 * f.n + *bytes));
  std::vector<float> x(static_cast<size_t>(f.n));
  std::memcpy(x.data(), f.payload.data(), 4 * f.n);
  std::vector<uint8_t> got(static_cast<size_t>(*bytes));
  ASSERT_TRUE(QuantizeRow(f.type, x.data(), got.data(), f.n).ok());
  // Same algorithm in float32 on both sides: the blocks must agree byte for byte.
  const uint8_t* expected = f.payload.data() + 4 * f.n;
  for (int64_t i = 0; i < *bytes; ++i) {
    ASSERT_EQ(got[i], expected[i]) << "byte " << i << " of " << GetParam();
  }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, QuantizeFixtureTest,
                         ::testing::Values("q4_0", "q4_1", "q5_0", "q5_1", "q8_0"));

// Symmetric 8-bit formats: |x - x̂| <= d/2 (+ the fp16 rounding of d, for Q8_0/Q8_1).
TEST(QuantizeTest, ActivationFormatsRoundTripWithinHalfAStep) {
  std::mt19937 rng(7);
  const std::vector<float> x = testing::RandomFloats(512, rng, 3.0f);
  for (DType t : {DType::kQ8_0, DType::kQ8_1, DType::kQ8_K}) {
    const int64_t block = Traits(t).block_elems;
    std::vector<uint8_t> q(static_cast<size_t>(*RowBytes(t, 512)));
    ASSERT_TRUE(QuantizeRow(t, x.data(), q.data(), 512).ok());
    std::vector<float> back(512);
    ASSERT_TRUE(DequantizeRow(t, q.data(), back.data(), 512).ok());
    for (int64_t b = 0; b < 512 / block; ++b) {
      float amax = 0.0f;
      for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b * block + j]));
      const float step = amax / 127.0f;
      for (int64_t j = 0; j < block; ++j) {
        const int64_t i = b * block + j;
        EXPECT_LE(std::fabs(x[i] - back[i]), 0.5f * step + amax * 1e-3f)
            << DTypeName(t) << " element " << i;
      }
    }
  }
}

TEST(QuantizeTest, Q8_1StoresScaledSum) {
  std::mt19937 rng(8);
  const std::vector<float> x = testing::RandomFloats(64, rng);
  BlockQ8_1 q[2];
  ASSERT_TRUE(QuantizeRow(DType::kQ8_1, x.data(), q, 64).ok());
  for (const BlockQ8_1& b : q) {
    int sum = 0;
    for (int8_t v : b.qs) sum += v;
    EXPECT_NEAR(Fp16ToFloat(b.s), Fp16ToFloat(b.d) * sum, std::fabs(Fp16ToFloat(b.d) * sum) * 2e-3f);
  }
}

TEST(QuantizeTest, Q8_KStoresGroupSums) {
  std::mt19937 rng(9);
  const std::vector<float> x = testing::RandomFloats(256, rng);
  BlockQ8_K q;
  ASSERT_TRUE(QuantizeRow(DType::kQ8_K, x.data(), &q, 256).ok());
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += q.qs[16 * g + l];
    EXPECT_EQ(q.bsums[g], sum) << "group " << g;
  }
}

TEST(QuantizeTest, ZeroBlockHasZeroScale) {
  const std::vector<float> x(32, 0.0f);
  BlockQ8_0 q;
  ASSERT_TRUE(QuantizeRow(DType::kQ8_0, x.data(), &q, 32).ok());
  EXPECT_EQ(Fp16ToFloat(q.d), 0.0f);
  for (int8_t v : q.qs) EXPECT_EQ(v, 0);
}

TEST(QuantizeTest, RejectsKQuantWeightsAndPartialBlocks) {
  std::vector<float> x(256);
  std::vector<uint8_t> out(1024);
  absl::Status s = QuantizeRow(DType::kQ4_K, x.data(), out.data(), 256);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dtype q4_K"), std::string::npos) << s.message();
  s = QuantizeRow(DType::kQ8_0, x.data(), out.data(), 40);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n=40"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace tessera
