// The CUDA ops (kernels/cuda/cuda_ops.h): element-wise ops, embedding and the decode GEMV
// against ReferenceBackend on random inputs of odd sizes (label `gpu`; skipped, reported as
// skipped, without a CUDA device; the argument checks run everywhere). Outputs are poisoned
// with NaN before each run, so an element left unwritten fails. Tolerance 2e-5·(1 + |want|)
// unless a test says otherwise: float kernels against the reference's double accumulation
// (RMSNorm and softmax sum up to 4099 terms in float: relative error ~ 1e-6 typical).
#include "kernels/cuda/cuda_ops.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/half.h"
#include "common/row_sample.h"
#include "common/row_top_k.h"
#include "gtest/gtest.h"
#include "kernels/cpu/reference_backend.h"
#include "kernels/cuda/device_probe.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

using testing::DenseRows;
using testing::Download;
using testing::ExpectProductsClose;
using testing::RandomFloats;
using testing::RoundedTo;
using testing::Upload;

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want) {
  testing::ExpectAllClose(got, want, 2e-5);
}

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceCount().ok()) GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
  }
  std::mt19937 rng_{2026};
  ReferenceBackend ref_;
};

// Argument checks run before anything reaches the device, with or without one.
TEST(CudaOpsArgumentsTest, GemvAndEmbeddingRefuseBadShapesAndTypesNamingTheField) {
  const TensorView q8{DType::kQ8_0, {4, 64}, nullptr};
  absl::Status st = CudaGemv(nullptr, 9, 64, q8, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("n=9"), std::string::npos) << st;
  st = CudaGemv(nullptr, 1, 32, q8, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("k=32"), std::string::npos) << st;
  st = CudaGemv(nullptr, 1, 256, TensorView{DType::kQ8_K, {4, 256}, nullptr}, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("w dtype q8_K"), std::string::npos) << st;
  st = CudaGemv(nullptr, 1, 40, TensorView{DType::kQ8_0, {4, 40}, nullptr}, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("w has 40 columns, not whole q8_0 blocks"), std::string::npos)
      << st;
  st = CudaEmbedding(TensorView{DType::kF32, {4, 8, 2}, nullptr}, nullptr, 1, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("table must be a dense matrix"), std::string::npos) << st;
}

TEST(CudaOpsArgumentsTest, GemmRefusesQuantizedWeightsAndBadShapesNamingTheField) {
  absl::Status st = CudaGemm(nullptr, 4, 64, TensorView{DType::kQ8_0, {4, 64}, nullptr}, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("w dtype q8_0 is not f16 or bf16"), std::string::npos) << st;
  const TensorView bf16{DType::kBF16, {4, 64}, nullptr};
  st = CudaGemm(nullptr, 4, 32, bf16, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("k=32"), std::string::npos) << st;
  st = CudaGemm(nullptr, 0, 64, bf16, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("n=0"), std::string::npos) << st;
}

TEST(CudaOpsArgumentsTest, PagedAttentionRefusesParametersThatDoNotFit) {
  PagedKvLayout layout{.num_blocks = 4, .block_size = 16, .num_kv_heads = 2, .head_dim = 256};
  PagedAttentionParams p{.num_heads = 4, .num_kv_heads = 2, .head_dim = 256, .scale = 1.0f};
  const int32_t dummy = 0;  // host memory: never read, the arguments are refused first
  const CudaAttentionEntries entries{.rows = &dummy, .tables = &dummy, .context_lens = &dummy,
                                     .num_entries = 1, .max_blocks = 1};
  AttentionSplits splits;
  CudaAttentionKernel kernel = CudaAttentionKernel::kDecode;
  auto attend = [&] {
    return CudaPagedAttention(nullptr, entries, kernel, splits, nullptr, layout, {}, p, nullptr);
  };
  absl::Status st = attend();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("params.head_dim=256"), std::string::npos) << st;
  layout.head_dim = p.head_dim = 64;
  p.num_kv_heads = 3;
  st = attend();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("params.num_kv_heads=3"), std::string::npos) << st;
  p.num_kv_heads = 2;
  layout.dtype = DType::kBF16;
  st = attend();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("layout.dtype bf16"), std::string::npos) << st;
  layout.dtype = DType::kF32;
  splits = {.num_splits = 4, .split_len = 256};  // no workspace
  st = attend();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("splits.num_splits=4"), std::string::npos) << st;
  splits = {};
  kernel = CudaAttentionKernel::kPrefill;
  CudaAttentionEntries no_tiles = entries;
  no_tiles.num_tiles = 1;
  st = CudaPagedAttention(nullptr, no_tiles, kernel, splits, nullptr, layout, {}, p, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("entries.tiles is null"), std::string::npos) << st;
  const CudaAttentionEntries no_rows{.num_entries = 1, .max_blocks = 1};
  st = CudaPagedAttention(nullptr, no_rows, kernel, splits, nullptr, layout, {}, p, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("entries.rows"), std::string::npos) << st;
}

