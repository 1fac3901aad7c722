// Portable scalar kernels: integer dot products with the same arithmetic as the SIMD ones
// (int32 sums per block, one float multiply-add per block), used on CPUs without AVX2.
#include <cmath>
#include <cstring>

#include "common/half.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/vec_dot.h"

namespace tessera {
namespace {

float DotQ4_0Q8_0(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ4_0*>(vw);
  const auto* a = static_cast<const BlockQ8_0*>(va);
  float sum = 0.0f;
  for (int64_t i = 0; i < k / kQK4_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      sumi += ((w[i].qs[j] & 0xF) - 8) * a[i].qs[j] + ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
    }
    sum += sumi * Fp16ToFloat(w[i].d) * Fp16ToFloat(a[i].d);
  }
  return sum;
}

float DotQ4_1Q8_1(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ4_1*>(vw);
  const auto* a = static_cast<const BlockQ8_1*>(va);
  float sum = 0.0f;
  for (int64_t i = 0; i < k / kQK4_1; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      sumi += (w[i].qs[j] & 0xF) * a[i].qs[j] + (w[i].qs[j] >> 4) * a[i].qs[j + 16];
    }
    sum += sumi * Fp16ToFloat(w[i].d) * Fp16ToFloat(a[i].d) +
           Fp16ToFloat(w[i].m) * Fp16ToFloat(a[i].s);
  }
  return sum;
}

float DotQ5_0Q8_0(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ5_0*>(vw);
  const auto* a = static_cast<const BlockQ8_0*>(va);
  float sum = 0.0f;
  for (int64_t i = 0; i < k / kQK5_0; ++i) {
    uint32_t qh;
    std::memcpy(&qh, w[i].qh, sizeof(qh));
    int sumi = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int x0 = ((w[i].qs[j] & 0xF) | (((qh >> j) << 4) & 0x10)) - 16;
      const int x1 = ((w[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
      sumi += x0 * a[i].qs[j] + x1 * a[i].qs[j + 16];
    }
    sum += sumi * Fp16ToFloat(w[i].d) * Fp16ToFloat(a[i].d);
  }
  return sum;
}

float DotQ5_1Q8_1(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ5_1*>(vw);
  const auto* a = static_cast<const BlockQ8_1*>(va);
  float sum = 0.0f;
  for (int64_t i = 0; i < k / kQK5_1; ++i) {
    uint32_t qh;
    std::memcpy(&qh, w[i].qh, sizeof(qh));
    int sumi = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int x0 = (w[i].qs[j] & 0xF) | (((qh >> j) << 4) & 0x10);
      const int x1 = (w[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      sumi += x0 * a[i].qs[j] + x1 * a[i].qs[j + 16];
    }
    sum += sumi * Fp16ToFloat(w[i].d) * Fp16ToFloat(a[i].d) +
           Fp16ToFloat(w[i].m) * Fp16ToFloat(a[i].s);
  }
  return sum;
}

float DotQ8_0Q8_0(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ8_0*>(vw);
  const auto* a = static_cast<const BlockQ8_0*>(va);
  float sum = 0.0f;
  for (int64_t i = 0; i < k / kQK8_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += w[i].qs[j] * a[i].qs[j];
    sum += sumi * Fp16ToFloat(w[i].d) * Fp16ToFloat(a[i].d);
  }
  return sum;
}

float DotQ4_KQ8_K(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ4_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0.0f;
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      KScaleMin(j, w[i].scales, &sc, &m);
      const uint8_t* q = w[i].qs + 32 * (j / 2);
      const int8_t* y = a[i].qs + 32 * j;
      int s = 0;
      for (int l = 0; l < 32; ++l) s += ((j & 1) ? (q[l] >> 4) : (q[l] & 0xF)) * y[l];
      sumi += sc * s;
      summ += m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
    }
    sum += a[i].d * (Fp16ToFloat(w[i].d) * sumi - Fp16ToFloat(w[i].dmin) * summ);
  }
  return sum;
}

float DotQ6_KQ8_K(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ6_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0.0f;
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    int8_t q[kQK_K];
    const uint8_t* ql = w[i].ql;
    const uint8_t* qh = w[i].qh;
    for (int n = 0; n < kQK_K; n += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        q[n + l] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        q[n + l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        q[n + l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        q[n + l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    int sumi = 0;
    for (int s = 0; s < kQK_K / 16; ++s) {
      int t = 0;
      for (int l = 0; l < 16; ++l) t += q[16 * s + l] * a[i].qs[16 * s + l];
      sumi += w[i].scales[s] * t;
    }
    sum += Fp16ToFloat(w[i].d) * a[i].d * sumi;
  }
  return sum;
}

float DotF32(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const float*>(vw);
  const auto* a = static_cast<const float*>(va);
  float sum = 0.0f;
  for (int64_t j = 0; j < k; ++j) sum += w[j] * a[j];
  return sum;
}

float DotF16(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const uint16_t*>(vw);
  const auto* a = static_cast<const float*>(va);
  float sum = 0.0f;
  for (int64_t j = 0; j < k; ++j) sum += Fp16ToFloat(w[j]) * a[j];
  return sum;
}

float DotBF16(int64_t k, const void* vw, const void* va) {
  const auto* w = static_cast<const uint16_t*>(vw);
  const auto* a = static_cast<const float*>(va);
  float sum = 0.0f;
  for (int64_t j = 0; j < k; ++j) sum += Bf16ToFloat(w[j]) * a[j];
  return sum;
}

VecDotFn GenericVecDot(DType w) {
  switch (w) {
    case DType::kQ4_0: return DotQ4_0Q8_0;
    case DType::kQ4_1: return DotQ4_1Q8_1;
    case DType::kQ5_0: return DotQ5_0Q8_0;
    case DType::kQ5_1: return DotQ5_1Q8_1;
    case DType::kQ8_0: return DotQ8_0Q8_0;
    case DType::kQ4_K: return DotQ4_KQ8_K;
    case DType::kQ6_K: return DotQ6_KQ8_K;
    case DType::kF32: return DotF32;
    case DType::kF16: return DotF16;
    case DType::kBF16: return DotBF16;
    default: return nullptr;
  }
}

VecDot4Fn GenericVecDot4(DType) { return nullptr; }
VecDotTileFn GenericVecDotTile(DType) { return nullptr; }

bool GenericQuantizeAct(DType, const float*, void*, int64_t) { return false; }

float GenericDotF32(const float* a, const float* b, int64_t n) { return DotF32(n, a, b); }

void GenericAxpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void GenericSiluMul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

float GenericExpSum(float* x, float max, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - max));
  return sum;
}

void GenericF32ToF16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = FloatToFp16(x[i]);
}

void GenericF16ToF32(const uint16_t* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Fp16ToFloat(x[i]);
}

}  // namespace
}  // namespace tessera

