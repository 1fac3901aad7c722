#include "kernels/cpu/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_format.h"
#include "common/half.h"
#include "kernels/cpu/quant_blocks.h"

namespace tessera {
namespace {

// Signed value of largest magnitude in x[0, n) (ggml keeps the sign to use the full range).
float SignedAbsMax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void QuantQ4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK4_0) {
    const float d = SignedAbsMax(x, kQK4_0) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToFp16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const uint8_t q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const uint8_t q1 = std::min(15, static_cast<int>(x[j + kQK4_0 / 2] * id + 8.5f));
      y[i].qs[j] = q0 | (q1 << 4);
    }
  }
}

void QuantQ4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK4_1) {
    const float lo = *std::min_element(x, x + kQK4_1);
    const float hi = *std::max_element(x, x + kQK4_1);
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToFp16(d);
    y[i].m = FloatToFp16(lo);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const uint8_t q0 = std::min(15, static_cast<int>((x[j] - lo) * id + 0.5f));
      const uint8_t q1 = std::min(15, static_cast<int>((x[j + kQK4_1 / 2] - lo) * id + 0.5f));
      y[i].qs[j] = q0 | (q1 << 4);
    }
  }
}

void QuantQ5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK5_0) {
    const float d = SignedAbsMax(x, kQK5_0) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToFp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const uint8_t q0 = std::min(31, static_cast<int>(x[j] * id + 16.5f));
      const uint8_t q1 = std::min(31, static_cast<int>(x[j + kQK5_0 / 2] * id + 16.5f));
      y[i].qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
      qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + kQK5_0 / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof(qh));
  }
}

void QuantQ5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK5_1) {
    const float lo = *std::min_element(x, x + kQK5_1);
    const float hi = *std::max_element(x, x + kQK5_1);
    const float d = (hi - lo) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToFp16(d);
    y[i].m = FloatToFp16(lo);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const uint8_t q0 = std::min(31, static_cast<int>((x[j] - lo) * id + 0.5f));
      const uint8_t q1 = std::min(31, static_cast<int>((x[j + kQK5_1 / 2] - lo) * id + 0.5f));
      y[i].qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
      qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + kQK5_1 / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof(qh));
  }
}

// Symmetric 8-bit: q = round(x * 127 / amax). Returns the integer sum for Q8_1's `s`.
template <int kN>
int QuantSymmetric8(const float* x, float* d_out, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < kN; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int sum = 0;
  for (int j = 0; j < kN; ++j) {
    q[j] = static_cast<int8_t>(std::lround(x[j] * id));
    sum += q[j];
  }
  *d_out = d;
  return sum;
}

void QuantQ8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK8_0) {
    float d;
    QuantSymmetric8<kQK8_0>(x, &d, y[i].qs);
    y[i].d = FloatToFp16(d);
  }
}

void QuantQ8_1(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK8_1) {
    float d;
    const int sum = QuantSymmetric8<kQK8_1>(x, &d, y[i].qs);
    y[i].d = FloatToFp16(d);
    // ggml stores s = d * sum with the unrounded d.
    y[i].s = FloatToFp16(d * static_cast<float>(sum));
  }
}

void QuantQ8_K(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    QuantSymmetric8<kQK_K>(x, &y[i].d, y[i].qs);
    for (int g = 0; g < kQK_K / 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += y[i].qs[16 * g + l];
      y[i].bsums[g] = static_cast<int16_t>(s);
    }
  }
}

}  // namespace

bool CanQuantize(DType type) {
  switch (type) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ8_0:
    case DType::kQ8_1:
    case DType::kQ8_K:
    case DType::kBF16:
      return true;
    default:
      return false;
  }
}

absl::Status QuantizeRow(DType type, const float* src, void* dst, int64_t n) {
  if (!CanQuantize(type)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernels/cpu/quantize: no quantizer for dtype %s", DTypeName(type)));
  }
  const int64_t block = Traits(type).block_elems;
  if (n < 0 || n % block != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernels/cpu/quantize: n=%d is not a multiple of the %s block size %d", n,
        DTypeName(type), block));
  }
  const int64_t nb = n / block;
  switch (type) {
    case DType::kQ4_0: QuantQ4_0(src, static_cast<BlockQ4_0*>(dst), nb); break;
    case DType::kQ4_1: QuantQ4_1(src, static_cast<BlockQ4_1*>(dst), nb); break;
    case DType::kQ5_0: QuantQ5_0(src, static_cast<BlockQ5_0*>(dst), nb); break;
    case DType::kQ5_1: QuantQ5_1(src, static_cast<BlockQ5_1*>(dst), nb); break;
    case DType::kQ8_0: QuantQ8_0(src, static_cast<BlockQ8_0*>(dst), nb); break;
    case DType::kQ8_1: QuantQ8_1(src, static_cast<BlockQ8_1*>(dst), nb); break;
    case DType::kQ8_K: QuantQ8_K(src, static_cast<BlockQ8_K*>(dst), nb); break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToBf16(src[i]);
      break;
    default: break;
  }
  return absl::OkStatus();
}

}  // namespace tessera