TEST(CudaOpsWithoutDeviceTest, AnswersUnavailableWhenNotCompiledIn) {
  if (CudaCompiledIn()) GTEST_SKIP() << "CUDA is compiled in";
  EXPECT_EQ(DeviceBuffer::Allocate(16).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CudaAdd(nullptr, nullptr, 4, nullptr).code(), absl::StatusCode::kUnavailable);
}

TEST_F(CudaOpsTest, RmsNormMatchesReference) {
  for (const auto& [n, dim] : {std::pair<int64_t, int64_t>{1, 1}, {3, 577}, {5, 4099}, {64, 64}}) {
    SCOPED_TRACE(absl::StrFormat("n %d dim %d", n, dim));
    const std::vector<float> x = RandomFloats(n * dim, rng_, 3.0f), w = RandomFloats(dim, rng_);
    std::vector<float> want(x.size());
    ref_.RmsNorm(x.data(), w.data(), n, dim, 1e-5f, want.data());
    DeviceBuffer dx = Upload(x), dw = Upload(w), dout = Upload(std::vector<float>(x.size(), NAN));
    ASSERT_TRUE(CudaRmsNorm(dx.as<float>(), dw.as<float>(), n, dim, 1e-5f, dout.as<float>()).ok());
    ExpectClose(Download(dout, x.size()), want);
    // In place (out aliases x), as ops.h allows.
    ASSERT_TRUE(CudaRmsNorm(dx.as<float>(), dw.as<float>(), n, dim, 1e-5f, dx.as<float>()).ok());
    ExpectClose(Download(dx, x.size()), want);
  }
}

TEST_F(CudaOpsTest, SiluMulAndAddMatchReference) {
  for (int64_t count : {1, 7, 1000, 300001}) {
    SCOPED_TRACE(absl::StrFormat("count %d", count));
    const std::vector<float> a = RandomFloats(count, rng_, 4.0f), b = RandomFloats(count, rng_);
    std::vector<float> silu(a.size()), sum(a.size());
    ref_.SiluMul(a.data(), b.data(), count, silu.data());
    ref_.Add(a.data(), b.data(), count, sum.data());
    DeviceBuffer da = Upload(a), db = Upload(b), dout = Upload(std::vector<float>(a.size(), NAN));
    ASSERT_TRUE(CudaSiluMul(da.as<float>(), db.as<float>(), count, dout.as<float>()).ok());
    ExpectClose(Download(dout, a.size()), silu);
    ASSERT_TRUE(CudaAdd(da.as<float>(), db.as<float>(), count, da.as<float>()).ok());  // in place
    ExpectClose(Download(da, a.size()), sum);
  }
}

TEST_F(CudaOpsTest, SoftmaxMatchesReference) {
  for (const auto& [n, dim] : {std::pair<int64_t, int64_t>{1, 1}, {2, 33}, {7, 49152}}) {
    SCOPED_TRACE(absl::StrFormat("n %d dim %d", n, dim));
    std::vector<float> x = RandomFloats(n * dim, rng_, 5.0f);
    DeviceBuffer dx = Upload(x);
    ref_.Softmax(x.data(), n, dim);
    ASSERT_TRUE(CudaSoftmax(dx.as<float>(), n, dim).ok());
    ExpectClose(Download(dx, x.size()), x);
  }
}

TEST_F(CudaOpsTest, RopeMatchesReferenceForBothStylesAndPartialRotation) {
  const int64_t n_tokens = 5, heads = 3, head_dim = 64;
  const std::vector<int32_t> positions = {0, 1, 17, 4095, 131071};
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kHalves}) {
    for (int64_t rope_dim : {64, 32}) {
      SCOPED_TRACE(absl::StrFormat("style %d rope_dim %d", static_cast<int>(style), rope_dim));
      std::vector<float> inv_freq(static_cast<size_t>(rope_dim / 2));
      for (size_t i = 0; i < inv_freq.size(); ++i) {
        inv_freq[i] = std::pow(500000.0f, -2.0f * i / rope_dim);
      }
      std::vector<float> x = RandomFloats(n_tokens * heads * head_dim, rng_);
      DeviceBuffer dx = Upload(x), dpos = Upload(positions), dfreq = Upload(inv_freq);
      RopeParams p{.head_dim = head_dim, .rope_dim = rope_dim, .inv_freq = inv_freq.data(),
                   .mscale = 1.25f, .style = style};
      ref_.Rope(x.data(), n_tokens, heads, positions, p);
      p.inv_freq = dfreq.as<float>();
      ASSERT_TRUE(CudaRope(dx.as<float>(), n_tokens, heads, dpos.as<int32_t>(), p).ok());
      ExpectClose(Download(dx, x.size()), x);
    }
  }
  RopeParams odd{.head_dim = 8, .rope_dim = 5};
  EXPECT_EQ(CudaRope(nullptr, 1, 1, nullptr, odd).code(), absl::StatusCode::kInvalidArgument);
}

