// The "cpu" backend against "cpu-reference" for every op and weight dtype, on every ISA
// this CPU supports and several thread counts, at odd sizes.
//
// MatMul tolerance. The cpu backend quantizes activations to Q8 (Q8_0 / Q8_1 / Q8_K per
// weight dtype) before integer dots, so the reference is fed the same rounded activations
// x̂ = dequant(quant(x)); what remains is float rounding, bounded relative to
// S = Σ_j |w_j·x̂_j| (which bounds |y| and every partial sum):
//   * 1e-4·S for all dtypes: float32 accumulation over k ≤ 1536 terms gives at most about
//     k·2^-24 ≈ 9e-5 in the worst case (typically √k·2^-24 ≈ 2e-6), while a wrong block
//     layout or scale gives errors of order S.
//   * plus, for Q4_1/Q5_1, the known deviation of their min term: the dot uses Q8_1's
//     stored s = fp16(d·Σq) where x̂ implies fp16(d)·Σq, so the test adds
//     Σ_blocks |m_b|·|s_b − fp16(d_b)·Σq_b| computed from the actual blocks (≈ 2^-10 of
//     |m|·|Σx̂| at most), keeping the check sharp enough to catch a 0.1% error in that term.
#include "kernels/cpu/cpu_backend.h"

#include <cmath>
#include <iterator>
#include <limits>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/reference_backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

using testing::RandomFloats;
using testing::RandomWeights;

// The activation format the backend promises for each weight dtype (vec_dot.h) on `table`.
DType ExpectedActivation(DType w, const CpuKernels& table) {
  if (w == DType::kBF16 && table.isa == "avx512bf16") return DType::kBF16;
  switch (w) {
    case DType::kQ4_0: case DType::kQ5_0: case DType::kQ8_0: return DType::kQ8_0;
    case DType::kQ4_1: case DType::kQ5_1: return DType::kQ8_1;
    case DType::kQ4_K: case DType::kQ6_K: return DType::kQ8_K;
    default: return DType::kF32;
  }
}

std::vector<float> RoundTrip(DType act, const std::vector<float>& x, int64_t n, int64_t k) {
  if (act == DType::kF32) return x;
  std::vector<float> out(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(*RowBytes(act, k)));
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_TRUE(QuantizeRow(act, x.data() + i * k, q.data(), k).ok());
    EXPECT_TRUE(DequantizeRow(act, q.data(), out.data() + i * k, k).ok());
  }
  return out;
}

struct Config {
  const CpuKernels* kernels;
  int threads;
};
void PrintTo(const Config& c, std::ostream* os) {
  *os << c.kernels->isa << (c.kernels->packed_gemm == PackedGemmReference ? "+portable-pack" : "")
      << " x" << c.threads;
}

// Every table this CPU supports, plus a copy of each table without a packed GEMM that uses
// the portable one, so that MatMul on packed weights is checked on every machine.
const std::vector<CpuKernels>& PortablePackTables() {
  static const std::vector<CpuKernels> tables = [] {
    std::vector<CpuKernels> out;
    for (const CpuKernels* k : SupportedCpuKernels()) {
      if (k->packed_gemm != nullptr) continue;
      out.push_back(*k);
      out.back().packed_gemm = PackedGemmReference;
    }
    return out;
  }();
  return tables;
}

std::vector<Config> AllConfigs() {
  std::vector<Config> out;
  for (const CpuKernels* k : SupportedCpuKernels()) {
    for (int t : {1, 2, 3}) out.push_back({k, t});
  }
  for (const CpuKernels& k : PortablePackTables()) out.push_back({&k, 2});
  return out;
}

class CpuBackendTest : public ::testing::TestWithParam<Config> {
 protected:
  CpuBackend be_{GetParam().threads, GetParam().kernels};
  ReferenceBackend ref_;
};

const DType kAllWeightTypes[] = {
    DType::kF32,  DType::kF16,  DType::kBF16, DType::kF64,  DType::kQ4_0, DType::kQ4_1,
    DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ8_1, DType::kQ2_K, DType::kQ3_K,
    DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ8_K};

