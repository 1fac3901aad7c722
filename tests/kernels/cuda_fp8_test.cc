// The CUDA backend's FP8 weights and activations are encoded on the device by
// kernels/cuda/fp8_e4m3.h; compiled here for the host, its decoding must give the E4M3 value
// of every byte (from the format's definition, in double) and its encoding the nearest such
// value with ties to even, found by searching all of them.
#include "kernels/cuda/fp8_e4m3.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

using cuda_shim::Fp8E4M3ToFloat;
using cuda_shim::FloatToFp8E4M3;

// The value of byte b by E4M3's definition: (-1)^s · 2^(e-7) · (1 + m/8), or 2^-6 · m/8 for
// e = 0; NaN for S.1111.111.
double DefinedValue(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double magnitude = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s != 0 ? -magnitude : magnitude;
}

// The byte nearest to x among the finite values of x's sign, ties to the even byte (an even
// mantissa); magnitudes past 448 give 448.
uint8_t NearestByte(double x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(x);
  int best = 0;
  for (int b = 1; b <= 0x7e; ++b) {
    const double d = std::fabs(DefinedValue(static_cast<uint8_t>(b)) - a);
    const double best_d = std::fabs(DefinedValue(static_cast<uint8_t>(best)) - a);
    if (d < best_d || (d == best_d && b % 2 == 0)) best = b;
  }
  return static_cast<uint8_t>(sign | best);
}

TEST(CudaFp8Test, EveryByteDecodesToItsDefinedValue) {
  for (int b = 0; b < 256; ++b) {
    SCOPED_TRACE(b);
    const double want = DefinedValue(static_cast<uint8_t>(b));
    const float got = Fp8E4M3ToFloat(static_cast<uint8_t>(b));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got));
    } else {
      EXPECT_EQ(static_cast<double>(got), want);
      EXPECT_EQ(std::signbit(got), (b & 0x80) != 0);
    }
  }
  EXPECT_EQ(Fp8E4M3ToFloat(0x7e), cuda_shim::kFp8E4M3Max);
}

TEST(CudaFp8Test, EveryFiniteByteEncodesBackToItself) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7f) == 0x7f) continue;
    EXPECT_EQ(FloatToFp8E4M3(Fp8E4M3ToFloat(static_cast<uint8_t>(b))), b) << b;
  }
}

TEST(CudaFp8Test, MidpointsRoundToTheEvenNeighbour) {
  // Between each pair of adjacent finite values: the midpoint itself and the floats on each
  // side of it, for both signs.
  for (int b = 0; b < 0x7e; ++b) {
    const float low = Fp8E4M3ToFloat(static_cast<uint8_t>(b));
    const float high = Fp8E4M3ToFloat(static_cast<uint8_t>(b + 1));
    const float mid = (low + high) / 2;  // exact: both have few mantissa bits
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f)}) {
      for (float signed_x : {x, -x}) {
        SCOPED_TRACE(signed_x);
        EXPECT_EQ(FloatToFp8E4M3(signed_x), NearestByte(signed_x));
      }
    }
  }
}

TEST(CudaFp8Test, RandomFloatsOfEveryMagnitudeEncodeToTheNearestByte) {
  std::mt19937 rng(29);
  std::uniform_real_distribution<double> exponent(-16.0, 12.0);
  std::uniform_int_distribution<int> coin(0, 1);
  for (int i = 0; i < 20000; ++i) {
    const float x = static_cast<float>((coin(rng) != 0 ? -1.0 : 1.0) * std::exp2(exponent(rng)));
    SCOPED_TRACE(x);
    ASSERT_EQ(FloatToFp8E4M3(x), NearestByte(x));
  }
}

TEST(CudaFp8Test, OutOfRangeSaturatesAndNanStaysNan) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToFp8E4M3(448.0f), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(1e6f), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(inf), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(-inf), 0xfe);
  EXPECT_EQ(FloatToFp8E4M3(std::nanf("")) & 0x7f, 0x7f);
  EXPECT_EQ(FloatToFp8E4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToFp8E4M3(1e-30f), 0x00);
}

TEST(CudaFp8Test, RowScaleMapsTheLargestMagnitudeToTheTopOfTheRange) {
  EXPECT_EQ(cuda_shim::Fp8RowScale(0.0f), 1.0f);
  EXPECT_EQ(cuda_shim::Fp8RowScale(std::nanf("")), 1.0f);
  EXPECT_EQ(cuda_shim::Fp8RowScale(std::numeric_limits<float>::infinity()), 1.0f);
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> magnitude(1e-6f, 1e6f);
  for (int i = 0; i < 1000; ++i) {
    const float absmax = magnitude(rng);
    const float scale = cuda_shim::Fp8RowScale(absmax);
    // The row's largest value encodes to ±448 (within a rounding of the division).
    EXPECT_EQ(FloatToFp8E4M3(absmax / scale), 0x7e) << absmax;
    EXPECT_EQ(FloatToFp8E4M3(-absmax / scale), 0xfe) << absmax;
  }
}

}  // namespace
}  // namespace tessera