constexpr DType kWeightTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0,
                                  DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1,
                                  DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K,
                                  DType::kQ6_K};

// `cols` rounded up to whole blocks of `t` (256-element super-blocks for the K-quants).
int64_t WholeBlocks(DType t, int64_t cols) {
  const int64_t b = Traits(t).block_elems;
  return (cols + b - 1) / b * b;
}

TEST_F(CudaOpsTest, EmbeddingMatchesReferenceForEveryWeightType) {
  const int64_t rows = 37;
  const std::vector<int32_t> ids = {0, 36, 5, 5, 17};
  for (DType t : kWeightTypes) {
    SCOPED_TRACE(std::string(DTypeName(t)));
    const int64_t cols = WholeBlocks(t, 96);
    const std::vector<uint8_t> table = testing::RandomWeights(t, rows, cols, rng_);
    std::vector<float> want(ids.size() * cols);
    ASSERT_TRUE(ref_.Embedding(TensorView{t, {rows, cols}, table.data()}, ids, want.data()).ok());
    DeviceBuffer dtable = Upload(table), dids = Upload(ids);
    DeviceBuffer dout = Upload(std::vector<float>(want.size(), NAN));
    ASSERT_TRUE(CudaEmbedding(TensorView{t, {rows, cols}, dtable.as<void>()}, dids.as<int32_t>(),
                              static_cast<int64_t>(ids.size()), dout.as<float>())
                    .ok());
    ExpectClose(Download(dout, want.size()), want);
  }
}

// Float accumulation over k terms against the reference's double: bounded by
// k·2^-24·Σ|w·x| per output, checked as 1e-5 of that sum (k <= 768 here).
TEST_F(CudaOpsTest, GemvMatchesReferenceForEveryWeightType) {
  for (DType t : kWeightTypes) {
    // k 100 for the float types: 12 chunks of 8 and a tail read element by element.
    for (const auto& [m, cols] : {std::pair<int64_t, int64_t>{45, 96}, {7, 576}, {5, 100}}) {
      const int64_t k = WholeBlocks(t, cols);
      for (int64_t n : {1, 3, 8}) {
        SCOPED_TRACE(absl::StrFormat("%s m %d k %d n %d", DTypeName(t), m, k, n));
        const std::vector<uint8_t> w = testing::RandomWeights(t, m, k, rng_);
        const TensorView host{t, {m, k}, w.data()};
        const std::vector<float> x = RandomFloats(n * k, rng_);
        std::vector<float> want(static_cast<size_t>(n * m));
        ASSERT_TRUE(ref_.MatMul(x.data(), n, k, host, want.data()).ok());
        DeviceBuffer dw = Upload(w), dx = Upload(x);
        DeviceBuffer dy = Upload(std::vector<float>(want.size(), NAN));
        ASSERT_TRUE(
            CudaGemv(dx.as<float>(), n, k, TensorView{t, {m, k}, dw.as<void>()}, dy.as<float>())
                .ok());
        ExpectProductsClose(Download(dy, want.size()), want, DenseRows(host), x, n, m, k);
      }
    }
  }
}

// Prefill-sized products (n up to 130, m not a multiple of any tile) for F16 and BF16
// weights against the reference's MatMul of x rounded to the weight's type: FP32
// accumulation on both sides, so 1e-5 of Σ|w·x| covers the summation order.
TEST_F(CudaOpsTest, GemmMatchesReferenceOnRoundedActivations) {
  for (DType t : {DType::kF16, DType::kBF16}) {
    for (const auto& [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{45, 96, 1},
                                  {7, 576, 33}, {301, 256, 130}}) {
      SCOPED_TRACE(absl::StrFormat("%s m %d k %d n %d", DTypeName(t), m, k, n));
      const std::vector<uint8_t> w = testing::RandomWeights(t, m, k, rng_);
      const TensorView host{t, {m, k}, w.data()};
      const std::vector<float> x = RandomFloats(n * k, rng_);
      const std::vector<float> rounded = RoundedTo(t, x);
      std::vector<float> want(static_cast<size_t>(n * m));
      ASSERT_TRUE(ref_.MatMul(rounded.data(), n, k, host, want.data()).ok());
      DeviceBuffer dw = Upload(w), dx = Upload(x);
      DeviceBuffer dy = Upload(std::vector<float>(want.size(), NAN));
      ASSERT_TRUE(
          CudaGemm(dx.as<float>(), n, k, TensorView{t, {m, k}, dw.as<void>()}, dy.as<float>())
              .ok());
      ExpectProductsClose(Download(dy, want.size()), want, DenseRows(host), rounded, n, m, k);
    }
  }
}

