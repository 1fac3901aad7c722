// FP8 E4M3 ("e4m3fn": 1 sign, 4 exponent bits of bias 7, 3 mantissa bits; no infinities,
// S.1111.111 is NaN, largest finite 448) as one pair of functions that the CUDA kernels run
// on the device and the host tests check on the CPU (tests/kernels/cuda_fp8_test.cc, against
// a brute-force nearest value), so that a weight quantized on the GPU has the bits the host
// computes. Rows are scaled into range first: row r is stored as E4M3(v / scale[r]) with
// scale[r] = max|row| / 448 (Fp8RowScale), and read back as E4M3 value * scale[r].
// Compiles as C++17 under nvcc and as plain C++.
#pragma once

#include <cstdint>

#include "kernels/cuda/float_bits.h"

namespace tessera::cuda_shim {

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr uint8_t kFp8E4M3NaN = 0x7f;

// The value of an E4M3 byte, exact.
TESSERA_HOST_DEVICE inline float Fp8E4M3ToFloat(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t exponent = (b >> 3) & 0xfu;
  const uint32_t mantissa = b & 0x7u;
  if (exponent == 0xf && mantissa == 0x7) return FloatFromBits(sign | 0x7fc00000u);  // NaN
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-9
    const float v = static_cast<float>(mantissa) * 0.001953125f;
    return sign != 0 ? -v : v;
  }
  return FloatFromBits(sign | ((exponent + 120) << 23) | (mantissa << 20));
}

// The E4M3 byte nearest to f (ties to an even mantissa), saturating at ±448; NaN gives NaN.
TESSERA_HOST_DEVICE inline uint8_t FloatToFp8E4M3(float f) {
  const uint32_t bits = FloatBits(f);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<uint8_t>(sign | kFp8E4M3NaN);
  // 448 = 1.75 · 2^8 is 0x43e00000: everything at or past it saturates to 448.
  if (magnitude >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7e);
  const int exponent = static_cast<int>(magnitude >> 23) - 127;
  if (exponent < -6) {
    // Subnormal range: a multiple of 2^-9 (0 .. 8 · 2^-9, where 8 is the smallest normal's
    // bits). Scale by 2^9 and round to the nearest integer, ties to even, exactly: the
    // float's mantissa bits below the integer part decide.
    if (exponent < -11) return sign;  // below 2^-11, under a quarter of 2^-9: zero
    const uint32_t full = (magnitude & 0x7fffffu) | 0x800000u;  // 1.m · 2^23
    const int shift = 23 - (exponent + 9);                         // bits below the integer
    const uint32_t whole = full >> shift;
    const uint32_t rest = full & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rounded = whole + ((rest > half || (rest == half && (whole & 1))) ? 1 : 0);
    return static_cast<uint8_t>(sign | rounded);  // 8 is exponent 1, mantissa 0: exact
  }
  // Normal: keep 3 of the 23 mantissa bits, rounding the other 20 to nearest even; a carry
  // out of the mantissa moves the exponent up by one, which the addition does by itself.
  const uint32_t rest = magnitude & 0xfffffu;
  uint32_t kept = ((static_cast<uint32_t>(exponent + 7)) << 3) | ((magnitude >> 20) & 0x7u);
  if (rest > 0x80000u || (rest == 0x80000u && (kept & 1))) ++kept;  // at most 448's 0x7e
  return static_cast<uint8_t>(sign | kept);
}

// The scale of a row whose largest magnitude is `absmax`: absmax / 448, so that the row's
// values divided by it lie in E4M3's range; 1 for a row of zeros (or a NaN maximum).
TESSERA_HOST_DEVICE inline float Fp8RowScale(float absmax) {
  return absmax > 0.0f && absmax <= 3.4028234663852886e38f ? absmax / kFp8E4M3Max : 1.0f;
}

}  // namespace tessera::cuda_shim