TEST_P(CpuBackendTest, MatMulMatchesReferenceForEveryDtype) {
  EXPECT_EQ(be_.isa(), GetParam().kernels->isa);
  std::mt19937 rng(11);
  for (DType t : kAllWeightTypes) {
    const DType act = ExpectedActivation(t, *GetParam().kernels);
    EXPECT_EQ(GetParam().kernels->activation_type(t), act) << DTypeName(t);
    const bool k_quant = Traits(t).block_elems == 256;
    // (n, k, m): decode, prefill with m not a multiple of the 16-row tile, a long row; for
    // float weights also a row that is not a multiple of the 8-lane vectors (their batched
    // kernels' scalar tail).
    std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes =
        k_quant ? std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 256, 37}, {7, 512, 45}, {2, 1536, 17}}
                : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 32, 37}, {7, 96, 45}, {1, 1536, 33}};
    if (Traits(t).block_elems == 1) shapes.emplace_back(9, 101, 35);
    for (const auto& [n, k, m] : shapes) {
      SCOPED_TRACE(absl::StrFormat("%s n=%d k=%d m=%d", DTypeName(t), n, k, m));
      const std::vector<uint8_t> w = RandomWeights(t, m, k, rng);
      const TensorView wv{t, {m, k}, w.data()};
      const std::vector<float> x = RandomFloats(n * k, rng);
      std::vector<float> y(n * m, NAN);
      ASSERT_TRUE(be_.MatMul(x.data(), n, k, wv, y.data()).ok());
      // The same product through the backend's packed copy, when it makes one.
      absl::StatusOr<std::unique_ptr<PackedWeight>> packed = be_.PackWeight(wv);
      ASSERT_TRUE(packed.ok()) << packed.status();
      PackedFormat format;
      const CpuKernels& table = *GetParam().kernels;
      EXPECT_EQ(*packed != nullptr,
                be_.packs_weights() && PackedFormatFor(t, &format) &&
                    (table.packs_format == nullptr || table.packs_format(format)));
      std::vector<float> y_packed;
      if (*packed != nullptr) {
        TensorView pv = wv;
        pv.packed = packed->get();
        y_packed.assign(n * m, NAN);
        ASSERT_TRUE(be_.MatMul(x.data(), n, k, pv, y_packed.data()).ok());
      }

      const std::vector<float> xq = RoundTrip(act, x, n, k);
      std::vector<float> want(n * m);
      ASSERT_TRUE(ref_.MatMul(xq.data(), n, k, wv, want.data()).ok());
      const bool min_term = act == DType::kQ8_1;
      std::vector<BlockQ8_1> xa(min_term ? n * k / 32 : 0);
      for (int64_t i = 0; min_term && i < n; ++i) {
        ASSERT_TRUE(QuantizeRow(DType::kQ8_1, x.data() + i * k, xa.data() + i * k / 32, k).ok());
      }
      std::vector<float> row(k);
      for (int64_t r = 0; r < m; ++r) {
        ASSERT_TRUE(DequantizeRow(t, wv.RowPtr(r), row.data(), k).ok());
        for (int64_t i = 0; i < n; ++i) {
          double s = 0;
          for (int64_t j = 0; j < k; ++j) s += std::fabs(double(row[j]) * xq[i * k + j]);
          double s_dev = 0;
          for (int64_t b = 0; min_term && b < k / 32; ++b) {
            uint16_t mh;  // Q4_1 and Q5_1 keep fp16 m at byte 2 of each block
            std::memcpy(&mh, wv.RowPtr(r) + b * Traits(t).block_bytes + 2, 2);
            const BlockQ8_1& a = xa[i * k / 32 + b];
            int sum = 0;
            for (int8_t q : a.qs) sum += q;
            s_dev += std::fabs(double(Fp16ToFloat(mh))) *
                     std::fabs(double(Fp16ToFloat(a.s)) - double(Fp16ToFloat(a.d)) * sum);
          }
          ASSERT_NEAR(y[i * m + r], want[i * m + r], 1e-4 * s + 1.001 * s_dev + 1e-6)
              << "row " << r << " token " << i;
          if (!y_packed.empty()) {
            ASSERT_NEAR(y_packed[i * m + r], want[i * m + r], 1e-4 * s + 1.001 * s_dev + 1e-6)
                << "packed, row " << r << " token " << i;
          }
        }
      }
    }
  }
}