// Prefill-sized products with quantized weights: W dequantized to F16 a slice of rows at a
// time (a scratch of 3 rows and a bit here, so slices of 3 and a tail; and one slice of all
// rows), then cuBLASLt. Against float64 sums of W rounded to F16 times x rounded to F16.
TEST_F(CudaOpsTest, QuantizedGemmMatchesRoundedWeightsAndActivations) {
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_1, DType::kQ4_K,
                  DType::kQ6_K}) {
    const int64_t m = 70, k = WholeBlocks(t, 512), n = 67;
    SCOPED_TRACE(DTypeName(t));
    const std::vector<uint8_t> w = testing::RandomWeights(t, m, k, rng_);
    const TensorView host{t, {m, k}, w.data()};
    const std::vector<float> wr = RoundedTo(DType::kF16, DenseRows(host));
    const std::vector<float> x = RandomFloats(n * k, rng_);
    const std::vector<float> xr = RoundedTo(DType::kF16, x);
    const std::vector<float> want = testing::Products(wr, xr, n, m, k);
    DeviceBuffer dw = Upload(w), dx = Upload(x);
    for (const int64_t scratch_halves : {3 * k + 5, m * k}) {
      DeviceBuffer scratch = Upload(std::vector<uint16_t>(scratch_halves));
      DeviceBuffer dy = Upload(std::vector<float>(want.size(), NAN));
      ASSERT_TRUE(CudaGemmQuantized(dx.as<float>(), n, k, TensorView{t, {m, k}, dw.as<void>()},
                                    dy.as<float>(), scratch.as<void>(), scratch_halves)
                      .ok());
      ExpectProductsClose(Download(dy, want.size()), want, wr, xr, n, m, k);
    }
  }
  // A float matrix is not for this path; the scratch must hold a row.
  DeviceBuffer scratch = Upload(std::vector<uint16_t>(64));
  DeviceBuffer dw = Upload(std::vector<uint8_t>(2 * 64 * 2));
  EXPECT_EQ(CudaGemmQuantized(nullptr, 1, 64, TensorView{DType::kF16, {2, 64}, dw.as<void>()},
                              nullptr, scratch.as<void>(), 64)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Paged attention through both kernels against ReferenceBackend::PagedAttention on the same
// pools: four sequences (contexts 1100, 1, 129 and 300: many passes, one position, a pass
// plus one) through shuffled block tables, float and half caches, GQA 9:3 at d 64 and 8:2
// at d 128, with and without a sliding window. Decode: one row per sequence, the window
// whole and cut into pieces of 256 (split-K: sequence 1's later pieces are empty, as are all
// but the first under the window). Prefill: the last 37 positions of sequences 0 and 3 as
// query rows (tiles of 16 sharing K/V reads), sequence 1's one row between them, and a row
// of no sequence that must stay untouched. Tolerance 5e-5·(1 + |want|), as the cpu
// backend's (float scores).
TEST_F(CudaOpsTest, PagedAttentionMatchesReferenceForDecodeSplitAndPrefill) {
  const std::vector<int64_t> contexts = {1100, 1, 129, 300};
  const int64_t block_size = 16;
  for (const auto& [heads, kv_heads, d] :
       {std::tuple<int64_t, int64_t, int64_t>{9, 3, 64}, {8, 2, 128}}) {
    for (DType kv : {DType::kF32, DType::kF16}) {
      for (int64_t window : {0, 7}) {
        SCOPED_TRACE(absl::StrFormat("H %d KVH %d d %d %s window %d", heads, kv_heads, d,
                                     DTypeName(kv), window));
        const PagedKvLayout layout{.num_blocks = 128, .block_size = block_size,
                                   .num_kv_heads = kv_heads, .head_dim = d, .dtype = kv};
        const PagedAttentionParams params{.num_heads = heads, .num_kv_heads = kv_heads,
                                          .head_dim = d,
                                          .scale = 1.0f / std::sqrt(static_cast<float>(d)),
                                          .sliding_window = window};
        const size_t pool_bytes = static_cast<size_t>(layout.num_blocks * layout.block_bytes());
        std::vector<uint8_t> k_pool(pool_bytes), v_pool(pool_bytes);
        const KvPool host_pool{k_pool.data(), v_pool.data()};
        std::vector<int32_t> ids(static_cast<size_t>(layout.num_blocks));
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), rng_);
        std::vector<std::vector<int32_t>> tables;
        size_t next = 0;
        for (const int64_t ctx : contexts) {
          tables.emplace_back((ctx + block_size - 1) / block_size);
          for (int32_t& b : tables.back()) b = ids[next++];
          // The whole context's K and V, written through the reference.
          std::vector<int32_t> pos(static_cast<size_t>(ctx)), slots;
          std::iota(pos.begin(), pos.end(), 0);
          const PagedSequence all{0, ctx, ctx, tables.back()};
          ASSERT_TRUE(ComputeSlotMapping({&all, 1}, pos, layout, &slots).ok());
          const std::vector<float> k = RandomFloats(ctx * kv_heads * d, rng_);
          const std::vector<float> v = RandomFloats(ctx * kv_heads * d, rng_);
          ASSERT_TRUE(ref_.WriteKv(k.data(), v.data(), slots, layout, host_pool).ok());
        }
        DeviceBuffer dk = Upload(k_pool), dv = Upload(v_pool);
        const KvPool device_pool{dk.as<void>(), dv.as<void>()};

        // Runs `sequences` (query rows at `positions`) through the kernel and the reference.
        const auto check = [&](const std::vector<PagedSequence>& sequences,
                               const std::vector<int32_t>& positions, CudaAttentionKernel kernel,
                               const AttentionSplits& splits) {
          const int64_t n = static_cast<int64_t>(positions.size());
          const std::vector<float> q = RandomFloats(n * heads * d, rng_, 2.0f);
          std::vector<float> want(q.size(), 7.0f);  // rows of no sequence keep 7
          ASSERT_TRUE(ref_.PagedAttention(q.data(), n, positions, sequences, layout, host_pool,
                                          params, want.data())
                          .ok());
          const AttentionRows rows = PagedAttentionRows(positions, sequences, block_size);
          DeviceBuffer dq = Upload(q), drows = Upload(rows.rows), dtables = Upload(rows.tables);
          DeviceBuffer dlens = Upload(rows.context_lens), dtiles = Upload(rows.tiles);
          DeviceBuffer dwork = Upload(std::vector<float>(static_cast<size_t>(
              AttentionSplitWorkspaceFloats(rows.entries(), heads, d, splits) + 1)));
          DeviceBuffer dout = Upload(std::vector<float>(q.size(), 7.0f));
          const CudaAttentionEntries entries{
              .rows = drows.as<int32_t>(), .tables = dtables.as<int32_t>(),
              .context_lens = dlens.as<int32_t>(), .num_entries = rows.entries(),
              .max_blocks = rows.max_blocks, .tiles = dtiles.as<int32_t>(),
              .num_tiles = rows.num_tiles()};
          ASSERT_TRUE(CudaPagedAttention(dq.as<float>(), entries, kernel, splits,
                                         dwork.as<float>(), layout, device_pool, params,
                                         dout.as<float>())
                          .ok());
          const std::vector<float> got = Download(dout, q.size());
          for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_NEAR(got[i], want[i], 5e-5 * (1.0 + std::fabs(want[i]))) << "element " << i;
          }
        };

        std::vector<PagedSequence> decode;
        std::vector<int32_t> decode_positions;
        for (size_t s = 0; s < contexts.size(); ++s) {
          decode.push_back({static_cast<int64_t>(s), 1, contexts[s], tables[s]});
          decode_positions.push_back(static_cast<int32_t>(contexts[s] - 1));
        }
        {
          SCOPED_TRACE("decode, whole windows");
          check(decode, decode_positions, CudaAttentionKernel::kDecode, {});
        }
        {
          SCOPED_TRACE("decode, pieces of 256");
          check(decode, decode_positions, CudaAttentionKernel::kDecode,
                {.num_splits = 5, .split_len = 256});
        }
        {
          SCOPED_TRACE("prefill tiles");
          std::vector<int32_t> positions;
          for (int64_t p = contexts[0] - 37; p < contexts[0]; ++p) positions.push_back(p);
          positions.push_back(0);  // sequence 1
          positions.push_back(0);  // no sequence
          for (int64_t p = contexts[3] - 37; p < contexts[3]; ++p) positions.push_back(p);
          const std::vector<PagedSequence> prefill = {
              {0, 37, contexts[0], tables[0]},
              {37, 1, contexts[1], tables[1]},
              {39, 37, contexts[3], tables[3]}};
          check(prefill, positions, CudaAttentionKernel::kPrefill, {});
        }
      }
    }
  }
}

