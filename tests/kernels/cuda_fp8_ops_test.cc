// The CUDA backend's FP8 weights (kernels/cuda/cuda_ops.h): rows quantized on the device
// bit for bit as the host quantizes them (tests/kernels/cuda_test_util.h's QuantizedToFp8,
// over kernels/cuda/fp8_e4m3.h, itself checked against a brute-force search), and the GEMV,
// embedding, dequantizing GEMM and FP8 tensor-core GEMM that read them, against float64
// sums of the values the FP8 rows stand for. Label `gpu`: skipped, reported as skipped,
// without a CUDA device; the argument checks run everywhere.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_probe.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

using testing::DenseRows;
using testing::DequantizedFp8;
using testing::Download;
using testing::ExpectProductsClose;
using testing::Fp8Rows;
using testing::QuantizedToFp8;
using testing::Products;
using testing::RandomFloats;
using testing::Upload;

// Random float rows with a zero row and a row with one large outlier, so that the scales
// cover the edge cases.
std::vector<float> TestRows(int64_t m, int64_t k, std::mt19937& rng) {
  std::vector<float> w = RandomFloats(m * k, rng, 0.05f);
  for (int64_t c = 0; c < k; ++c) w[c] = 0.0f;
  if (m > 1) w[k + k / 2] = 1000.0f;
  return w;
}

class CudaFp8OpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceCount().ok()) GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
  }
  // The device's FP8 rows of host matrix `w` (f32, f16 or bf16).
  Fp8Rows QuantizeOnDevice(const TensorView& w, const std::vector<uint8_t>& bytes) {
    const int64_t m = w.dim(0), k = w.dim(1);
    DeviceBuffer dw = Upload(bytes);
    DeviceBuffer out = Upload(std::vector<uint8_t>(m * k, 0xff));
    DeviceBuffer scales = Upload(std::vector<float>(m, NAN));
    EXPECT_TRUE(CudaQuantizeRowsFp8(TensorView{w.dtype, {m, k}, dw.as<void>()},
                                    out.as<uint8_t>(), scales.as<float>())
                    .ok());
    return Fp8Rows{Download<uint8_t>(out, m * k), Download(scales, m)};
  }
  std::mt19937 rng_{2027};
};

TEST(CudaFp8OpsArgumentsTest, Fp8RowsAndTheirScalesGoTogether) {
  const TensorView fp8{DType::kF8E4M3, {4, 64}, nullptr};
  absl::Status st = CudaGemv(nullptr, 1, 64, fp8, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("w is f8_e4m3 and has no row scales"), std::string::npos) << st;
  const float scale = 1.0f;
  st = CudaGemv(nullptr, 1, 64, TensorView{DType::kQ8_0, {4, 64}, nullptr}, nullptr, nullptr,
                &scale);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("w is q8_0 and has row scales"), std::string::npos) << st;
  st = CudaEmbedding(fp8, nullptr, 1, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("table is f8_e4m3"), std::string::npos) << st;
  st = CudaGemmFp8(nullptr, 16, 64, fp8, nullptr, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("row_scales"), std::string::npos) << st;
  st = CudaGemmFp8(nullptr, 16, 32, fp8, &scale, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("k=32"), std::string::npos) << st;
  st = CudaQuantizeRowsFp8(TensorView{DType::kQ8_0, {4, 64}, nullptr}, nullptr, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("w dtype q8_0 is not f32, f16 or bf16"), std::string::npos) << st;
}

TEST_F(CudaFp8OpsTest, QuantizedRowsHaveTheHostsBitsAndScales) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const auto& [m, k] : {std::pair<int64_t, int64_t>{37, 100}, {3, 4096}, {1, 1}}) {
      SCOPED_TRACE(absl::StrFormat("%s m %d k %d", DTypeName(t), m, k));
      std::vector<uint8_t> bytes = testing::RandomWeights(t, m, k, rng_);
      if (t == DType::kF32) {  // the zero row and the outlier
        const std::vector<float> rows = TestRows(m, k, rng_);
        std::memcpy(bytes.data(), rows.data(), bytes.size());
      }
      const TensorView host{t, {m, k}, bytes.data()};
      const Fp8Rows want = QuantizedToFp8(DenseRows(host), m, k);
      const Fp8Rows got = QuantizeOnDevice(host, bytes);
      ASSERT_EQ(got.scales, want.scales);
      ASSERT_EQ(got.bytes, want.bytes);
    }
  }
}

// The decode GEMV and the embedding read FP8 rows times their scales: against float64 sums
// of those values (n up to 8, k 100 ends in a tail read element by element).
TEST_F(CudaFp8OpsTest, GemvAndEmbeddingReadRowsTimesTheirScales) {
  for (const auto& [m, k] : {std::pair<int64_t, int64_t>{45, 96}, {7, 576}, {5, 100}}) {
    const Fp8Rows q = QuantizedToFp8(TestRows(m, k, rng_), m, k);
    const std::vector<float> dense = DequantizedFp8(q, m, k);
    DeviceBuffer dw = Upload(q.bytes), ds = Upload(q.scales);
    const TensorView w{DType::kF8E4M3, {m, k}, dw.as<void>()};
    for (int64_t n : {1, 3, 8}) {
      SCOPED_TRACE(absl::StrFormat("m %d k %d n %d", m, k, n));
      const std::vector<float> x = RandomFloats(n * k, rng_);
      const std::vector<float> want = Products(dense, x, n, m, k);
      DeviceBuffer dx = Upload(x), dy = Upload(std::vector<float>(want.size(), NAN));
      ASSERT_TRUE(CudaGemv(dx.as<float>(), n, k, w, dy.as<float>(), nullptr, ds.as<float>()).ok());
      ExpectProductsClose(Download(dy, want.size()), want, dense, x, n, m, k);
    }
    // Embedding: E4M3 value times scale, one float multiply on both sides.
    const std::vector<int32_t> ids = {static_cast<int32_t>(m - 1), 0, 1};
    DeviceBuffer dids = Upload(ids), dout = Upload(std::vector<float>(3 * k, NAN));
    ASSERT_TRUE(CudaEmbedding(w, dids.as<int32_t>(), 3, dout.as<float>(), nullptr,
                              ds.as<float>())
                    .ok());
    const std::vector<float> out = Download(dout, 3 * k);
    for (int i = 0; i < 3; ++i) {
      for (int64_t c = 0; c < k; ++c) ASSERT_EQ(out[i * k + c], dense[ids[i] * k + c]);
    }
  }
}

