#include "decoding/philox.h"

#include <cmath>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;

// Random123 1.14 examples/kat_vectors, the "philox4x32 10" lines: counter, key, expected.
TEST(PhiloxTest, Random123KnownAnswers) {
  EXPECT_THAT(Philox4x32({0, 0, 0, 0}, {0, 0}),
              ElementsAre(0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u));
  EXPECT_THAT(
      Philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
      ElementsAre(0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu));
  EXPECT_THAT(
      Philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
      ElementsAre(0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u));
}

// The "philox4x32 7" lines of the same file.
TEST(PhiloxTest, SevenRoundKnownAnswers) {
  EXPECT_THAT(Philox4x32({0, 0, 0, 0}, {0, 0}, 7),
              ElementsAre(0x5f6fb709u, 0x0d893f64u, 0x4f121f81u, 0x4f730a48u));
  EXPECT_THAT(
      Philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}, 7),
      ElementsAre(0x5207ddc2u, 0x45165e59u, 0x4d8ee751u, 0x8c52f662u));
  EXPECT_THAT(
      Philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}, 7),
      ElementsAre(0x4dfccabau, 0x190a87f0u, 0xc47362bau, 0xb6b5242au));
}

// Random123 u01: (x + 1/2) * 2^-32, so never 0; the float version rounds the top to 1.
TEST(PhiloxTest, UniformConversions) {
  EXPECT_EQ(U01Float(0), std::ldexp(1.0f, -33));
  EXPECT_EQ(U01Float(0xffffffffu), 1.0f);
  EXPECT_EQ(U01Float(0x80000000u), 0.5f + std::ldexp(1.0f, -33));
  EXPECT_EQ(U01Double(0), std::ldexp(1.0, -33));
  EXPECT_EQ(U01Double(0xffffffffu), 1.0 - std::ldexp(1.0, -33));
  EXPECT_EQ(U01Double(0x80000000u), 0.5 + std::ldexp(1.0, -33));
  EXPECT_EQ(Uniform53(0, 0), 0.0);
  EXPECT_EQ(Uniform53(0xffffffffu, 0xffffffffu), 1.0 - std::ldexp(1.0, -53));
  EXPECT_EQ(Uniform53(0x80000000u, 0), 0.5);
  EXPECT_EQ(Uniform53(0, 0x800u), std::ldexp(1.0, -53));  // lowest bit that counts
  EXPECT_EQ(Uniform53(0, 0x7ffu), 0.0);                   // the 11 dropped bits
}

TEST(PhiloxTest, DrawIsKeyedBySeedSequenceAndPosition) {
  // The draw is Philox of (position, sequence) under key seed, word by word.
  const PhiloxCounter d = PhiloxDraw(0x0123456789abcdefULL, 0x1111222233334444ULL, 0x5ULL);
  EXPECT_EQ(d, Philox4x32({5, 0, 0x33334444, 0x11112222}, {0x89abcdef, 0x01234567}));
  // Different seeds, sequences and positions give different numbers.
  std::set<double> seen;
  for (uint64_t seed : {0ULL, 1ULL, 1ULL << 40}) {
    for (uint64_t seq : {0ULL, 1ULL, 7ULL}) {
      for (uint64_t pos = 0; pos < 20; ++pos) {
        const double u = SamplingUniform(seed, seq, pos);
        EXPECT_GE(u, 0.0);
        EXPECT_LT(u, 1.0);
        seen.insert(u);
        EXPECT_EQ(u, SamplingUniform(seed, seq, pos));  // pure function
      }
    }
  }
  EXPECT_EQ(seen.size(), 3u * 3u * 20u);
}

TEST(PhiloxTest, UniformMomentsOverManyCounters) {
  // Mean 1/2 and variance 1/12; with n draws the mean's standard error is sqrt(1/12n).
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double u = SamplingUniform(42, 0, i);
    sum += u;
    sum_sq += u * u;
  }
  const double mean = sum / n;
  const double var = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(var, 1.0 / 12, 5 * std::sqrt(1.0 / 180 / n));  // var of u^2 terms ~ 1/180
}

}  // namespace
}  // namespace tessera
