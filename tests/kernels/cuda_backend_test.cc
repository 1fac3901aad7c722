// The "cuda" Backend (kernels/cuda/cuda_backend.h) against ReferenceBackend on the same
// inputs: device buffers on its side, host copies on the reference's (label `gpu`; skipped,
// reported as skipped, without a CUDA device). Tolerances: float kernels 2e-5·(1 + |want|);
// products 1e-5 of Σ|w·x| (F16/BF16 weights against the reference on x rounded to the
// weight's type, as the backend rounds it); attention 5e-5·(1 + |want|), as the cpu
// backend's.
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "kernels/cpu/reference_backend.h"
#include "kernels/cuda/device_probe.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

using testing::DenseRows;
using testing::Download;
using testing::RandomFloats;
using testing::RoundedTo;
using testing::Upload;

TEST(CudaBackendWithoutDeviceTest, CreateIsUnavailable) {
  if (CudaDeviceCount().ok()) GTEST_SKIP() << "a CUDA device is present";
  const absl::StatusOr<std::unique_ptr<CudaBackend>> backend = CudaBackend::Create();
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable) << backend.status();
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceCount().ok()) GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
    absl::StatusOr<std::unique_ptr<CudaBackend>> backend = CudaBackend::Create();
    ASSERT_TRUE(backend.ok()) << backend.status();
    cuda_ = *std::move(backend);
  }
  std::mt19937 rng_{7};
  ReferenceBackend ref_;
  std::unique_ptr<CudaBackend> cuda_;
};

// Two stacked parts (Q over K, as the model stacks them), packed to the device, against the
// reference on the parts' rows; the first part alone as an embedding table.
TEST_F(CudaBackendTest, PackedMatMulAndEmbeddingMatchReference) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0,
                  DType::kQ4_1}) {
    const int64_t k = 96, m0 = 37, m1 = 12, m = m0 + m1;
    const std::vector<uint8_t> w0 = testing::RandomWeights(t, m0, k, rng_);
    const std::vector<uint8_t> w1 = testing::RandomWeights(t, m1, k, rng_);
    const std::vector<TensorView> parts = {{t, {m0, k}, const_cast<uint8_t*>(w0.data())},
                                           {t, {m1, k}, const_cast<uint8_t*>(w1.data())}};
    absl::StatusOr<std::unique_ptr<PackedWeight>> packed = cuda_->PackWeights(parts);
    ASSERT_TRUE(packed.ok() && *packed != nullptr) << packed.status();
    TensorView stacked{t, {m, k}, nullptr};
    stacked.packed = packed->get();
    for (int64_t n : {1, 13}) {
      SCOPED_TRACE(absl::StrFormat("%s n %d", DTypeName(t), n));
      const std::vector<float> x = RandomFloats(n * k, rng_);
      const std::vector<float> rounded = RoundedTo(t, x);
      std::vector<float> want(static_cast<size_t>(n * m)), part_out;
      for (int p = 0; p < 2; ++p) {
        const int64_t rows = parts[p].dim(0);
        part_out.assign(static_cast<size_t>(n * rows), 0.0f);
        ASSERT_TRUE(ref_.MatMul(rounded.data(), n, k, parts[p], part_out.data()).ok());
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t r = 0; r < rows; ++r) want[j * m + (p == 0 ? 0 : m0) + r] = part_out[j * rows + r];
        }
      }
      DeviceBuffer dx = Upload(x), dy = Upload(std::vector<float>(want.size(), NAN));
      ASSERT_TRUE(cuda_->MatMul(dx.as<float>(), n, k, stacked, dy.as<float>()).ok());
      // Σ|w·x| is at most |x|₁ · max|w| per output; 1e-5 of it bounds FP32 reordering.
      double max_w = 0.0;
      for (const TensorView& part : parts) {
        for (float v : DenseRows(part)) max_w = std::max(max_w, std::fabs(double(v)));
      }
      const std::vector<float> got = Download(dy, want.size());
      for (int64_t j = 0; j < n; ++j) {
        double l1 = 0.0;
        for (int64_t c = 0; c < k; ++c) l1 += std::fabs(rounded[j * k + c]);
        for (int64_t r = 0; r < m; ++r) {
          ASSERT_NEAR(got[j * m + r], want[j * m + r], 1e-5 * max_w * l1 + 1e-30)
              << "row " << r << " act " << j;
        }
      }
    }
    // The first part alone as an embedding table, ids checked on the host.
    absl::StatusOr<std::unique_ptr<PackedWeight>> table = cuda_->PackWeights({&parts[0], 1});
    ASSERT_TRUE(table.ok()) << table.status();
    TensorView tv = parts[0];
    tv.packed = table->get();
    const std::vector<int32_t> ids = {0, 36, 5, 5};
    std::vector<float> want(ids.size() * k);
    ASSERT_TRUE(ref_.Embedding(parts[0], ids, want.data()).ok());
    DeviceBuffer out = Upload(std::vector<float>(want.size(), NAN));
    ASSERT_TRUE(cuda_->Embedding(tv, ids, out.as<float>()).ok());
    testing::ExpectAllClose(Download(out, want.size()), want, 2e-5);  // an fma may round d·q + m once
    const std::vector<int32_t> bad = {37};
    const absl::Status st = cuda_->Embedding(tv, bad, out.as<float>());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("ids[0]=37"), std::string::npos) << st;
  }
}