// Work queued on a stream without waiting, then one Synchronize: GEMMs of two shapes back
// to back (a cached cuBLASLt plan reused, a second one made for an output aligned to 4 bytes
// only, the stream's own rounded-x buffer grown between them), a GEMV and an element-wise op
// reading the GEMM's output.
TEST_F(CudaOpsTest, OpsQueuedOnAStreamMatchReferenceAfterSynchronize) {
  absl::StatusOr<CudaStream> stream = CudaStream::Create();
  ASSERT_TRUE(stream.ok()) << stream.status();
  const int64_t m = 67, k = 256;
  const std::vector<uint8_t> w16 = testing::RandomWeights(DType::kBF16, m, k, rng_);
  const std::vector<uint8_t> w8 = testing::RandomWeights(DType::kQ8_0, m, k, rng_);
  const TensorView host16{DType::kBF16, {m, k}, w16.data()};
  const TensorView host8{DType::kQ8_0, {m, k}, w8.data()};
  DeviceBuffer dw16 = Upload(w16), dw8 = Upload(w8);
  const TensorView dev16{DType::kBF16, {m, k}, dw16.as<void>()};
  const TensorView dev8{DType::kQ8_0, {m, k}, dw8.as<void>()};
  const std::vector<int64_t> ns = {3, 40, 3};
  std::vector<std::vector<float>> want, rounded;
  std::vector<DeviceBuffer> xs, ys;
  for (const int64_t n : ns) {
    const std::vector<float> x = RandomFloats(n * k, rng_);
    rounded.push_back(RoundedTo(DType::kBF16, x));
    want.emplace_back(static_cast<size_t>(n * m));
    ASSERT_TRUE(ref_.MatMul(rounded.back().data(), n, k, host16, want.back().data()).ok());
    xs.push_back(Upload(x));
    // One float of slack: the second GEMM writes to an output only 4-byte aligned.
    ys.push_back(Upload(std::vector<float>(want.back().size() + 1, NAN)));
    float* y = ys.back().as<float>() + (ys.size() == 2 ? 1 : 0);
    ASSERT_TRUE(CudaGemm(xs.back().as<float>(), n, k, dev16, y, &*stream).ok());
  }
  // y8 = x0 · W8ᵀ, then y8 += the first GEMM's output, both queued after the GEMMs.
  std::vector<float> want8(static_cast<size_t>(3 * m));
  const std::vector<float> x0 = Download(xs[0], static_cast<size_t>(3 * k));
  ASSERT_TRUE(ref_.MatMul(x0.data(), 3, k, host8, want8.data()).ok());
  for (size_t i = 0; i < want8.size(); ++i) want8[i] += want[0][i];
  DeviceBuffer y8 = Upload(std::vector<float>(want8.size(), NAN));
  ASSERT_TRUE(CudaGemv(xs[0].as<float>(), 3, k, dev8, y8.as<float>(), &*stream).ok());
  ASSERT_TRUE(CudaAdd(y8.as<float>(), ys[0].as<float>(), 3 * m, y8.as<float>(), &*stream).ok());
  ASSERT_TRUE(stream->Synchronize().ok());
  const std::vector<float> dense16 = DenseRows(host16), dense8 = DenseRows(host8);
  for (size_t i = 0; i < want.size(); ++i) {
    std::vector<float> got = Download(ys[i], want[i].size() + 1);
    got.erase(got.begin() + (i == 1 ? 0 : static_cast<std::ptrdiff_t>(want[i].size())),
              got.begin() + (i == 1 ? 1 : static_cast<std::ptrdiff_t>(want[i].size()) + 1));
    ExpectProductsClose(got, want[i], dense16, rounded[i], ns[i], m, k);
  }
  // Both products' magnitudes bound the sum's error.
  const std::vector<float> got8 = Download(y8, want8.size());
  for (int64_t j = 0; j < 3; ++j) {
    for (int64_t r = 0; r < m; ++r) {
      double magnitude = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        magnitude += std::fabs(dense8[r * k + c] * x0[j * k + c]) +
                     std::fabs(dense16[r * k + c] * rounded[0][j * k + c]);
      }
      ASSERT_NEAR(got8[j * m + r], want8[j * m + r], 1e-5 * magnitude) << j << " " << r;
    }
  }
}

