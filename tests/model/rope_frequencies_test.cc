// ComputeRopeFrequencies against the independent float64 formulas in reference_llama.cc
// (transformers' default / linear / llama3 / yarn rope init functions), plus known values of
// the Llama-3.1 configuration and the GGUF rope_freqs tensor convention.
#include "model/rope_frequencies.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/reference_llama.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using testing::ReferenceRopeFor;
using testing::TinyRope;
using testing::TinySpec;

ModelConfig ConfigFor(const TinySpec& s) {
  ModelConfig c;
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.ffn;
  c.num_layers = s.layers;
  c.num_heads = s.heads;
  c.num_kv_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.rope_dim = s.rope_dim;
  c.max_position_embeddings = s.context;
  c.rope_theta = s.theta;
  RopeScaling& r = c.rope_scaling;
  r.factor = s.rope_factor;
  r.original_max_position_embeddings = s.original_context;
  r.low_freq_factor = s.low_freq_factor;
  r.high_freq_factor = s.high_freq_factor;
  r.beta_fast = s.beta_fast;
  r.beta_slow = s.beta_slow;
  switch (s.rope) {
    case TinyRope::kNone: r.type = RopeScalingType::kNone; break;
    case TinyRope::kLinear: r.type = RopeScalingType::kLinear; break;
    case TinyRope::kLlama3Tensor: r.type = RopeScalingType::kLlama3; break;
    case TinyRope::kYarn: r.type = RopeScalingType::kYarn; break;
  }
  return c;
}

// Relative agreement at float precision.
void ExpectMatchesReference(const TinySpec& s) {
  const ModelConfig c = ConfigFor(s);
  auto got = ComputeRopeFrequencies(c);
  ASSERT_TRUE(got.ok()) << got.status();
  const testing::ReferenceRope want = ReferenceRopeFor(s);
  ASSERT_EQ(got->inv_freq.size(), want.inv_freq.size());
  for (size_t i = 0; i < want.inv_freq.size(); ++i) {
    EXPECT_NEAR(got->inv_freq[i], want.inv_freq[i], 1e-6 * want.inv_freq[i]) << "i=" << i;
  }
  EXPECT_NEAR(got->mscale, want.mscale, 1e-6);
}

TEST(RopeFrequenciesTest, MatchesReferenceForEachScalingType) {
  for (double theta : {10000.0, 500000.0, 100000.0}) {
    for (int64_t dim : {int64_t{16}, int64_t{64}, int64_t{128}}) {
      for (TinyRope rope :
           {TinyRope::kNone, TinyRope::kLinear, TinyRope::kLlama3Tensor, TinyRope::kYarn}) {
        for (int64_t original : {int64_t{256}, int64_t{4096}, int64_t{8192}}) {
          TinySpec s;
          s.theta = theta;
          s.head_dim = s.rope_dim = dim;
          s.rope = rope;
          s.rope_factor = 8.0;
          s.original_context = original;
          SCOPED_TRACE(::testing::Message() << "theta=" << theta << " dim=" << dim
                                            << " rope=" << static_cast<int>(rope)
                                            << " original=" << original);
          ExpectMatchesReference(s);
        }
      }
    }
  }
}

TEST(RopeFrequenciesTest, Llama31KnownBands) {
  // Llama-3.1-8B: theta 500000, head_dim 128, factor 8, low 1, high 4, original 8192.
  ModelConfig c;
  c.head_dim = c.rope_dim = 128;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = RopeScalingType::kLlama3;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  auto got = ComputeRopeFrequencies(c);
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<double> base = BaseRopeFrequencies(500000.0, 128);
  ASSERT_EQ(got->inv_freq.size(), 64u);
  // Wavelength < 2048: unchanged. Wavelength > 8192: divided by 8.
  EXPECT_FLOAT_EQ(got->inv_freq[0], 1.0f);
  EXPECT_FLOAT_EQ(got->inv_freq[20], static_cast<float>(base[20]));
  EXPECT_FLOAT_EQ(got->inv_freq[63], static_cast<float>(base[63] / 8.0));
  // In between, a strictly smaller but not fully divided frequency.
  for (size_t i = 0; i < 64; ++i) {
    const double wavelen = 2 * M_PI / base[i];
    if (wavelen > 2048.0 && wavelen < 8192.0) {
      EXPECT_LT(got->inv_freq[i], base[i]);
      EXPECT_GT(got->inv_freq[i], base[i] / 8.0);
    }
  }
  EXPECT_FLOAT_EQ(got->mscale, 1.0f);
}