// fp8_weights: float matrices packed as FP8 rows (one scale per stacked row), read by the
// GEMV up to 8 activation rows (against the FP8 values times float activations) and by the
// FP8 tensor-core GEMM past that on Ada and later (against both operands rounded to FP8;
// before Ada the GEMV again); the embedding reads the same values; a vocabulary matrix and a
// Q8_0 matrix keep their format.
TEST_F(CudaBackendTest, Fp8WeightsArePackedPerRowAndReadByEveryPath) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> fp8 = CudaBackend::Create({.fp8_weights = true});
  ASSERT_TRUE(fp8.ok()) << fp8.status();
  absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(0);
  ASSERT_TRUE(info.ok()) << info.status();
  const bool tensor_cores = info->compute_major * 10 + info->compute_minor >= 89;
  const int64_t k = 96, m0 = 36, m1 = 12, m = m0 + m1;  // m a multiple of 4 for cuBLASLt
  const std::vector<uint8_t> w0 = testing::RandomWeights(DType::kBF16, m0, k, rng_);
  const std::vector<uint8_t> w1 = testing::RandomWeights(DType::kBF16, m1, k, rng_);
  const std::vector<TensorView> parts = {
      {DType::kBF16, {m0, k}, const_cast<uint8_t*>(w0.data())},
      {DType::kBF16, {m1, k}, const_cast<uint8_t*>(w1.data())}};
  absl::StatusOr<std::unique_ptr<PackedWeight>> packed = (*fp8)->PackWeights(parts);
  ASSERT_TRUE(packed.ok() && *packed != nullptr) << packed.status();
  TensorView stacked{DType::kBF16, {m, k}, nullptr};
  stacked.packed = packed->get();
  std::vector<float> dense = DenseRows(parts[0]);
  const std::vector<float> dense1 = DenseRows(parts[1]);
  dense.insert(dense.end(), dense1.begin(), dense1.end());
  const std::vector<float> wd = testing::DequantizedFp8(testing::QuantizedToFp8(dense, m, k), m, k);
  for (int64_t n : {1, 8, 40}) {
    SCOPED_TRACE(absl::StrFormat("n %d", n));
    const std::vector<float> x = RandomFloats(n * k, rng_);
    const bool fp8_activations = n > 8 && tensor_cores;
    const std::vector<float> xd =
        fp8_activations ? testing::DequantizedFp8(testing::QuantizedToFp8(x, n, k), n, k) : x;
    const std::vector<float> want = testing::Products(wd, xd, n, m, k);
    DeviceBuffer dx = Upload(x), dy = Upload(std::vector<float>(want.size(), NAN));
    ASSERT_TRUE((*fp8)->MatMul(dx.as<float>(), n, k, stacked, dy.as<float>()).ok());
    testing::ExpectProductsClose(Download(dy, want.size()), want, wd, xd, n, m, k,
                                 fp8_activations ? 1e-3 : 1e-5);
  }
  // The first part alone as an embedding table: its FP8 values exactly.
  absl::StatusOr<std::unique_ptr<PackedWeight>> table = (*fp8)->PackWeights({&parts[0], 1});
  ASSERT_TRUE(table.ok()) << table.status();
  TensorView tv = parts[0];
  tv.packed = table->get();
  const std::vector<int32_t> ids = {0, 35, 5};
  DeviceBuffer out = Upload(std::vector<float>(ids.size() * k, NAN));
  ASSERT_TRUE((*fp8)->Embedding(tv, ids, out.as<float>()).ok());
  const std::vector<float> rows = Download(out, ids.size() * k);
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t c = 0; c < k; ++c) ASSERT_EQ(rows[i * k + c], wd[ids[i] * k + c]);
  }
  // A vocabulary matrix keeps its BF16 values: its embedding rows are the file's exactly.
  absl::StatusOr<std::unique_ptr<PackedWeight>> vocabulary =
      (*fp8)->PackVocabularyMatrix(parts[0]);
  ASSERT_TRUE(vocabulary.ok() && *vocabulary != nullptr) << vocabulary.status();
  tv.packed = vocabulary->get();
  ASSERT_TRUE((*fp8)->Embedding(tv, ids, out.as<float>()).ok());
  const std::vector<float> file_rows = Download(out, ids.size() * k);
  const std::vector<float> file_values = DenseRows(parts[0]);
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t c = 0; c < k; ++c) ASSERT_EQ(file_rows[i * k + c], file_values[ids[i] * k + c]);
  }
  // Q8_0 stays Q8_0: the reference's products on the file's values.
  const std::vector<uint8_t> q8 = testing::RandomWeights(DType::kQ8_0, m0, k, rng_);
  const TensorView q8_view{DType::kQ8_0, {m0, k}, const_cast<uint8_t*>(q8.data())};
  absl::StatusOr<std::unique_ptr<PackedWeight>> q8_packed = (*fp8)->PackWeight(q8_view);
  ASSERT_TRUE(q8_packed.ok()) << q8_packed.status();
  TensorView q8_device = q8_view;
  q8_device.packed = q8_packed->get();
  const std::vector<float> x = RandomFloats(k, rng_);
  std::vector<float> want(m0);
  ASSERT_TRUE(ref_.MatMul(x.data(), 1, k, q8_view, want.data()).ok());
  DeviceBuffer dx = Upload(x), dy = Upload(std::vector<float>(m0, NAN));
  ASSERT_TRUE((*fp8)->MatMul(dx.as<float>(), 1, k, q8_device, dy.as<float>()).ok());
  testing::ExpectProductsClose(Download(dy, m0), want, DenseRows(q8_view), x, 1, m0, k);
}