namespace tessera::generic_attend {
namespace {
inline void AttnScores(const float* q, const float* k, int64_t stride, int64_t n, int64_t d,
                       float scale, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = GenericDotF32(q, k + j * stride, d) * scale;
}
inline void AttnAccumulateV(const float* p, const float* v, int64_t stride, int64_t n, int64_t d,
                            float* acc) {
  for (int64_t j = 0; j < n; ++j) GenericAxpy(p[j], v + j * stride, acc, d);
}
inline float AttnExpSum(float* x, float max, int64_t n) { return GenericExpSum(x, max, n); }
}  // namespace
}  // namespace tessera::generic_attend
#define TESSERA_ATTEND_NS generic_attend
#include "kernels/cpu/attend_run.inc"
#undef TESSERA_ATTEND_NS

namespace tessera {

DType ActivationType(DType w) {
  switch (w) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
      return DType::kQ8_0;
    case DType::kQ4_1:
    case DType::kQ5_1:
      return DType::kQ8_1;
    case DType::kQ4_K:
    case DType::kQ6_K:
      return DType::kQ8_K;
    default:
      return DType::kF32;
  }
}

const CpuKernels& GenericKernels() {
  static const CpuKernels k{.isa = "generic",
                            .vec_dot = GenericVecDot,
                            .vec_dot4 = GenericVecDot4,
                            .vec_dot_tile = GenericVecDotTile,
                            .quantize_act = GenericQuantizeAct,
                            .dot_f32 = GenericDotF32,
                            .axpy_f32 = GenericAxpy,
                            .silu_mul = GenericSiluMul,
                            .exp_sum = GenericExpSum,
                            .attend_run = generic_attend::AttendRun,
                            .f32_to_f16 = GenericF32ToF16,
                            .f16_to_f32 = GenericF16ToF32};
  return k;
}

}  // namespace tessera
