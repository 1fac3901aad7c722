// Helpers shared by the CUDA kernel and backend tests: host <-> device copies of test data,
// and the host-side views of weights and activations that the checks compare against.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/half.h"
#include "common/tensor.h"
#include "gtest/gtest.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cuda/cuda_ops.h"

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

}  // namespace tessera::testing