// MatMulAdd adds the product into y on every path: cuBLASLt's epilogue (F16), the GEMV's
// store (F32, Q8_0 at 3 rows), the dequantizing GEMM (Q8_0 at 70 rows), the FP8 GEMM (then an
// Add) and FP8's GEMV; against y plus the reference's MatMul (x rounded as each path rounds
// it).
TEST_F(CudaBackendTest, MatMulAddAddsTheProductIntoY) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> fp8 = CudaBackend::Create({.fp8_weights = true});
  ASSERT_TRUE(fp8.ok()) << fp8.status();
  absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(0);
  ASSERT_TRUE(info.ok()) << info.status();
  const bool tensor_cores = info->compute_major * 10 + info->compute_minor >= 89;
  const int64_t k = 96, m = 40;
  for (const DType t : {DType::kF16, DType::kF32, DType::kQ8_0, DType::kBF16}) {
    CudaBackend& backend = t == DType::kBF16 ? **fp8 : *cuda_;  // BF16 goes as FP8
    const std::vector<uint8_t> w = testing::RandomWeights(t, m, k, rng_);
    const TensorView host{t, {m, k}, const_cast<uint8_t*>(w.data())};
    absl::StatusOr<std::unique_ptr<PackedWeight>> packed = backend.PackWeight(host);
    ASSERT_TRUE(packed.ok() && *packed != nullptr) << packed.status();
    TensorView device = host;
    device.packed = packed->get();
    std::vector<float> file_values = DenseRows(host);
    if (t == DType::kBF16) {
      file_values = testing::DequantizedFp8(testing::QuantizedToFp8(file_values, m, k), m, k);
    }
    for (const int64_t n : {3, 70}) {
      SCOPED_TRACE(absl::StrFormat("%s n %d", DTypeName(t), n));
      const std::vector<float> x = RandomFloats(n * k, rng_), y0 = RandomFloats(n * m, rng_);
      std::vector<float> xr = x, dense = file_values;
      if (t == DType::kF16) xr = RoundedTo(DType::kF16, x);
      if (t == DType::kQ8_0 && n >= 64) {  // dequantized to F16 with x rounded to F16
        xr = RoundedTo(DType::kF16, x);
        dense = RoundedTo(DType::kF16, file_values);
      }
      const bool fp8_activations = t == DType::kBF16 && n > 8 && tensor_cores;
      if (fp8_activations) xr = testing::DequantizedFp8(testing::QuantizedToFp8(x, n, k), n, k);
      const std::vector<float> want = testing::Products(dense, xr, n, m, k);
      DeviceBuffer dx = Upload(x), dy = Upload(y0);
      DeviceBuffer scratch = Upload(std::vector<float>(n * m, NAN));
      ASSERT_TRUE(
          backend.MatMulAdd(dx.as<float>(), n, k, device, scratch.as<float>(), dy.as<float>()).ok());
      // What was added to y (its subtraction rounds at y's scale, far below the bound).
      const std::vector<float> got = Download(dy, want.size());
      std::vector<float> added(want.size());
      for (size_t i = 0; i < want.size(); ++i) added[i] = got[i] - y0[i];
      testing::ExpectProductsClose(added, want, dense, xr, n, m, k,
                                   fp8_activations ? 1e-3 : 2e-5);
    }
  }
}