// Greedy choices on the device: common/row_argmax.h's rule on rows with ties (lowest index
// wins, across threads and warps), NaN (skipped), all -inf (index 0), all NaN (-1), and a
// vocabulary-sized row.
TEST_F(CudaOpsTest, ArgMaxRowsFollowsTheHostRule) {
  const int64_t dim = 50000, rows = 6;
  std::vector<float> x = RandomFloats(rows * dim, rng_);
  float* r0 = x.data();
  r0[777] = r0[40001] = r0[123] = 9.0f;  // a three-way tie: 123 wins
  float* r1 = x.data() + dim;
  for (int64_t i = 0; i < dim; i += 3) r1[i] = NAN;
  r1[3 * 1000] = NAN;
  r1[5] = 20.0f;
  float* r2 = x.data() + 2 * dim;
  std::fill(r2, r2 + dim, -INFINITY);
  float* r3 = x.data() + 3 * dim;
  std::fill(r3, r3 + dim, NAN);
  float* r4 = x.data() + 4 * dim;
  r4[dim - 1] = 50.0f;  // the last element
  DeviceBuffer dx = Upload(x);
  DeviceBuffer dout = Upload(std::vector<RowArgMax>(rows));
  ASSERT_TRUE(CudaArgMaxRows(dx.as<float>(), rows, dim, dout.as<RowArgMax>()).ok());
  const std::vector<RowArgMax> got = Download<RowArgMax>(dout, rows);
  for (int64_t r = 0; r < rows; ++r) {
    const RowArgMax want = ArgMaxOfRow({x.data() + r * dim, static_cast<size_t>(dim)});
    EXPECT_EQ(got[r].index, want.index) << "row " << r;
    if (want.index >= 0) {
      EXPECT_EQ(got[r].value, want.value) << "row " << r;
    }
  }
  EXPECT_EQ(got[0].index, 123);
  EXPECT_EQ(got[2].index, 0);
  EXPECT_EQ(got[3].index, -1);
  EXPECT_EQ(got[4].index, dim - 1);
}

