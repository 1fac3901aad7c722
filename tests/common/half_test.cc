#include "common/half.h"

#include <cmath>
#include <cstring>

#include "gtest/gtest.h"

namespace tessera {
namespace {

// Reference: a half value from its fields, computed in double.
double HalfFromFields(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(HalfTest, EveryFp16DecodesExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = HalfFromFields(static_cast<uint16_t>(h));
    const float got = Fp16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << h;
    }
  }
}

TEST(HalfTest, EveryFiniteFp16RoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    if (((h >> 10) & 0x1f) == 0x1f) continue;
    EXPECT_EQ(FloatToFp16(Fp16ToFloat(static_cast<uint16_t>(h))), h) << h;
  }
}

TEST(HalfTest, RoundsToNearestEven) {
  // 1 + 2^-11 lies halfway between 1 and the next half (1 + 2^-10): ties to even -> 1.
  EXPECT_EQ(FloatToFp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(FloatToFp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToFp16(70000.0f), 0x7c00);  // overflow to +inf
  EXPECT_EQ(FloatToFp16(std::ldexp(1.0f, -25)), 0x0000);  // halfway to min subnormal -> even
  EXPECT_EQ(FloatToFp16(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(HalfTest, Bf16RoundTripAndRounding) {
  for (uint32_t b = 0; b < 65536; ++b) {
    if (((b >> 7) & 0xff) == 0xff) continue;
    EXPECT_EQ(FloatToBf16(Bf16ToFloat(static_cast<uint16_t>(b))), b);
  }
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie -> even
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
}

}  // namespace
}  // namespace tessera