TEST_F(CudaBackendTest, ElementwiseOpsMatchReference) {
  const int64_t n = 5, dim = 576, heads = 9, head_dim = 64;
  const std::vector<float> x = RandomFloats(n * dim, rng_), w = RandomFloats(dim, rng_);
  const std::vector<float> y = RandomFloats(n * dim, rng_);
  DeviceBuffer dx = Upload(x), dw = Upload(w), dy = Upload(y), dout = Upload(x);
  std::vector<float> want(x.size());
  ref_.RmsNorm(x.data(), w.data(), n, dim, 1e-5f, want.data());
  cuda_->RmsNorm(dx.as<float>(), dw.as<float>(), n, dim, 1e-5f, dout.as<float>());
  testing::ExpectAllClose(Download(dout, want.size()), want, 2e-5);
  ref_.SiluMul(x.data(), y.data(), n * dim, want.data());
  cuda_->SiluMul(dx.as<float>(), dy.as<float>(), n * dim, dout.as<float>());
  testing::ExpectAllClose(Download(dout, want.size()), want, 2e-5);
  // SwiGLU over x's rows read as [gate | up] halves.
  std::vector<float> swiglu(n * dim / 2);
  ref_.SwiGluRows(x.data(), n, dim / 2, swiglu.data());
  DeviceBuffer dswiglu = Upload(swiglu);
  cuda_->SwiGluRows(dx.as<float>(), n, dim / 2, dswiglu.as<float>());
  testing::ExpectAllClose(Download(dswiglu, swiglu.size()), swiglu, 2e-5);
  ref_.Add(x.data(), y.data(), n * dim, want.data());
  cuda_->Add(dx.as<float>(), dy.as<float>(), n * dim, dout.as<float>());
  testing::ExpectAllClose(Download(dout, want.size()), want, 2e-5);
  want = x;
  ref_.Softmax(want.data(), n, dim);
  DeviceBuffer dsoft = Upload(x);
  cuda_->Softmax(dsoft.as<float>(), n, dim);
  testing::ExpectAllClose(Download(dsoft, want.size()), want, 2e-5);
  // RoPE: host positions and frequencies, uploaded by the backend.
  std::vector<float> inv_freq(head_dim / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / head_dim);
  const RopeParams rope{.head_dim = head_dim, .rope_dim = head_dim, .inv_freq = inv_freq.data()};
  const std::vector<int32_t> positions = {0, 1, 7, 300, 4095};
  const std::vector<float> q = RandomFloats(n * heads * head_dim, rng_);
  want = q;
  ref_.Rope(want.data(), n, heads, positions, rope);
  DeviceBuffer dq = Upload(q);
  cuda_->Rope(dq.as<float>(), n, heads, positions, rope);
  testing::ExpectAllClose(Download(dq, want.size()), want, 2e-5);
  // None of the void ops kept a failure for the next call that returns a status.
  DeviceBuffer a = Upload(std::vector<float>(4, 1.0f)), b = Upload(std::vector<float>(16, 1.0f));
  DeviceBuffer c = Upload(std::vector<float>(4, 0.0f));
  EXPECT_TRUE(
      cuda_->MatMul(a.as<float>(), 1, 4, TensorView{DType::kF32, {4, 4}, b.as<void>()}, c.as<float>())
          .ok());
  EXPECT_EQ(Download(c, 4), std::vector<float>(4, 4.0f));
}

