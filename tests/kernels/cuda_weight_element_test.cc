// The CUDA kernels read weights element by element through kernels/cuda/weight_element.h;
// compiled here for the host, every block format must give kernels/cpu/dequantize's values
// bit for bit, so the layouts are checked on machines without a GPU.
#include "kernels/cuda/weight_element.h"

#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/half.h"
#include "gtest/gtest.h"
#include "kernels/cpu/dequantize.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

constexpr DType kTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,
                            DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                            DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K,
                            DType::kQ6_K};

TEST(CudaWeightElementTest, EveryElementEqualsDequantizeRow) {
  std::mt19937 rng(17);
  const int64_t cols = 512;  // two K-quant super-blocks, sixteen 32-element blocks
  for (DType t : kTypes) {
    SCOPED_TRACE(std::string(DTypeName(t)));
    const int type = static_cast<int>(t);
    ASSERT_EQ(cuda_shim::WeightBlockElems(type), Traits(t).block_elems);
    ASSERT_EQ(cuda_shim::WeightBlockBytes(type), Traits(t).block_bytes);
    ASSERT_EQ(cuda_shim::WeightRowBytes(type, cols), cols / Traits(t).block_elems *
                                                         Traits(t).block_bytes);
    for (int trial = 0; trial < 8; ++trial) {
      const std::vector<uint8_t> row = testing::RandomWeights(t, 1, cols, rng);
      std::vector<float> want(cols);
      ASSERT_TRUE(DequantizeRow(t, row.data(), want.data(), cols).ok());
      for (int64_t c = 0; c < cols; ++c) {
        const float got = cuda_shim::WeightElement(row.data(), type, c);
        ASSERT_EQ(got, want[c]) << "element " << c;
      }
    }
  }
}

// The GEMV reads rows a chunk of 8 at a time: the same bits as the element reader.
TEST(CudaWeightElementTest, EveryChunkEqualsDequantizeRow) {
  std::mt19937 rng(23);
  const int64_t cols = 512;
  for (DType t : kTypes) {
    SCOPED_TRACE(std::string(DTypeName(t)));
    for (int trial = 0; trial < 8; ++trial) {
      const std::vector<uint8_t> row = testing::RandomWeights(t, 1, cols, rng);
      std::vector<float> want(cols);
      ASSERT_TRUE(DequantizeRow(t, row.data(), want.data(), cols).ok());
      for (int64_t c0 = 0; c0 < cols; c0 += cuda_shim::kWeightChunk) {
        float got[cuda_shim::kWeightChunk];
        cuda_shim::WeightChunk(row.data(), static_cast<int>(t), c0, got);
        for (int i = 0; i < cuda_shim::kWeightChunk; ++i) {
          ASSERT_EQ(got[i], want[c0 + i]) << "element " << c0 + i;
        }
      }
    }
  }
}

// The backend's FP8 rows: a byte per element, read as its E4M3 value (the row's scale is
// the reader's to apply).
TEST(CudaWeightElementTest, Fp8RowsReadEachByteAsItsE4M3Value) {
  const int type = static_cast<int>(DType::kF8E4M3);
  ASSERT_EQ(type, cuda_shim::kWF8E4M3);
  ASSERT_EQ(cuda_shim::WeightRowBytes(type, 24), 24);
  std::vector<uint8_t> row(256);
  for (int b = 0; b < 256; ++b) row[b] = static_cast<uint8_t>(b ^ 0x5a);  // every byte once
  for (int64_t c0 = 0; c0 < 256; c0 += cuda_shim::kWeightChunk) {
    float chunk[cuda_shim::kWeightChunk];
    cuda_shim::WeightChunk(row.data(), type, c0, chunk);
    for (int i = 0; i < cuda_shim::kWeightChunk; ++i) {
      const float want = cuda_shim::Fp8E4M3ToFloat(row[c0 + i]);
      const float element = cuda_shim::WeightElement(row.data(), type, c0 + i);
      if (want != want) {
        EXPECT_NE(chunk[i], chunk[i]);
        EXPECT_NE(element, element);
      } else {
        EXPECT_EQ(chunk[i], want);
        EXPECT_EQ(element, want);
      }
    }
  }
}

TEST(CudaWeightElementTest, OtherTypesAndPartialBlocksHaveNoRowBytes) {
  for (DType t : {DType::kI8, DType::kI32, DType::kF64, DType::kQ8_1, DType::kQ8_K}) {
    EXPECT_EQ(cuda_shim::WeightRowBytes(static_cast<int>(t), 256), 0) << DTypeName(t);
  }
  EXPECT_EQ(cuda_shim::WeightRowBytes(static_cast<int>(DType::kQ4_K), 576), 0);
  EXPECT_EQ(cuda_shim::WeightRowBytes(static_cast<int>(DType::kQ8_0), 40), 0);
}

TEST(CudaWeightElementTest, HalfToFloatIsExactForEveryBitPattern) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float want = Fp16ToFloat(static_cast<uint16_t>(h));
    const float got = cuda_shim::HalfToFloat(static_cast<uint16_t>(h));
    if (want != want) {
      ASSERT_NE(got, got) << "bits " << h;
    } else {
      uint32_t a, b;
      std::memcpy(&a, &want, 4);
      std::memcpy(&b, &got, 4);
      ASSERT_EQ(a, b) << "bits " << h;
    }
  }
}

}  // namespace
}  // namespace tessera