// Top-k sampling's candidates on the device: common/row_top_k.h's rule, bit for bit, on
// vocabulary-sized and odd rows: ties at the k-th value (more candidates than k), ties that
// only the temperature's division makes, -0 beside +0, -inf, k past the row, k = 0, a NaN
// (-1), and more candidates than the capacity (the count says so; the first ones written).
TEST_F(CudaOpsTest, TopKRowsFollowsTheHostRule) {
  const int64_t dim = 49157, rows = 9, capacity = 80;
  std::vector<float> x = RandomFloats(rows * dim, rng_);
  for (float& v : x) v = std::round(v * 40.0f) / 8.0f;  // few levels: ties everywhere
  float* r1 = x.data() + dim;
  r1[10] = 3.0f;
  r1[11] = std::nextafter(3.0f, 4.0f);  // differ; equal after dividing by 3?
  float* r2 = x.data() + 2 * dim;
  std::fill(r2, r2 + dim, -INFINITY);
  r2[7] = -0.0f;
  r2[dim - 2] = 0.0f;  // ties with -0
  float* r3 = x.data() + 3 * dim;
  r3[dim / 2] = NAN;
  float* r4 = x.data() + 4 * dim;
  std::fill(r4, r4 + dim, 1.0f);  // all tie: more than the capacity
  const std::vector<int32_t> k = {50, 1, 1, 5, 3, 0, 200000, 17, 64};
  const std::vector<float> temperature = {1.0f, 3.0f, 1.0f, 0.5f, 1.0f, 1.0f, 1.0f, 0.01f, 7.0f};
  DeviceBuffer dx = Upload(x);
  DeviceBuffer dk = Upload(k);
  DeviceBuffer dt = Upload(temperature);
  DeviceBuffer dids = Upload(std::vector<int32_t>(rows * capacity, -7));
  DeviceBuffer dvalues = Upload(std::vector<float>(rows * capacity, -7.0f));
  DeviceBuffer dcounts = Upload(std::vector<int32_t>(rows, -7));
  ASSERT_TRUE(CudaTopKRows(dx.as<float>(), rows, dim, dk.as<int32_t>(), dt.as<float>(), capacity,
                           dids.as<int32_t>(), dvalues.as<float>(), dcounts.as<int32_t>())
                  .ok());
  const std::vector<int32_t> ids = Download<int32_t>(dids, rows * capacity);
  const std::vector<float> values = Download<float>(dvalues, rows * capacity);
  const std::vector<int32_t> counts = Download<int32_t>(dcounts, rows);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> want_ids(capacity);
    std::vector<float> want_values(capacity);
    const int32_t want = TopKOfRow({x.data() + r * dim, static_cast<size_t>(dim)}, k[r],
                                   temperature[r], want_ids, want_values);
    ASSERT_EQ(counts[r], want) << "row " << r;
    const int64_t written = std::min<int64_t>(std::max(want, 0), capacity);
    for (int64_t i = 0; i < written; ++i) {
      ASSERT_EQ(ids[r * capacity + i], want_ids[i]) << "row " << r << " candidate " << i;
      ASSERT_EQ(std::bit_cast<uint32_t>(values[r * capacity + i]),
                std::bit_cast<uint32_t>(want_values[i]))
          << "row " << r << " candidate " << i;
    }
  }
  EXPECT_GT(counts[0], 50) << "the rounded rows tie at the 50th value";
  EXPECT_EQ(counts[2], 2);
  EXPECT_EQ(counts[3], -1);
  EXPECT_EQ(counts[4], dim);
  EXPECT_EQ(counts[5], 0);
  EXPECT_EQ(counts[6], dim);
}