// The fused norm + projection gives exactly RmsNorm then MatMul on this backend (the norm
// goes into the quantization pass for integer dots, packed or not; float weights normalize
// first), writes the normalized rows, and may normalize in place.
TEST_P(CpuBackendTest, RmsNormMatMulEqualsRmsNormThenMatMul) {
  std::mt19937 rng(19);
  const int64_t k = 96, m = 37;
  const std::vector<float> norm_weight = RandomFloats(k, rng);
  for (DType t : {DType::kQ4_1, DType::kQ8_0, DType::kQ4_0, DType::kQ6_K, DType::kBF16,
                  DType::kF32}) {
    const int64_t kk = Traits(t).block_elems == 256 ? 256 : k;
    const std::vector<float> nw = Traits(t).block_elems == 256 ? RandomFloats(kk, rng) : norm_weight;
    const std::vector<uint8_t> w = RandomWeights(t, m, kk, rng);
    TensorView wv{t, {m, kk}, w.data()};
    absl::StatusOr<std::unique_ptr<PackedWeight>> packed = be_.PackWeight(wv);
    ASSERT_TRUE(packed.ok()) << packed.status();
    for (const bool use_packed : {false, true}) {
      if (use_packed && *packed == nullptr) continue;
      wv.packed = use_packed ? packed->get() : nullptr;
      for (const int64_t n : {1, 7}) {
        SCOPED_TRACE(absl::StrFormat("%s n=%d%s", DTypeName(t), n, use_packed ? " packed" : ""));
        const std::vector<float> x = RandomFloats(n * kk, rng);
        std::vector<float> xn_want(n * kk), y_want(n * m), xn(n * kk, NAN), y(n * m, NAN);
        be_.RmsNorm(x.data(), nw.data(), n, kk, 1e-5f, xn_want.data());
        ASSERT_TRUE(be_.MatMul(xn_want.data(), n, kk, wv, y_want.data()).ok());
        ASSERT_TRUE(be_.RmsNormMatMul(x.data(), nw.data(), n, kk, 1e-5f, wv, xn.data(), y.data()).ok());
        EXPECT_EQ(xn, xn_want);
        EXPECT_EQ(y, y_want);
        std::vector<float> in_place = x;
        std::fill(y.begin(), y.end(), NAN);
        ASSERT_TRUE(be_.RmsNormMatMul(in_place.data(), nw.data(), n, kk, 1e-5f, wv,
                                      in_place.data(), y.data()).ok());
        EXPECT_EQ(in_place, xn_want);
        EXPECT_EQ(y, y_want);
      }
    }
  }
  std::vector<float> x(32), y(4);
  const absl::Status s = be_.RmsNormMatMul(x.data(), x.data(), 1, 32, 1e-5f,
                                           TensorView{DType::kF32, {2, 16}, x.data()}, x.data(),
                                           y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(CpuBackendTest, MatMulRejectsWhatReferenceRejects) {
  std::vector<float> w(64), x(64), y(4);
  const absl::Status s = be_.MatMul(x.data(), 1, 32, TensorView{DType::kF32, {2, 16}, w.data()}, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("w.shape"), std::string::npos) << s.message();
}

TEST_P(CpuBackendTest, EmbeddingEqualsReference) {
  std::mt19937 rng(12);
  for (DType t : {DType::kQ8_0, DType::kQ4_1, DType::kF16, DType::kQ6_K}) {
    const int64_t dim = Traits(t).block_elems == 256 ? 512 : 576, vocab = 50;
    const std::vector<uint8_t> table = RandomWeights(t, vocab, dim, rng);
    const TensorView tv{t, {vocab, dim}, table.data()};
    const std::vector<int32_t> ids = {0, 49, 7, 7};
    std::vector<float> got(ids.size() * dim), want(ids.size() * dim);
    ASSERT_TRUE(be_.Embedding(tv, ids, got.data()).ok());
    ASSERT_TRUE(ref_.Embedding(tv, ids, want.data()).ok());
    EXPECT_EQ(got, want) << DTypeName(t);
  }
  std::vector<float> out(4);
  const std::vector<int32_t> bad = {-1};
  const absl::Status s = be_.Embedding(TensorView{DType::kF32, {2, 4}, out.data()}, bad, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("ids[0]=-1"), std::string::npos) << s.message();
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel * (1.0 + std::fabs(want[i]))) << "index " << i;
  }
}