// Recorded steps (RunStep): a body that restores its input and rotates it by the step's
// positions, uploaded anew each step. Step 1 of a key warms up, step 2 is recorded, later
// steps replay the recording, and each gives the reference's result for its own positions; a
// context past the bucket (256) is another key.
TEST_F(CudaBackendTest, RunStepReplaysRecordingsWithEachStepsIndexArrays) {
  const int64_t n = 4, heads = 3, head_dim = 32;
  ASSERT_EQ(cuda_->GraphRows(3), n);
  std::vector<float> inv_freq(head_dim / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / head_dim);
  const RopeParams rope{.head_dim = head_dim, .rope_dim = head_dim, .inv_freq = inv_freq.data()};
  const std::vector<float> x = RandomFloats(n * heads * head_dim, rng_);
  DeviceBuffer source = Upload(x), rotated = Upload(x);
  const int64_t row_bytes = heads * head_dim * static_cast<int64_t>(sizeof(float));
  std::vector<int32_t> positions(n);
  const auto body = [&]() -> absl::Status {
    RETURN_IF_ERROR(cuda_->CopyRows(rotated.as<void>(), row_bytes, source.as<void>(), row_bytes,
                                    row_bytes, n));
    cuda_->Rope(rotated.as<float>(), n, heads, positions, rope);
    return absl::OkStatus();
  };
  for (int step = 0; step < 7; ++step) {
    SCOPED_TRACE(step);
    for (int64_t i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(step * 11 + i * 5);
    if (step == 6) positions[2] = 300;  // the next context bucket
    const int64_t longest = *std::max_element(positions.begin(), positions.end()) + 1;
    ASSERT_TRUE(cuda_->RunStep({.rows = n, .max_context = longest}, body).ok());
    std::vector<float> want = x;
    ref_.Rope(want.data(), n, heads, positions, rope);
    testing::ExpectAllClose(Download(rotated, want.size()), want, 2e-5);
  }
  const CudaBackend::StepGraphStats& stats = cuda_->step_graph_stats();
  EXPECT_EQ(stats.warmups, 2);
  EXPECT_EQ(stats.recordings, 1);
  EXPECT_EQ(stats.replays, 4);
  EXPECT_EQ(stats.fallbacks, 0);
  EXPECT_EQ(stats.stale, 0);
}

// A body that breaks RunStep's rules (a copy to the host) still runs, eagerly, and its key
// stops being tried after three failures; a body's own error comes back.
TEST_F(CudaBackendTest, RunStepRunsBodiesThatCannotBeRecordedEagerly) {
  const std::vector<float> x = RandomFloats(64, rng_);
  DeviceBuffer a = Upload(x), b = Upload(x), sum = Upload(x);
  std::vector<float> back(x.size());
  const auto body = [&]() -> absl::Status {
    cuda_->Add(a.as<float>(), b.as<float>(), 64, sum.as<float>());
    return cuda_->CopyFromBackend(back.data(), sum.as<void>(), back.size() * sizeof(float));
  };
  for (int step = 0; step < 5; ++step) {
    std::fill(back.begin(), back.end(), 0.0f);
    ASSERT_TRUE(cuda_->RunStep({.rows = 1, .max_context = 1}, body).ok()) << step;
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], x[i] + x[i]) << step;
  }
  EXPECT_EQ(cuda_->step_graph_stats().fallbacks, kMaxGraphFailures);
  EXPECT_EQ(cuda_->step_graph_stats().eager, 5 - kMaxGraphFailures);
  DeviceBuffer table = Upload(x), out = Upload(x);
  const std::vector<int32_t> bad_ids = {9};  // the table has 8 rows of 8
  const absl::Status status = cuda_->RunStep({.rows = 1, .max_context = 1}, [&] {
    return cuda_->Embedding(TensorView{DType::kF32, {8, 8}, table.as<void>()}, bad_ids,
                            out.as<float>());
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

// Row reductions with host results: ArgMaxRows, TopKRows (k and temperature uploaded,
// counts, ids and values in one copy back), SampleRows (with and without the drawn tokens'
// logits) and SoftmaxDenominators against the
// reference backend's,
// TopKRows twice with other k (the upload slots must not serve stale values), rows with
// k = 0 or u < 0 skipped.
TEST_F(CudaBackendTest, RowReductionsMatchReference) {
  const int64_t rows = 4, dim = 1003, capacity = 24;
  std::vector<float> x = RandomFloats(rows * dim, rng_);
  for (float& v : x) v = std::round(v * 16.0f) / 4.0f;  // ties
  DeviceBuffer dx = Upload(x);
  std::vector<RowArgMax> want_max(rows), got_max(rows);
  ASSERT_TRUE(ref_.ArgMaxRows(x.data(), rows, dim, want_max.data()).ok());
  ASSERT_TRUE(cuda_->ArgMaxRows(dx.as<float>(), rows, dim, got_max.data()).ok());
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(got_max[r].index, want_max[r].index) << r;
  for (const std::vector<int32_t>& k : {std::vector<int32_t>{4, 0, 1, 9},
                                        std::vector<int32_t>{0, 7, 2, 1}}) {
    const std::vector<float> temperature = {1.0f, 0.8f, 2.0f, 1.0f};
    const size_t slots = static_cast<size_t>(rows * capacity);
    std::vector<int32_t> want_ids(slots, -1), got_ids(slots, -1), want_n(rows), got_n(rows);
    std::vector<float> want_v(slots, 0.0f), got_v(slots, 0.0f);
    ASSERT_TRUE(ref_.TopKRows(x.data(), rows, dim, k, temperature, capacity, want_ids.data(),
                              want_v.data(), want_n.data())
                    .ok());
    ASSERT_TRUE(cuda_->TopKRows(dx.as<float>(), rows, dim, k, temperature, capacity,
                                got_ids.data(), got_v.data(), got_n.data())
                    .ok());
    EXPECT_EQ(got_n, want_n);
    for (int64_t r = 0; r < rows; ++r) {
      for (int32_t i = 0; i < std::min<int32_t>(want_n[r], capacity); ++i) {
        EXPECT_EQ(got_ids[r * capacity + i], want_ids[r * capacity + i]) << r << " " << i;
        EXPECT_EQ(got_v[r * capacity + i], want_v[r * capacity + i]) << r << " " << i;
      }
    }
  }
  const std::vector<float> t = {1.0f, 0.5f, 1.0f, 3.0f};
  const std::vector<double> u = {0.25, -1.0, 0.75, 0.5};
  std::vector<int32_t> want_drawn(rows), got_drawn(rows), tokens_only(rows);
  std::vector<float> want_logits(rows, 0.0f), got_logits(rows, 0.0f);
  ASSERT_TRUE(
      ref_.SampleRows(x.data(), rows, dim, t, u, want_drawn.data(), want_logits.data()).ok());
  ASSERT_TRUE(
      cuda_->SampleRows(dx.as<float>(), rows, dim, t, u, got_drawn.data(), got_logits.data())
          .ok());
  EXPECT_EQ(got_drawn, want_drawn);
  EXPECT_EQ(got_logits, want_logits) << "the drawn tokens' undivided logits";
  ASSERT_TRUE(cuda_->SampleRows(dx.as<float>(), rows, dim, t, u, tokens_only.data(), nullptr).ok());
  EXPECT_EQ(tokens_only, want_drawn);
  std::vector<double> want_sums(rows), got_sums(rows);
  ASSERT_TRUE(ref_.SoftmaxDenominators(x.data(), rows, dim, t, want_sums.data()).ok());
  ASSERT_TRUE(cuda_->SoftmaxDenominators(dx.as<float>(), rows, dim, t, got_sums.data()).ok());
  for (int64_t r = 0; r < rows; ++r) EXPECT_NEAR(got_sums[r], want_sums[r], 1e-12 * want_sums[r]);
  const std::vector<int32_t> k = {1, 1, 1, 1};
  const std::vector<float> cold = {1.0f, 0.0f, 1.0f, 1.0f};
  std::vector<int32_t> ids(rows * capacity), n(rows);
  std::vector<float> v(rows * capacity);
  EXPECT_EQ(cuda_->TopKRows(dx.as<float>(), rows, dim, k, cold, capacity, ids.data(), v.data(),
                            n.data())
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// EditLogits against the reference backend's, bit for bit: random edits with every
// combination of steps over rows of both signs (the repetition penalty's branch) and the
// values they replaced, twice (the upload slot must not serve the first call's edits).
TEST_F(CudaBackendTest, EditLogitsMatchesReference) {
  const int64_t rows = 5, dim = 1001;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int call = 0; call < 2; ++call) {
    std::vector<float> x = RandomFloats(rows * dim, rng_);
    std::vector<LogitEdit> edits;
    for (int32_t r = 0; r < rows; ++r) {
      for (int32_t token = call; token < dim; token += 3 + r) {
        LogitEdit e;
        e.row = r;
        e.token = token;
        e.steps = static_cast<uint32_t>(token * 7 + r) % 64;
        e.bias = unit(rng_) * 4.0f - 2.0f;
        e.penalty = 0.5f + unit(rng_) * 1.5f;
        e.late_bias = -unit(rng_);
        e.frequency = static_cast<double>(unit(rng_)) * 3.0;
        e.presence = static_cast<double>(unit(rng_));
        edits.push_back(e);
      }
    }
    DeviceBuffer dx = Upload(x);
    std::vector<float> want_previous(edits.size()), got_previous(edits.size(), NAN);
    ASSERT_TRUE(ref_.EditLogits(x.data(), rows, dim, edits, want_previous.data()).ok());
    // The second call without `previous`.
    ASSERT_TRUE(cuda_->EditLogits(dx.as<float>(), rows, dim, edits,
                                  call == 0 ? got_previous.data() : nullptr)
                    .ok());
    if (call == 0) EXPECT_EQ(got_previous, want_previous);
    const std::vector<float> got = Download(dx, x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(std::memcmp(&got[i], &x[i], sizeof(float)), 0)
          << "call " << call << " element " << i << ": " << got[i] << " vs " << x[i];
    }
  }
  const std::vector<LogitEdit> unsorted = {LogitEdit{.row = 1}, LogitEdit{.row = 0}};
  DeviceBuffer dx = Upload(std::vector<float>(rows * dim, 0.0f));
  EXPECT_EQ(cuda_->EditLogits(dx.as<float>(), rows, dim, unsorted, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaBackendTest, AttentionOverAContiguousCacheMatchesReference) {
  const AttentionParams p{.num_heads = 4, .num_kv_heads = 2, .head_dim = 64, .scale = 0.125f};
  const int64_t cache_len = 9, n = 5;
  const std::vector<int32_t> positions = {4, 5, 6, 7, 8};
  const std::vector<float> q = RandomFloats(n * p.num_heads * p.head_dim, rng_);
  const std::vector<float> kc = RandomFloats(cache_len * p.num_kv_heads * p.head_dim, rng_);
  const std::vector<float> vc = RandomFloats(cache_len * p.num_kv_heads * p.head_dim, rng_);
  std::vector<float> want(q.size());
  ref_.Attention(q.data(), n, positions, kc.data(), vc.data(), cache_len, p, want.data());
  DeviceBuffer dq = Upload(q), dk = Upload(kc), dv = Upload(vc);
  DeviceBuffer dout = Upload(std::vector<float>(q.size(), NAN));
  cuda_->Attention(dq.as<float>(), n, positions, dk.as<float>(), dv.as<float>(), cache_len, p,
                   dout.as<float>());
  DeviceBuffer sx = Upload(std::vector<float>(4, 0.0f)), sw = Upload(std::vector<float>(16, 0.0f));
  DeviceBuffer sy = Upload(std::vector<float>(4, 0.0f));
  const TensorView w{DType::kF32, {4, 4}, sw.as<void>()};
  ASSERT_TRUE(cuda_->MatMul(sx.as<float>(), 1, 4, w, sy.as<float>()).ok());
  testing::ExpectAllClose(Download(dout, want.size()), want, 5e-5);
  // A position past the cache: kept, and returned by the next call.
  const std::vector<int32_t> past = {9};
  cuda_->Attention(dq.as<float>(), 1, past, dk.as<float>(), dv.as<float>(), cache_len, p,
                   dout.as<float>());
  const absl::Status st = cuda_->MatMul(sx.as<float>(), 1, 4, w, sy.as<float>());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("positions[0]=9"), std::string::npos) << st;
  EXPECT_TRUE(cuda_->MatMul(sx.as<float>(), 1, 4, w, sy.as<float>()).ok());
}

// WriteKv (a repeated slot: the later row wins), then PagedAttention over a prefill chunk, a
// row of no sequence (left unchanged) and a decode row, for float and half caches; then
// CopyBlocks and a swap out to host memory, compared block by block with the reference's.
TEST_F(CudaBackendTest, PagedKvOpsMatchReference) {
  for (DType kv : {DType::kF32, DType::kF16}) {
    SCOPED_TRACE(DTypeName(kv));
    const PagedKvLayout layout{.num_blocks = 8, .block_size = 4, .num_kv_heads = 3,
                               .head_dim = 64, .dtype = kv};
    const PagedAttentionParams p{.num_heads = 9, .num_kv_heads = 3, .head_dim = 64,
                                 .scale = 0.125f};
    const int64_t row = layout.token_elems(), pool_bytes = layout.num_blocks * layout.block_bytes();
    // Fill every slot first (positions 0..15 of sequence 0 and 0..4 of sequence 1).
    std::vector<uint8_t> host_k(pool_bytes, 0), host_v(pool_bytes, 0);
    const KvPool host_pool{host_k.data(), host_v.data()};
    DeviceBuffer dk = Upload(host_k), dv = Upload(host_v);
    const KvPool pool{dk.as<void>(), dv.as<void>()};
    std::vector<int32_t> slots(32);
    for (int32_t s = 0; s < 32; ++s) slots[s] = s;
    slots[31] = 3;  // written twice: row 31 wins
    const std::vector<float> k = RandomFloats(32 * row, rng_), v = RandomFloats(32 * row, rng_);
    ASSERT_TRUE(ref_.WriteKv(k.data(), v.data(), slots, layout, host_pool).ok());
    DeviceBuffer dkr = Upload(k), dvr = Upload(v);
    ASSERT_TRUE(cuda_->WriteKv(dkr.as<float>(), dvr.as<float>(), slots, layout, pool).ok());
    EXPECT_EQ(Download<uint8_t>(dk, pool_bytes), host_k);
    EXPECT_EQ(Download<uint8_t>(dv, pool_bytes), host_v);

    const std::vector<int32_t> table0 = {6, 1, 4, 0}, table1 = {2, 5};
    const std::vector<PagedSequence> seqs = {
        {.query_start = 0, .num_queries = 3, .context_len = 14, .block_table = table0},
        {.query_start = 4, .num_queries = 1, .context_len = 6, .block_table = table1}};
    const std::vector<int32_t> positions = {11, 12, 13, 0, 5};
    const int64_t n = 5, qrow = p.num_heads * p.head_dim;
    const std::vector<float> q = RandomFloats(n * qrow, rng_);
    std::vector<float> want(q.size(), -7.0f);
    ASSERT_TRUE(ref_.PagedAttention(q.data(), n, positions, seqs, layout, host_pool, p,
                                    want.data()).ok());
    DeviceBuffer dq = Upload(q), dout = Upload(std::vector<float>(q.size(), -7.0f));
    ASSERT_TRUE(cuda_->PagedAttention(dq.as<float>(), n, positions, seqs, layout, pool, p,
                                      dout.as<float>()).ok());
    const std::vector<float> got = Download(dout, q.size());
    testing::ExpectAllClose(got, want, 5e-5);
    for (int64_t e = 3 * qrow; e < 4 * qrow; ++e) ASSERT_EQ(got[e], -7.0f) << "row 3 was written";

    const std::vector<KvBlockCopy> copies = {{6, 7}, {2, 3}};
    ASSERT_TRUE(ref_.CopyBlocks({&host_pool, 1}, layout, copies).ok());
    ASSERT_TRUE(cuda_->CopyBlocks({&pool, 1}, layout, copies).ok());
    EXPECT_EQ(Download<uint8_t>(dk, pool_bytes), host_k);
    EXPECT_EQ(Download<uint8_t>(dv, pool_bytes), host_v);
    PagedKvLayout swap_layout = layout;
    swap_layout.num_blocks = 2;
    std::vector<uint8_t> swap_k(swap_layout.num_blocks * layout.block_bytes(), 0);
    std::vector<uint8_t> swap_v(swap_k.size(), 0);
    const KvPool swap_pool{swap_k.data(), swap_v.data()};
    ASSERT_TRUE(cuda_->SwapBlocks({&pool, 1}, layout, {&swap_pool, 1}, swap_layout,
                                  std::vector<KvBlockCopy>{{4, 1}})
                    .ok());
    const int64_t bb = layout.block_bytes();
    EXPECT_TRUE(std::equal(swap_k.begin() + bb, swap_k.end(), host_k.begin() + 4 * bb));
    EXPECT_TRUE(std::equal(swap_v.begin() + bb, swap_v.end(), host_v.begin() + 4 * bb));
    // And back in, to block 0.
    ASSERT_TRUE(cuda_->SwapBlocks({&swap_pool, 1}, swap_layout, {&pool, 1}, layout,
                                  std::vector<KvBlockCopy>{{1, 0}})
                    .ok());
    const std::vector<uint8_t> back = Download<uint8_t>(dk, pool_bytes);
    EXPECT_TRUE(std::equal(back.begin(), back.begin() + bb, host_k.begin() + 4 * bb));
    // Bad slots are the scheduler's bug: refused before anything is written.
    const std::vector<int32_t> bad = {32};
    const absl::Status st = cuda_->WriteKv(dkr.as<float>(), dvr.as<float>(), bad, layout, pool);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("slots[0]=32"), std::string::npos) << st;
  }
}

}  // namespace
}  // namespace tessera
