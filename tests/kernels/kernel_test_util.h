// Helpers shared by the kernels tests: fixture loading and random valid weight rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/half.h"
#include "gtest/gtest.h"

namespace tessera::testing {

// A fixture written by tests/fixtures/kernels/make_dequant_fixtures.py: header
// (uint32 ggml type id, uint32 n) followed by two payloads whose sizes depend on the kind.
struct KernelFixture {
  DType type = DType::kF32;
  int64_t n = 0;
  std::vector<uint8_t> payload;  // everything after the header
};

inline KernelFixture LoadKernelFixture(const std::string& file) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/tests/fixtures/kernels/" + file;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  KernelFixture f;
  if (bytes.size() < 8) return f;
  uint32_t header[2];
  std::memcpy(header, bytes.data(), sizeof(header));
  f.type = static_cast<DType>(header[0]);
  f.n = header[1];
  f.payload.assign(bytes.begin() + 8, bytes.end());
  return f;
}

// Byte offsets of fp16 scale fields inside one block (the rest of a block may be any bytes).
inline std::vector<int> Fp16ScaleOffsets(DType t) {
  switch (t) {
    case DType::kQ4_0: case DType::kQ5_0: case DType::kQ8_0: case DType::kQ4_K:
    case DType::kQ5_K:
      return t == DType::kQ4_K || t == DType::kQ5_K ? std::vector<int>{0, 2} : std::vector<int>{0};
    case DType::kQ4_1: case DType::kQ5_1: case DType::kQ8_1: return {0, 2};
    case DType::kQ2_K: return {80, 82};
    case DType::kQ3_K: return {108};
    case DType::kQ6_K: return {208};
    default: return {};
  }
}

// `rows` rows of `cols` elements of dtype `t`: random but valid (finite, sane scales).
inline std::vector<uint8_t> RandomWeights(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const DTypeTraits& tr = Traits(t);
  const int64_t blocks = rows * cols / tr.block_elems;
  std::vector<uint8_t> out(static_cast<size_t>(blocks * tr.block_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(1e-3f, 0.05f);
  if (!tr.quantized) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = normal(rng);
      uint8_t* p = out.data() + i * tr.block_bytes;
      if (t == DType::kF32) std::memcpy(p, &v, 4);
      if (t == DType::kF64) { const double d = v; std::memcpy(p, &d, 8); }
      if (t == DType::kF16) { const uint16_t h = FloatToFp16(v); std::memcpy(p, &h, 2); }
      if (t == DType::kBF16) { const uint16_t h = FloatToBf16(v); std::memcpy(p, &h, 2); }
    }
    return out;
  }
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* block = out.data() + b * tr.block_bytes;
    for (int off : Fp16ScaleOffsets(t)) {
      const uint16_t h = FloatToFp16(byte(rng) & 1 ? scale(rng) : -scale(rng));
      std::memcpy(block + off, &h, 2);
    }
    if (t == DType::kQ8_K) {
      const float d = scale(rng) * 0.1f;
      std::memcpy(block, &d, 4);
    }
  }
  return out;
}

inline std::vector<float> RandomFloats(int64_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// |got[i] - want[i]| <= rel · (1 + |want[i]|) for every i (the first 10 misses reported).
template <typename Want>
void ExpectAllClose(const std::vector<float>& got, const std::vector<Want>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 10; ++i) {
    if (!(std::fabs(got[i] - want[i]) <= rel * (1.0 + std::fabs(double(want[i]))))) {
      ADD_FAILURE() << "index " << i << ": got " << got[i] << ", want " << want[i];
      ++failures;
    }
  }
}

}  // namespace tessera::testing