// Elementwise ops: float32 evaluation of the same formulas; 1e-5 covers float rounding of
// a sum over ≤ 1536 squares and of expf/cos/sin (a few ulp each).
TEST_P(CpuBackendTest, RmsNormSiluMulAddMatchReference) {
  std::mt19937 rng(13);
  for (const auto& [n, dim] : std::vector<std::pair<int64_t, int64_t>>{{1, 576}, {7, 37}, {64, 576}}) {
    const auto x = RandomFloats(n * dim, rng), w = RandomFloats(dim, rng);
    std::vector<float> got = x, want(n * dim);
    be_.RmsNorm(got.data(), w.data(), n, dim, 1e-5f, got.data());  // aliased
    ref_.RmsNorm(x.data(), w.data(), n, dim, 1e-5f, want.data());
    ExpectNear(got, want, 1e-5);
  }
  for (int64_t count : {1, 1537, 70001}) {
    const auto g = RandomFloats(count, rng, 4.0f), u = RandomFloats(count, rng);
    std::vector<float> got(count), want(count);
    be_.SiluMul(g.data(), u.data(), count, got.data());
    ref_.SiluMul(g.data(), u.data(), count, want.data());
    ExpectNear(got, want, 1e-5);
    be_.Add(g.data(), u.data(), count, got.data());
    ref_.Add(g.data(), u.data(), count, want.data());
    EXPECT_EQ(got, want);  // one float addition: exact on both sides
  }
}

TEST_P(CpuBackendTest, RopeMatchesReference) {
  std::mt19937 rng(14);
  const int64_t heads = 9, head_dim = 64;
  std::vector<float> freq(32);
  for (int i = 0; i < 32; ++i) freq[i] = std::pow(100000.0f, -2.0f * i / 64);
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kHalves}) {
    for (int64_t rope_dim : {64, 32}) {
      const std::vector<int32_t> pos = {0, 1, 17, 4095, 3, 8, 100};
      const auto x = RandomFloats(7 * heads * head_dim, rng);
      std::vector<float> got = x, want = x;
      const RopeParams p{head_dim, rope_dim, freq.data(), 1.0f, style};
      be_.Rope(got.data(), 7, heads, pos, p);
      ref_.Rope(want.data(), 7, heads, pos, p);
      ExpectNear(got, want, 1e-5);
    }
  }
  // The backend keeps the last call's cos / sin for calls with the same positions and
  // parameters: a change of scale, of the frequencies (in place, same pointer) or of a
  // position must not reuse them.
  std::vector<int32_t> pos = {5, 6, 7};
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(round);
    if (round == 2) freq[3] *= 1.5f;
    if (round == 3) pos[1] = 60;
    const RopeParams p{head_dim, 64, freq.data(), round == 1 ? 0.7f : 1.0f,
                       RopeStyle::kHalves};
    const auto x = RandomFloats(3 * heads * head_dim, rng);
    std::vector<float> got = x, want = x;
    be_.Rope(got.data(), 3, heads, pos, p);
    ref_.Rope(want.data(), 3, heads, pos, p);
    ExpectNear(got, want, 1e-5);
  }
}

TEST_P(CpuBackendTest, SoftmaxMatchesReference) {
  std::mt19937 rng(15);
  for (const auto& [n, dim] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 17}, {2, 49152}}) {
    auto x = RandomFloats(n * dim, rng, 10.0f);
    x[0] = 500.0f;  // large logits must not overflow
    std::vector<float> got = x, want = x;
    be_.Softmax(got.data(), n, dim);
    ref_.Softmax(want.data(), n, dim);
    // Probabilities in [0, 1]: absolute 1e-6 plus relative 1e-5 for expf and the float sum.
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-6 + 1e-5 * want[i]) << "index " << i;
    }
  }
}