// Without FP8 tensor cores, many rows read FP8 weights dequantized to F16 (with their scales)
// a slice at a time: against float64 sums of the F16-rounded values.
TEST_F(CudaFp8OpsTest, DequantizingGemmAppliesTheRowScales) {
  const int64_t m = 70, k = 512, n = 67;
  const Fp8Rows q = QuantizedToFp8(TestRows(m, k, rng_), m, k);
  const std::vector<float> wr = testing::RoundedTo(DType::kF16, DequantizedFp8(q, m, k));
  const std::vector<float> x = RandomFloats(n * k, rng_);
  const std::vector<float> xr = testing::RoundedTo(DType::kF16, x);
  const std::vector<float> want = Products(wr, xr, n, m, k);
  DeviceBuffer dw = Upload(q.bytes), ds = Upload(q.scales), dx = Upload(x);
  for (const int64_t scratch_halves : {3 * k + 5, m * k}) {  // slices of 3 rows, and one
    DeviceBuffer scratch = Upload(std::vector<uint16_t>(scratch_halves));
    DeviceBuffer dy = Upload(std::vector<float>(want.size(), NAN));
    ASSERT_TRUE(CudaGemmQuantized(dx.as<float>(), n, k,
                                  TensorView{DType::kF8E4M3, {m, k}, dw.as<void>()},
                                  dy.as<float>(), scratch.as<void>(), scratch_halves, nullptr,
                                  ds.as<float>())
                    .ok());
    ExpectProductsClose(Download(dy, want.size()), want, wr, xr, n, m, k);
  }
}

// The tensor-core GEMM quantizes each activation row to FP8 with its own scale: against
// float64 sums of the values both FP8 operands stand for. Their products are exact; Hopper's
// FP8 MMA adds them with fewer bits than FP32 before cuBLASLt promotes the partial sums, so
// the bound is 1e-3 of Σ|w·x| (a wrong scale, row or layout is off by its whole size). An
// outlier in one activation row must not change the others (each row has its own scale).
TEST_F(CudaFp8OpsTest, TensorCoreGemmMatchesBothOperandsRoundedToFp8) {
  for (const auto& [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{48, 96, 9},
                                {300, 256, 130}, {64, 1024, 16}}) {
    SCOPED_TRACE(absl::StrFormat("m %d k %d n %d", m, k, n));
    const Fp8Rows qw = QuantizedToFp8(TestRows(m, k, rng_), m, k);
    const std::vector<float> wd = DequantizedFp8(qw, m, k);
    std::vector<float> x = RandomFloats(n * k, rng_);
    x[k + 3] = 300.0f;  // an outlier in activation row 1 only
    const std::vector<float> xd = DequantizedFp8(QuantizedToFp8(x, n, k), n, k);
    const std::vector<float> want = Products(wd, xd, n, m, k);
    DeviceBuffer dw = Upload(qw.bytes), ds = Upload(qw.scales), dx = Upload(x);
    DeviceBuffer dy = Upload(std::vector<float>(want.size(), NAN));
    const absl::Status st = CudaGemmFp8(dx.as<float>(), n, k,
                                        TensorView{DType::kF8E4M3, {m, k}, dw.as<void>()},
                                        ds.as<float>(), dy.as<float>());
    if (absl::IsUnimplemented(st)) GTEST_SKIP() << "no FP8 tensor cores here: " << st;
    ASSERT_TRUE(st.ok()) << st;
    ExpectProductsClose(Download(dy, want.size()), want, wd, xd, n, m, k, 1e-3);
  }
  // k not a multiple of 16, or m not of 4: refused before anything is queued (y keeps its
  // NaNs), for the caller to fall back.
  for (const auto& [m, k] : {std::pair<int64_t, int64_t>{4, 40}, {5, 32}}) {
    DeviceBuffer dw = Upload(std::vector<uint8_t>(m * k)), ds = Upload(std::vector<float>(m, 1));
    DeviceBuffer dx = Upload(std::vector<float>(16 * k));
    DeviceBuffer dy = Upload(std::vector<float>(16 * m, NAN));
    EXPECT_EQ(CudaGemmFp8(dx.as<float>(), 16, k, TensorView{DType::kF8E4M3, {m, k}, dw.as<void>()},
                          ds.as<float>(), dy.as<float>())
                  .code(),
              absl::StatusCode::kUnimplemented)
        << "m " << m << " k " << k;
    for (float v : Download(dy, 16 * m)) ASSERT_TRUE(std::isnan(v));
  }
}

}  // namespace
}  // namespace tessera
