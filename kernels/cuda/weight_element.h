// Element c of a weight row in its GGML storage type, as one function that the CUDA kernels
// (quantized.cu) run on the device and the host tests run on the CPU against
// kernels/cpu/dequantize (tests/kernels/cuda_weight_element_test.cc), so that the bit
// layouts of every block format are checked on machines without a GPU. Formulas and float
// operation order are ggml's dequantize_row_* (the host build gives DequantizeRow's bits;
// nvcc may contract a multiply-add). Compiles as C++17 under nvcc and as plain C++.
#pragma once

#include <cstdint>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/cuda/float_bits.h"
#include "kernels/cuda/fp8_e4m3.h"

namespace tessera::cuda_shim {

// Weight storage types, by common/dtype.h's DType values (GGML's ids, and the backend's
// own FP8). An FP8 row holds E4M3 values without their row's scale: the element readers
// give those values, and whoever reads the row multiplies by its scale.
enum WeightType : int {
  kWF32 = 0, kWF16 = 1, kWQ4_0 = 2, kWQ4_1 = 3, kWQ5_0 = 6, kWQ5_1 = 7, kWQ8_0 = 8,
  kWQ2_K = 10, kWQ3_K = 11, kWQ4_K = 12, kWQ5_K = 13, kWQ6_K = 14, kWBF16 = 30,
  kWF8E4M3 = 0x10000,
};

// Elements per block (1 for the float types), and bytes per block; 0 for another type.
TESSERA_HOST_DEVICE constexpr int WeightBlockElems(int type) {
  switch (type) {
    case kWF32: case kWF16: case kWBF16: case kWF8E4M3: return 1;
    case kWQ4_0: case kWQ4_1: case kWQ5_0: case kWQ5_1: case kWQ8_0: return 32;
    case kWQ2_K: case kWQ3_K: case kWQ4_K: case kWQ5_K: case kWQ6_K: return kQK_K;
    default: return 0;
  }
}
TESSERA_HOST_DEVICE constexpr int WeightBlockBytes(int type) {
  switch (type) {
    case kWF32: return 4;
    case kWF16: case kWBF16: return 2;
    case kWF8E4M3: return 1;
    case kWQ4_0: return sizeof(BlockQ4_0);
    case kWQ4_1: return sizeof(BlockQ4_1);
    case kWQ5_0: return sizeof(BlockQ5_0);
    case kWQ5_1: return sizeof(BlockQ5_1);
    case kWQ8_0: return sizeof(BlockQ8_0);
    case kWQ2_K: return sizeof(BlockQ2_K);
    case kWQ3_K: return sizeof(BlockQ3_K);
    case kWQ4_K: return sizeof(BlockQ4_K);
    case kWQ5_K: return sizeof(BlockQ5_K);
    case kWQ6_K: return sizeof(BlockQ6_K);
    default: return 0;
  }
}

// Bytes of a row of `cols` elements; 0 for an unknown type or a row of partial blocks.
TESSERA_HOST_DEVICE constexpr int64_t WeightRowBytes(int type, int64_t cols) {
  const int elems = WeightBlockElems(type);
  if (elems == 0 || cols % elems != 0) return 0;
  return cols / elems * WeightBlockBytes(type);
}

// IEEE half (bit pattern) to float, exact.
TESSERA_HOST_DEVICE inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-24
    const float v = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign != 0 ? -v : v;
  }
  if (exponent == 31) return FloatFromBits(sign | 0x7f800000u | (mantissa << 13));
  return FloatFromBits(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

TESSERA_HOST_DEVICE inline float Bf16ToFloatBits(uint16_t b) {
  return FloatFromBits(static_cast<uint32_t>(b) << 16);
}

// Bit t (0..31) of a Q5 block's 4-byte qh field (little-endian).
TESSERA_HOST_DEVICE inline int Q5HighBit(const uint8_t* qh, int t) { return (qh[t / 8] >> (t % 8)) & 1; }

// The j-th (0..7) 6-bit scale and min of a Q4_K / Q5_K block.
TESSERA_HOST_DEVICE inline void KScaleMinAt(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The j-th (0..15) 6-bit scale of a Q3_K block, before its -32 offset.
TESSERA_HOST_DEVICE inline int Q3KScale(const uint8_t* scales, int j) {
  const int low = j < 8 ? (scales[j] & 0xF) : (scales[j - 8] >> 4);
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return low | (high << 4);
}

// Element t of one block of a quantized type.
TESSERA_HOST_DEVICE inline float QuantizedElement(const uint8_t* block, int type, int t) {
  switch (type) {
    case kWQ8_0: {
      const auto& b = *reinterpret_cast<const BlockQ8_0*>(block);
      return b.qs[t] * HalfToFloat(b.d);
    }
    case kWQ4_0: {
      const auto& b = *reinterpret_cast<const BlockQ4_0*>(block);
      const int q = t < 16 ? (b.qs[t] & 15) : (b.qs[t - 16] >> 4);
      return (q - 8) * HalfToFloat(b.d);
    }
    case kWQ4_1: {
      const auto& b = *reinterpret_cast<const BlockQ4_1*>(block);
      const int q = t < 16 ? (b.qs[t] & 15) : (b.qs[t - 16] >> 4);
      return q * HalfToFloat(b.d) + HalfToFloat(b.m);
    }
    case kWQ5_0: {
      const auto& b = *reinterpret_cast<const BlockQ5_0*>(block);
      const int q = (t < 16 ? (b.qs[t] & 15) : (b.qs[t - 16] >> 4)) | (Q5HighBit(b.qh, t) << 4);
      return (q - 16) * HalfToFloat(b.d);
    }
    case kWQ5_1: {
      const auto& b = *reinterpret_cast<const BlockQ5_1*>(block);
      const int q = (t < 16 ? (b.qs[t] & 15) : (b.qs[t - 16] >> 4)) | (Q5HighBit(b.qh, t) << 4);
      return q * HalfToFloat(b.d) + HalfToFloat(b.m);
    }
    case kWQ2_K: {  // halves of 128: 4 shifts × 2 groups of 16
      const auto& b = *reinterpret_cast<const BlockQ2_K*>(block);
      const int n = t / 128, shift = (t % 128) / 32, group = (t % 32) / 16, l = t % 16;
      const int sc = b.scales[n * 8 + shift * 2 + group];
      const int q = (b.qs[n * 32 + group * 16 + l] >> (2 * shift)) & 3;
      return HalfToFloat(b.d) * (sc & 0xF) * q - HalfToFloat(b.dmin) * (sc >> 4);
    }
    case kWQ3_K: {
      const auto& b = *reinterpret_cast<const BlockQ3_K*>(block);
      const int n = t / 128, shift = (t % 128) / 32, group = (t % 32) / 16, l = t % 16;
      const int at = group * 16 + l;
      const int low = (b.qs[n * 32 + at] >> (2 * shift)) & 3;
      const int high = (b.hmask[at] >> (n * 4 + shift)) & 1;
      const float dl = HalfToFloat(b.d) * (Q3KScale(b.scales, n * 8 + shift * 2 + group) - 32);
      return dl * (low - (high != 0 ? 0 : 4));
    }
    case kWQ4_K:
    case kWQ5_K: {  // pairs of 32-element sub-blocks: low nibbles, then high nibbles
      const bool five = type == kWQ5_K;
      const uint8_t* scales = five ? reinterpret_cast<const BlockQ5_K*>(block)->scales
                                   : reinterpret_cast<const BlockQ4_K*>(block)->scales;
      const uint8_t* qs = five ? reinterpret_cast<const BlockQ5_K*>(block)->qs
                               : reinterpret_cast<const BlockQ4_K*>(block)->qs;
      const uint16_t d_bits = reinterpret_cast<const BlockQ4_K*>(block)->d;
      const uint16_t dmin_bits = reinterpret_cast<const BlockQ4_K*>(block)->dmin;
      const int sub = t / 32, l = t % 32;
      const uint8_t byte = qs[(sub / 2) * 32 + l];
      int q = sub % 2 == 0 ? (byte & 0xF) : (byte >> 4);
      if (five) q += ((reinterpret_cast<const BlockQ5_K*>(block)->qh[l] >> sub) & 1) * 16;
      int sc, m;
      KScaleMinAt(sub, scales, &sc, &m);
      return HalfToFloat(d_bits) * sc * q - HalfToFloat(dmin_bits) * m;
    }
    case kWQ6_K: {  // halves of 128: 4 quarters of 32 sharing ql / qh bytes
      const auto& b = *reinterpret_cast<const BlockQ6_K*>(block);
      const int n = t / 128, quarter = (t % 128) / 32, l = t % 32;
      const uint8_t low_byte = b.ql[n * 64 + l + 32 * (quarter & 1)];
      const int low = (low_byte >> (4 * (quarter >> 1))) & 0xF;
      const int high = (b.qh[n * 32 + l] >> (2 * quarter)) & 3;
      return HalfToFloat(b.d) * b.scales[n * 8 + l / 16 + 2 * quarter] * ((low | (high << 4)) - 32);
    }
    default:
      return 0.0f;
  }
}

// Element c of a row of `type` (c < the row's length, a row of whole blocks).
TESSERA_HOST_DEVICE inline float WeightElement(const uint8_t* row, int type, int64_t c) {
  switch (type) {
    case kWF32: return reinterpret_cast<const float*>(row)[c];
    case kWF16: return HalfToFloat(reinterpret_cast<const uint16_t*>(row)[c]);
    case kWBF16: return Bf16ToFloatBits(reinterpret_cast<const uint16_t*>(row)[c]);
    case kWF8E4M3: return Fp8E4M3ToFloat(row[c]);
    default: {
      const int elems = WeightBlockElems(type);
      return QuantizedElement(row + c / elems * WeightBlockBytes(type), type,
                              static_cast<int>(c % elems));
    }
  }
}

// Elements of one chunk, as the decode GEMV reads a row: kWeightChunk consecutive elements
// that share every scale of their block (a 32-element block, or a 16- or 32-element group of
// a K-quant super-block), so that the scales are decoded once per chunk, not per element.
inline constexpr int kWeightChunk = 8;

// out[i] = element c0 + i of a row of `type`, i < kWeightChunk; c0 a multiple of
// kWeightChunk and the chunk inside the row. Same values (and float operations) as
// WeightElement.
TESSERA_HOST_DEVICE inline void WeightChunk(const uint8_t* row, int type, int64_t c0,
                                            float* out) {
  constexpr int n = kWeightChunk;
  switch (type) {
    case kWF32:
      for (int i = 0; i < n; ++i) out[i] = reinterpret_cast<const float*>(row)[c0 + i];
      return;
    case kWF16:
      for (int i = 0; i < n; ++i) out[i] = HalfToFloat(reinterpret_cast<const uint16_t*>(row)[c0 + i]);
      return;
    case kWBF16:
      for (int i = 0; i < n; ++i) {
        out[i] = Bf16ToFloatBits(reinterpret_cast<const uint16_t*>(row)[c0 + i]);
      }
      return;
    case kWF8E4M3:
      for (int i = 0; i < n; ++i) out[i] = Fp8E4M3ToFloat(row[c0 + i]);
      return;
    default: break;
  }
  const int elems = WeightBlockElems(type);
  const uint8_t* block = row + c0 / elems * WeightBlockBytes(type);
  const int t0 = static_cast<int>(c0 % elems);
  switch (type) {
    case kWQ8_0: {
      const auto& b = *reinterpret_cast<const BlockQ8_0*>(block);
      const float d = HalfToFloat(b.d);
      for (int i = 0; i < n; ++i) out[i] = b.qs[t0 + i] * d;
      return;
    }
    case kWQ4_0:
    case kWQ4_1:
    case kWQ5_0:
    case kWQ5_1: {
      // Q4_0 / Q5_0 are {d, [qh], qs}; Q4_1 / Q5_1 {d, m, [qh], qs}: the nibbles of elements
      // t and t + 16 share byte t % 16.
      const bool has_min = type == kWQ4_1 || type == kWQ5_1;
      const bool five = type == kWQ5_0 || type == kWQ5_1;
      const uint16_t* halves = reinterpret_cast<const uint16_t*>(block);
      const float d = HalfToFloat(halves[0]);
      const float m = has_min ? HalfToFloat(halves[1]) : 0.0f;
      const uint8_t* qh = block + (has_min ? 4 : 2);
      const uint8_t* qs = qh + (five ? 4 : 0);
      const int shift = t0 < 16 ? 0 : 4;
      for (int i = 0; i < n; ++i) {
        const int t = t0 + i;
        int q = (qs[t % 16] >> shift) & 0xF;
        if (five) q |= Q5HighBit(qh, t) << 4;
        if (has_min) {
          out[i] = q * d + m;
        } else {
          out[i] = (q - (five ? 16 : 8)) * d;
        }
      }
      return;
    }
    case kWQ2_K: {
      const auto& b = *reinterpret_cast<const BlockQ2_K*>(block);
      const int half = t0 / 128, shift = (t0 % 128) / 32, group = (t0 % 32) / 16, l0 = t0 % 16;
      const int sc = b.scales[half * 8 + shift * 2 + group];
      const float dl = HalfToFloat(b.d) * (sc & 0xF);
      const float ml = HalfToFloat(b.dmin) * (sc >> 4);
      const uint8_t* q = b.qs + half * 32 + group * 16 + l0;
      for (int i = 0; i < n; ++i) out[i] = dl * ((q[i] >> (2 * shift)) & 3) - ml;
      return;
    }
    case kWQ3_K: {
      const auto& b = *reinterpret_cast<const BlockQ3_K*>(block);
      const int half = t0 / 128, shift = (t0 % 128) / 32, group = (t0 % 32) / 16, l0 = t0 % 16;
      const float dl =
          HalfToFloat(b.d) * (Q3KScale(b.scales, half * 8 + shift * 2 + group) - 32);
      const int at = group * 16 + l0;
      for (int i = 0; i < n; ++i) {
        const int low = (b.qs[half * 32 + at + i] >> (2 * shift)) & 3;
        const int high = (b.hmask[at + i] >> (half * 4 + shift)) & 1;
        out[i] = dl * (low - (high != 0 ? 0 : 4));
      }
      return;
    }
    case kWQ4_K:
    case kWQ5_K: {
      const bool five = type == kWQ5_K;
      const uint8_t* scales = five ? reinterpret_cast<const BlockQ5_K*>(block)->scales
                                   : reinterpret_cast<const BlockQ4_K*>(block)->scales;
      const uint8_t* qs = five ? reinterpret_cast<const BlockQ5_K*>(block)->qs
                               : reinterpret_cast<const BlockQ4_K*>(block)->qs;
      const int sub = t0 / 32, l0 = t0 % 32;
      int sc, m;
      KScaleMinAt(sub, scales, &sc, &m);
      const float dl = HalfToFloat(reinterpret_cast<const BlockQ4_K*>(block)->d) * sc;
      const float ml = HalfToFloat(reinterpret_cast<const BlockQ4_K*>(block)->dmin) * m;
      const uint8_t* q = qs + (sub / 2) * 32 + l0;
      const int shift = sub % 2 == 0 ? 0 : 4;
      for (int i = 0; i < n; ++i) {
        int v = (q[i] >> shift) & 0xF;
        if (five) v += ((reinterpret_cast<const BlockQ5_K*>(block)->qh[l0 + i] >> sub) & 1) * 16;
        out[i] = dl * v - ml;
      }
      return;
    }
    case kWQ6_K: {
      const auto& b = *reinterpret_cast<const BlockQ6_K*>(block);
      const int half = t0 / 128, quarter = (t0 % 128) / 32, l0 = t0 % 32;
      const float dl = HalfToFloat(b.d) * b.scales[half * 8 + l0 / 16 + 2 * quarter];
      const uint8_t* low = b.ql + half * 64 + l0 + 32 * (quarter & 1);
      const uint8_t* high = b.qh + half * 32 + l0;
      for (int i = 0; i < n; ++i) {
        const int q = ((low[i] >> (4 * (quarter >> 1))) & 0xF) | (((high[i] >> (2 * quarter)) & 3) << 4);
        out[i] = dl * (q - 32);
      }
      return;
    }
    default:
      for (int i = 0; i < n; ++i) out[i] = 0.0f;
  }
}

}  // namespace tessera::cuda_shim