TEST_P(CpuBackendTest, AttentionMatchesReference) {
  std::mt19937 rng(16);
  // Head sizes with a register-resident kernel (32, 64, 96, 128) and one without (40).
  for (const auto& [kv_heads, head_dim] :
       std::vector<std::pair<int64_t, int64_t>>{{3, 64}, {1, 64}, {9, 64}, {3, 128}, {3, 96}, {1, 32}, {3, 40}}) {
    const AttentionParams p{9, kv_heads, head_dim, 0.125f};
    for (const auto& [n_tokens, cache_len] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 300}, {7, 20}, {13, 13}}) {
      std::vector<int32_t> pos(n_tokens);
      for (int64_t t = 0; t < n_tokens; ++t) pos[t] = static_cast<int32_t>(cache_len - n_tokens + t);
      const auto q = RandomFloats(n_tokens * p.num_heads * p.head_dim, rng);
      const auto k = RandomFloats(cache_len * kv_heads * p.head_dim, rng);
      const auto v = RandomFloats(cache_len * kv_heads * p.head_dim, rng);
      std::vector<float> got(q.size()), want(q.size());
      be_.Attention(q.data(), n_tokens, pos, k.data(), v.data(), cache_len, p, got.data());
      ref_.Attention(q.data(), n_tokens, pos, k.data(), v.data(), cache_len, p, want.data());
      ExpectNear(got, want, 1e-5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(IsasAndThreads, CpuBackendTest, ::testing::ValuesIn(AllConfigs()),
                         [](const ::testing::TestParamInfo<Config>& info) {
                           const bool portable =
                               info.param.kernels->packed_gemm == PackedGemmReference;
                           return absl::StrFormat("%s%s_%dthreads", info.param.kernels->isa,
                                                  portable ? "_portable_pack" : "",
                                                  info.param.threads);
                         });

// Threads split MatMul by weight rows and Attention by (token, head); every output element
// is computed the same way whoever computes it, so outputs are bit-identical across thread
// counts (generation with -t 1 and -t 2 must agree token for token).
TEST(CpuBackendThreadsTest, ResultsDoNotDependOnThreadCount) {
  std::mt19937 rng(21);
  CpuBackend one(1);
  CpuBackend two(2);
  CpuBackend three(3);
  for (DType t : kAllWeightTypes) {
    const bool k_quant = Traits(t).block_elems == 256;
    // (n, k, m): decode GEMVs (split into a few claims per thread, m not a multiple of the
    // 16-row tile), and a small batch that uses the 4-row kernel plus a remainder row.
    for (const auto& [n, k, m] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, k_quant ? 256 : 96, 1000}, {1, 512, 3001}, {5, 256, 333}}) {
      SCOPED_TRACE(absl::StrFormat("%s n=%d k=%d m=%d", DTypeName(t), n, k, m));
      const std::vector<uint8_t> w = RandomWeights(t, m, k, rng);
      const TensorView wv{t, {m, k}, w.data()};
      const std::vector<float> x = RandomFloats(n * k, rng);
      std::vector<float> y1(n * m, NAN), y2(n * m, NAN), y3(n * m, NAN);
      ASSERT_TRUE(one.MatMul(x.data(), n, k, wv, y1.data()).ok());
      ASSERT_TRUE(two.MatMul(x.data(), n, k, wv, y2.data()).ok());
      ASSERT_TRUE(three.MatMul(x.data(), n, k, wv, y3.data()).ok());
      ASSERT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)), 0);
      ASSERT_EQ(std::memcmp(y1.data(), y3.data(), y1.size() * sizeof(float)), 0);
    }
  }
  const AttentionParams p{9, 3, 64, 0.125f};
  for (const auto& [n_tokens, cache_len] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 129}, {6, 40}}) {
    std::vector<int32_t> pos(n_tokens);
    for (int64_t i = 0; i < n_tokens; ++i) pos[i] = static_cast<int32_t>(cache_len - n_tokens + i);
    const auto q = RandomFloats(n_tokens * p.num_heads * p.head_dim, rng);
    const auto k = RandomFloats(cache_len * p.num_kv_heads * p.head_dim, rng);
    const auto v = RandomFloats(cache_len * p.num_kv_heads * p.head_dim, rng);
    std::vector<float> o1(q.size(), NAN), o2(q.size(), NAN);
    one.Attention(q.data(), n_tokens, pos, k.data(), v.data(), cache_len, p, o1.data());
    two.Attention(q.data(), n_tokens, pos, k.data(), v.data(), cache_len, p, o2.data());
    EXPECT_EQ(std::memcmp(o1.data(), o2.data(), o1.size() * sizeof(float)), 0) << n_tokens;
  }
}

// In batch-invariant mode each row of a batched MatMul equals that row alone, bit for bit,
// for every dtype and ISA: deterministic mode (a request's tokens do not depend on its
// batch) rests on it.
TEST(CpuBackendBatchTest, BatchInvariantRowsDoNotDependOnTheBatch) {
  std::mt19937 rng(5);
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    CpuBackend be(2, kernels, /*batch_invariant=*/true);
    for (DType t : kAllWeightTypes) {
      SCOPED_TRACE(absl::StrFormat("%s on %s", DTypeName(t), kernels->isa));
      const int64_t k = Traits(t).block_elems == 256 ? 512 : 96, m = 70, n = 9;
      const std::vector<uint8_t> w = RandomWeights(t, m, k, rng);
      const TensorView wv{t, {m, k}, w.data()};
      const std::vector<float> x = RandomFloats(n * k, rng);
      std::vector<float> batched(n * m, NAN), alone(m, NAN);
      ASSERT_TRUE(be.MatMul(x.data(), n, k, wv, batched.data()).ok());
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(be.MatMul(x.data() + i * k, 1, k, wv, alone.data()).ok());
        ASSERT_EQ(std::memcmp(alone.data(), batched.data() + i * m, m * sizeof(float)), 0)
            << "row " << i;
      }
    }
  }
}