TEST(RopeFrequenciesTest, YarnMscale) {
  ModelConfig c;
  c.head_dim = c.rope_dim = 64;
  c.rope_theta = 10000.0;
  c.rope_scaling.type = RopeScalingType::kYarn;
  c.rope_scaling.factor = 16.0;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.rope_scaling.attn_factor = 0.5;
  auto got = ComputeRopeFrequencies(c);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_NEAR(got->mscale, (0.1 * std::log(16.0) + 1.0) * 0.5, 1e-6);
  // Highest frequencies extrapolate (unchanged); lowest interpolate (divided by factor).
  const std::vector<double> base = BaseRopeFrequencies(10000.0, 64);
  EXPECT_FLOAT_EQ(got->inv_freq[0], static_cast<float>(base[0]));
  EXPECT_FLOAT_EQ(got->inv_freq[31], static_cast<float>(base[31] / 16.0));
}

TEST(RopeFrequenciesTest, RopeFreqsTensorDividesAndReplacesLlama3) {
  ModelConfig c;
  c.head_dim = 8;
  c.rope_dim = 8;
  c.rope_theta = 10000.0;
  c.rope_scaling.type = RopeScalingType::kLlama3;  // ignored: the tensor carries the factors
  c.rope_scaling.factor = 8.0;
  std::vector<float> factors = {1.0f, 2.0f, 4.0f, 8.0f};
  TensorView t{DType::kF32, {4}, factors.data()};
  auto got = ComputeRopeFrequencies(c, &t);
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<double> base = BaseRopeFrequencies(10000.0, 8);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(got->inv_freq[i], static_cast<float>(base[i] / factors[i]));
  }
}

TEST(RopeFrequenciesTest, PartialRotaryUsesRopeDim) {
  ModelConfig c;
  c.head_dim = 64;
  c.rope_dim = 16;
  c.rope_theta = 10000.0;
  auto got = ComputeRopeFrequencies(c);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->inv_freq.size(), 8u);
  EXPECT_FLOAT_EQ(got->inv_freq[1], static_cast<float>(std::pow(10000.0, -2.0 / 16.0)));
}

TEST(RopeFrequenciesTest, InvalidConfigsNameTheField) {
  ModelConfig c;
  c.head_dim = 16;
  c.rope_dim = 15;
  c.rope_theta = 10000.0;
  auto odd = ComputeRopeFrequencies(c);
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(odd.status().message(), HasSubstr("rope_dim"));

  c.rope_dim = 16;
  c.rope_theta = 0.0;
  auto theta = ComputeRopeFrequencies(c);
  EXPECT_EQ(theta.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(theta.status().message(), HasSubstr("rope_theta"));

  c.rope_theta = 10000.0;
  c.rope_scaling.type = RopeScalingType::kYarn;
  c.rope_scaling.factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 0;
  auto yarn = ComputeRopeFrequencies(c);
  EXPECT_EQ(yarn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(yarn.status().message(), HasSubstr("original_max_position_embeddings"));

  c.rope_scaling.type = RopeScalingType::kNone;
  std::vector<float> three(3, 1.0f);
  TensorView t{DType::kF32, {3}, three.data()};
  auto tensor = ComputeRopeFrequencies(c, &t);
  EXPECT_EQ(tensor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tensor.status().message(), HasSubstr("rope_freqs.weight"));
}

}  // namespace
}  // namespace tessera
