// Helpers shared by the CUDA kernel and backend tests: host <-> device copies of test data,
// and the host-side views of weights and activations that the checks compare against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/half.h"
#include "common/tensor.h"
#include "gtest/gtest.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/fp8_e4m3.h"

namespace tessera::testing {

// A device copy of `host` (at least one byte, so that an empty vector still has a buffer).
template <typename T>
DeviceBuffer Upload(const std::vector<T>& host) {
  auto buffer = DeviceBuffer::Allocate(std::max<size_t>(host.size() * sizeof(T), 1));
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  if (!host.empty()) {
    EXPECT_TRUE(buffer->CopyFromHost(host.data(), host.size() * sizeof(T)).ok());
  }
  return *std::move(buffer);
}

// The first `count` elements of `buffer`.
template <typename T = float>
std::vector<T> Download(const DeviceBuffer& buffer, size_t count) {
  std::vector<T> host(count);
  EXPECT_TRUE(buffer.CopyToHost(host.data(), count * sizeof(T)).ok());
  return host;
}

// Every row of the matrix `w` (host memory) dequantized to float, [rows, cols].
inline std::vector<float> DenseRows(const TensorView& w) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  std::vector<float> dense(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_TRUE(DequantizeRow(w.dtype, w.RowPtr(r), dense.data() + r * cols, cols).ok());
  }
  return dense;
}

// x rounded to the 16-bit float type `t` (ties to even) and back, as the CUDA GEMM rounds
// its activations; x itself for any other type.
inline std::vector<float> RoundedTo(DType t, std::vector<float> x) {
  for (float& v : x) {
    if (t == DType::kBF16) v = Bf16ToFloat(FloatToBf16(v));
    if (t == DType::kF16) v = Fp16ToFloat(FloatToFp16(v));
  }
  return x;
}

// want[j, r] = Σ_c w[r, c] · x[j, c] in float64, w [m, k] and x [n, k].
inline std::vector<float> Products(const std::vector<float>& w, const std::vector<float>& x,
                                   int64_t n, int64_t m, int64_t k) {
  std::vector<float> want(static_cast<size_t>(n * m));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t r = 0; r < m; ++r) {
      double sum = 0.0;
      for (int64_t c = 0; c < k; ++c) sum += double(w[r * k + c]) * x[j * k + c];
      want[j * m + r] = static_cast<float>(sum);
    }
  }
  return want;
}

// got[j, r] within `rel` of Σ_c |w[r, c] · x[j, c]| of want[j, r] (1e-5: the float
// accumulation of k terms in any order), w [m, k] dense (dequantized) and x [n, k].
inline void ExpectProductsClose(const std::vector<float>& got, const std::vector<float>& want,
                                const std::vector<float>& w, const std::vector<float>& x,
                                int64_t n, int64_t m, int64_t k, double rel = 1e-5) {
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t r = 0; r < m; ++r) {
      double magnitude = 0.0;
      for (int64_t c = 0; c < k; ++c) magnitude += std::fabs(double(w[r * k + c]) * x[j * k + c]);
      ASSERT_NEAR(got[j * m + r], want[j * m + r], rel * magnitude + 1e-30)
          << "row " << r << " act " << j;
    }
  }
}

// The host's FP8 rows of a dense float matrix [rows, k], as CudaQuantizeRowsFp8 must make
// them: per row, scale = Fp8RowScale(max |v|) and byte = FloatToFp8E4M3(v / scale).
struct Fp8Rows {
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
};
inline Fp8Rows QuantizedToFp8(const std::vector<float>& dense, int64_t rows, int64_t k) {
  Fp8Rows q{std::vector<uint8_t>(static_cast<size_t>(rows * k)),
            std::vector<float>(static_cast<size_t>(rows))};
  for (int64_t r = 0; r < rows; ++r) {
    float absmax = 0.0f;
    for (int64_t c = 0; c < k; ++c) absmax = std::max(absmax, std::fabs(dense[r * k + c]));
    q.scales[r] = cuda_shim::Fp8RowScale(absmax);
    for (int64_t c = 0; c < k; ++c) {
      q.bytes[r * k + c] = cuda_shim::FloatToFp8E4M3(dense[r * k + c] / q.scales[r]);
    }
  }
  return q;
}
// The values FP8 rows stand for: each byte's E4M3 value times its row's scale.
inline std::vector<float> DequantizedFp8(const Fp8Rows& q, int64_t rows, int64_t k) {
  std::vector<float> dense(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      dense[r * k + c] = cuda_shim::Fp8E4M3ToFloat(q.bytes[r * k + c]) * q.scales[r];
    }
  }
  return dense;
}

}  // namespace tessera::testing