// The backend quantizes activations with each ISA's fast path; it must give QuantizeRow's
// bytes exactly (the MatMul tolerances above rely on it), ties and zero blocks included.
TEST(CpuFeaturesTest, FastActivationQuantizersEqualQuantizeRow) {
  std::mt19937 rng(17);
  std::vector<float> x = RandomFloats(1536, rng, 3.0f);
  // Block 1: amax 127 makes id = 1, so the halves below are exact ties.
  for (int j = 0; j < 32; ++j) x[32 + j] = (j % 2 ? -1.0f : 1.0f) * (0.5f + j);
  x[32] = 127.0f;
  for (int j = 0; j < 32; ++j) x[64 + j] = 0.0f;  // block 2: all zero
  for (int j = 512; j < 768; ++j) x[j] = 0.0f;     // Q8_K block 2: all zero
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    for (DType t : {DType::kQ8_0, DType::kQ8_1, DType::kQ8_K}) {
      const int64_t k = 1536;
      std::vector<uint8_t> want(static_cast<size_t>(*RowBytes(t, k)));
      std::vector<uint8_t> got(want.size(), 0xAB);
      ASSERT_TRUE(QuantizeRow(t, x.data(), want.data(), k).ok());
      const bool fast = kernels->quantize_act(t, x.data(), got.data(), k);
      // Every x86 table has all three; the generic one leaves them to QuantizeRow.
      EXPECT_EQ(fast, kernels->isa != "generic") << kernels->isa << " " << DTypeName(t);
      if (!fast) continue;
      EXPECT_EQ(got, want) << kernels->isa << " " << DTypeName(t);
    }
  }
}

// BF16 activations (the avx512bf16 table's, for BF16 weights) round exactly as QuantizeRow:
// ties to even, subnormals kept (vcvtneps2bf16 would flush them), NaN quiet, overflow to
// infinity, and a length off the 16-lane vectors.
TEST(CpuFeaturesTest, FastBf16ActivationsEqualQuantizeRow) {
  std::mt19937 rng(23);
  std::vector<float> x = RandomFloats(1543, rng, 3.0f);
  const float specials[] = {1.0f + std::ldexp(1.0f, -8),  // tie, rounds down to even
                            1.0f + 3 * std::ldexp(1.0f, -8),  // tie, rounds up to even
                            1e-40f, -3e-39f, std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::max(), -0.0f, 0.0f};
  for (size_t i = 0; i < std::size(specials); ++i) {
    x[3 * i] = specials[i];
    x[x.size() - 1 - i] = specials[i];  // in the scalar tail too
  }
  const int64_t k = static_cast<int64_t>(x.size());
  std::vector<uint16_t> want(x.size()), got(x.size(), 0xABCD);
  ASSERT_TRUE(QuantizeRow(DType::kBF16, x.data(), want.data(), k).ok());
  bool any = false;
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    if (kernels->activation_type(DType::kBF16) != DType::kBF16) continue;
    any = true;
    ASSERT_TRUE(kernels->quantize_act(DType::kBF16, x.data(), got.data(), k)) << kernels->isa;
    EXPECT_EQ(got, want) << kernels->isa;
  }
  if (!any) GTEST_SKIP() << "no kernel table here reads BF16 activations (needs AVX512_BF16)";
}

TEST(CpuFeaturesTest, GenericIsAlwaysSupportedAndBestIsSupported) {
  const std::vector<const CpuKernels*> all = SupportedCpuKernels();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front()->isa, "generic");
  EXPECT_EQ(&BestCpuKernels(), all.back());
  for (const CpuKernels* k : all) {
    EXPECT_TRUE(k->vec_dot && k->vec_dot4 && k->quantize_act && k->dot_f32 && k->axpy_f32 &&
                k->silu_mul && k->exp_sum)
        << "incomplete kernel table " << k->isa;
  }
}

}  // namespace
}  // namespace tessera