// Plain sampling's draw on the device: common/row_sample.h's rule over each row divided by
// its temperature, on vocabulary-sized rows with NaN and -inf entries, an all -inf row and a
// +inf row (-1), u = 0 and u just below 1, a skipped row (u < 0), and a row long enough that
// each thread's stretch is hundreds of tokens. Random u never lands within float64 rounding
// of a boundary, so the tokens are equal.
TEST_F(CudaOpsTest, DrawRowsFollowsTheHostRule) {
  const int64_t dim = 128257, rows = 12;
  std::vector<float> x = RandomFloats(rows * dim, rng_);
  for (float& v : x) v *= 8.0f;
  for (int64_t i = 0; i < dim; i += 5) x[i] = -INFINITY;
  for (int64_t i = 1; i < dim; i += 11) x[dim + i] = NAN;
  std::fill(x.begin() + 2 * dim, x.begin() + 3 * dim, -INFINITY);
  x[3 * dim + 77] = INFINITY;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<double> u(rows);
  for (double& v : u) v = uniform(rng_);
  u[4] = 0.0;
  u[5] = std::nextafter(1.0, 0.0);
  u[6] = -1.0;
  std::vector<float> temperature(rows, 1.0f);
  temperature[7] = 0.3f;
  temperature[8] = 2.5f;
  DeviceBuffer dx = Upload(x), dt = Upload(temperature), du = Upload(u);
  DeviceBuffer dtokens = Upload(std::vector<int32_t>(rows, -7));
  ASSERT_TRUE(CudaDrawRows(dx.as<float>(), rows, dim, dt.as<float>(), du.as<double>(),
                           dtokens.as<int32_t>())
                  .ok());
  const std::vector<int32_t> got = Download<int32_t>(dtokens, rows);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> scaled(x.begin() + r * dim, x.begin() + (r + 1) * dim);
    for (float& v : scaled) v /= temperature[r];
    const int32_t want = u[r] < 0 ? -1 : DrawFromRow(scaled, u[r]);
    EXPECT_EQ(got[r], want) << "row " << r << " u " << u[r];
  }
  EXPECT_EQ(got[2], -1);
  EXPECT_EQ(got[3], -1);
  EXPECT_EQ(got[6], -1);
  // Many draws over one row: the device and the host agree on each.
  const int64_t draws = 256, small = 1000;
  std::vector<float> one = RandomFloats(small, rng_);
  std::vector<float> repeated;
  for (int64_t d = 0; d < draws; ++d) repeated.insert(repeated.end(), one.begin(), one.end());
  std::vector<double> us(draws);
  for (double& v : us) v = uniform(rng_);
  DeviceBuffer drep = Upload(repeated), dus = Upload(us);
  DeviceBuffer dts = Upload(std::vector<float>(draws, 1.0f));
  DeviceBuffer dmany = Upload(std::vector<int32_t>(draws, -7));
  ASSERT_TRUE(CudaDrawRows(drep.as<float>(), draws, small, dts.as<float>(), dus.as<double>(),
                           dmany.as<int32_t>())
                  .ok());
  const std::vector<int32_t> many = Download<int32_t>(dmany, draws);
  for (int64_t d = 0; d < draws; ++d) EXPECT_EQ(many[d], DrawFromRow(one, us[d])) << d;
}

// Top-p's denominators on the device against the host's sequential float64 sums (the order
// differs: 1e-12 relative), with NaN entries, an all -inf row (0) and a skipped row.
TEST_F(CudaOpsTest, SoftmaxDenominatorsMatchTheHostSums) {
  const int64_t dim = 128257, rows = 5;
  std::vector<float> x = RandomFloats(rows * dim, rng_);
  for (float& v : x) v *= 6.0f;
  for (int64_t i = 3; i < dim; i += 7) x[i] = NAN;
  std::fill(x.begin() + dim, x.begin() + 2 * dim, -INFINITY);
  const std::vector<float> temperature = {1.0f, 1.0f, 0.4f, 2.0f, 0.0f};
  std::vector<double> want(rows);
  ASSERT_TRUE(ref_.SoftmaxDenominators(x.data(), rows, dim, temperature, want.data()).ok());
  DeviceBuffer dx = Upload(x), dt = Upload(temperature);
  DeviceBuffer dsums = Upload(std::vector<double>(rows, -1.0));
  ASSERT_TRUE(CudaSoftmaxDenominators(dx.as<float>(), rows, dim, dt.as<float>(),
                                      dsums.as<double>())
                  .ok());
  const std::vector<double> got = Download<double>(dsums, rows);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_NEAR(got[r], want[r], 1e-12 * want[r]) << "row " << r;
  }
  EXPECT_EQ(got[1], 0.0);
  EXPECT_EQ(got[4], 0.0);
}

TEST_F(CudaOpsTest, DeviceBufferRefusesCopiesPastItsEnd) {
  auto buffer = DeviceBuffer::Allocate(8);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  char host[16] = {};
  EXPECT_EQ(buffer->CopyFromHost(host, 16).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(buffer->CopyToHost(host, 9).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(buffer->CopyToHost(host, 8).ok());
}

}  // namespace
}  // namespace tessera
