// The "cpu-reference" backend against float64 implementations written here, and MatMul /
// Embedding over quantized weights against the gguf-py dequantization fixtures.
#include "kernels/cpu/reference_backend.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

using testing::RandomFloats;

// |got - want| <= 1e-5 * (1 + |want|): float32 outputs of double computations.
void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double tol = 1e-5) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << "index " << i;
  }
}

std::vector<double> MatMul64(const std::vector<float>& x, int64_t n, int64_t k,
                             const std::vector<float>& w, int64_t m) {
  std::vector<double> y(static_cast<size_t>(n * m));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < m; ++r) {
      double s = 0;
      for (int64_t j = 0; j < k; ++j) s += static_cast<double>(x[i * k + j]) * w[r * k + j];
      y[i * m + r] = s;
    }
  }
  return y;
}

TEST(ReferenceBackendTest, MatMulF32) {
  std::mt19937 rng(1);
  const int64_t n = 3, k = 40, m = 5;
  const auto x = RandomFloats(n * k, rng), w = RandomFloats(m * k, rng);
  ReferenceBackend be;
  std::vector<float> y(n * m);
  ASSERT_TRUE(be.MatMul(x.data(), n, k, TensorView{DType::kF32, {m, k}, w.data()}, y.data()).ok());
  ExpectClose(y, MatMul64(x, n, k, w, m));
}

// W's rows are the gguf-py fixture's raw blocks; the expected W values are its floats.
class ReferenceQuantMatMulTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceQuantMatMulTest, MatchesFixtureWeights) {
  const testing::KernelFixture f = testing::LoadKernelFixture("dequant_" + GetParam() + ".bin");
  const int64_t k = Traits(f.type).block_elems == 256 ? 256 : 128, m = f.n / k;
  ASSERT_GE(m, 2);
  const int64_t raw = *RowBytes(f.type, f.n);
  std::vector<float> w(static_cast<size_t>(f.n));
  std::memcpy(w.data(), f.payload.data() + raw, 4 * f.n);
  std::mt19937 rng(2);
  const int64_t n = 2;
  const auto x = RandomFloats(n * k, rng);
  ReferenceBackend be;
  std::vector<float> y(n * m);
  ASSERT_TRUE(be.MatMul(x.data(), n, k, TensorView{f.type, {m, k}, f.payload.data()}, y.data()).ok());
  ExpectClose(y, MatMul64(x, n, k, w, m), 1e-4);

  std::vector<float> rows(2 * k);
  const std::vector<int32_t> ids = {static_cast<int32_t>(m - 1), 0};
  ASSERT_TRUE(be.Embedding(TensorView{f.type, {m, k}, f.payload.data()}, ids, rows.data()).ok());
  for (int64_t j = 0; j < k; ++j) {
    EXPECT_EQ(rows[j], w[(m - 1) * k + j]);
    EXPECT_EQ(rows[k + j], w[j]);
  }
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, ReferenceQuantMatMulTest,
                         ::testing::Values("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k",
                                           "q4_k", "q5_k", "q6_k", "q8_k", "f16", "bf16"));

TEST(ReferenceBackendTest, MatMulRejectsBadShapes) {
  std::vector<float> w(64), x(64), y(4);
  ReferenceBackend be;
  absl::Status s = be.MatMul(x.data(), 1, 32, TensorView{DType::kF32, {2, 16}, w.data()}, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("w.shape"), std::string::npos) << s.message();
  s = be.MatMul(x.data(), 1, 16, TensorView{DType::kQ4_0, {2, 16}, w.data()}, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("block size"), std::string::npos) << s.message();
  s = be.MatMul(x.data(), 1, 16, TensorView{DType::kI32, {2, 16}, w.data()}, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("w.dtype"), std::string::npos) << s.message();
}

TEST(ReferenceBackendTest, EmbeddingRejectsOutOfRangeIds) {
  std::vector<float> table(8), out(4);
  ReferenceBackend be;
  const std::vector<int32_t> ids = {1, 2};
  const absl::Status s = be.Embedding(TensorView{DType::kF32, {2, 4}, table.data()}, ids, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("ids[1]=2"), std::string::npos) << s.message();
}

TEST(ReferenceBackendTest, RmsNorm) {
  std::mt19937 rng(3);
  const int64_t n = 3, dim = 37;
  const auto x = RandomFloats(n * dim, rng), w = RandomFloats(dim, rng);
  std::vector<double> want(n * dim);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < dim; ++j) ss += double(x[i * dim + j]) * x[i * dim + j];
    for (int64_t j = 0; j < dim; ++j) {
      want[i * dim + j] = x[i * dim + j] / std::sqrt(ss / dim + 1e-5) * w[j];
    }
  }
  ReferenceBackend be;
  std::vector<float> out = x;  // in place: out aliases x
  be.RmsNorm(out.data(), w.data(), n, dim, 1e-5f, out.data());
  ExpectClose(out, want);
}

// Rotation in the complex plane: (a + ib) * e^{i·pos·f} for the pair each style selects.
void Rope64(std::vector<double>& v, int64_t n_tokens, int64_t heads, const std::vector<int32_t>& pos,
            int64_t head_dim, int64_t rope_dim, const std::vector<float>& freq, double mscale,
            RopeStyle style) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      double* p = v.data() + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < rope_dim / 2; ++i) {
        const int64_t a = style == RopeStyle::kHalves ? i : 2 * i;
        const int64_t b = style == RopeStyle::kHalves ? i + rope_dim / 2 : 2 * i + 1;
        const double th = pos[t] * double(freq[i]);
        const double re = p[a] * std::cos(th) - p[b] * std::sin(th);
        const double im = p[a] * std::sin(th) + p[b] * std::cos(th);
        p[a] = re * mscale;
        p[b] = im * mscale;
      }
    }
  }
}

TEST(ReferenceBackendTest, RopeBothStylesWithPartialRotation) {
  std::mt19937 rng(4);
  const int64_t n_tokens = 3, heads = 2, head_dim = 12, rope_dim = 8;
  std::vector<float> freq(rope_dim / 2);
  for (int64_t i = 0; i < rope_dim / 2; ++i) freq[i] = std::pow(10000.0f, -2.0f * i / rope_dim);
  const std::vector<int32_t> pos = {0, 5, 1000};
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kHalves}) {
    const auto x = RandomFloats(n_tokens * heads * head_dim, rng);
    std::vector<double> want(x.begin(), x.end());
    Rope64(want, n_tokens, heads, pos, head_dim, rope_dim, freq, 0.9, style);
    std::vector<float> got = x;
    ReferenceBackend be;
    be.Rope(got.data(), n_tokens, heads, pos,
            RopeParams{head_dim, rope_dim, freq.data(), 0.9f, style});
    ExpectClose(got, want);
    // Dimensions past rope_dim are untouched.
    for (int64_t t = 0; t < n_tokens * heads; ++t) {
      for (int64_t e = rope_dim; e < head_dim; ++e) {
        EXPECT_EQ(got[t * head_dim + e], x[t * head_dim + e]);
      }
    }
  }
}

TEST(ReferenceBackendTest, SiluMulAndAdd) {
  std::mt19937 rng(5);
  const auto g = RandomFloats(100, rng, 4.0f), u = RandomFloats(100, rng);
  std::vector<double> want_silu(100), want_add(100);
  for (int i = 0; i < 100; ++i) {
    want_silu[i] = double(g[i]) / (1 + std::exp(-double(g[i]))) * u[i];
    want_add[i] = double(g[i]) + u[i];
  }
  ReferenceBackend be;
  std::vector<float> out(100);
  be.SiluMul(g.data(), u.data(), 100, out.data());
  ExpectClose(out, want_silu);
  be.Add(g.data(), u.data(), 100, out.data());
  ExpectClose(out, want_add);
  // SwiGluRows: two rows of [gate (25) | up (25)] in g, each row's halves through SiluMul.
  std::vector<double> want_rows(50);
  for (int i = 0; i < 4 * 25 / 2; ++i) {
    const int row = i / 25, col = i % 25;
    const double gate = g[row * 50 + col], up = g[row * 50 + 25 + col];
    want_rows[i] = gate / (1 + std::exp(-gate)) * up;
  }
  std::vector<float> rows_out(50);
  be.SwiGluRows(g.data(), 2, 25, rows_out.data());
  ExpectClose(rows_out, want_rows);
}

TEST(ReferenceBackendTest, SoftmaxIsStableForLargeLogits) {
  std::vector<float> x = {1000.0f, 1001.0f, 999.0f, -1000.0f};
  const double e0 = std::exp(-1.0), e2 = std::exp(-2.0);
  const double z = e0 + 1 + e2;
  ReferenceBackend be;
  be.Softmax(x.data(), 1, 4);
  ExpectClose(x, {e0 / z, 1 / z, e2 / z, 0.0});
}

// Causal GQA attention in float64.
std::vector<double> Attention64(const std::vector<float>& q, int64_t n_tokens,
                                const std::vector<int32_t>& pos, const std::vector<float>& k,
                                const std::vector<float>& v, const AttentionParams& p) {
  const int64_t d = p.head_dim, group = p.num_heads / p.num_kv_heads;
  std::vector<double> out(q.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < p.num_heads; ++h) {
      const int64_t kvh = h / group;
      std::vector<double> s(pos[t] + 1);
      double mx = -1e300;
      for (int64_t j = 0; j <= pos[t]; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e) {
          dot += double(q[(t * p.num_heads + h) * d + e]) * k[(j * p.num_kv_heads + kvh) * d + e];
        }
        s[j] = dot * p.scale;
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (double& x : s) z += (x = std::exp(x - mx));
      for (int64_t e = 0; e < d; ++e) {
        double acc = 0;
        for (int64_t j = 0; j <= pos[t]; ++j) acc += s[j] * v[(j * p.num_kv_heads + kvh) * d + e];
        out[(t * p.num_heads + h) * d + e] = acc / z;
      }
    }
  }
  return out;
}

// The default TopKRows: each row's TopKOfRow at its k and temperature (checked against a
// brute-force count here), k = 0 skipped, and bad arguments refused with their names.
TEST(ReferenceBackendTest, TopKRowsPerRowKAndTemperature) {
  ReferenceBackend b;
  const std::vector<float> x = {0.5f, 2.0f, 2.0f, -1.0f, 1.0f,   // row 0
                                3.0f, -2.0f, 0.0f, 3.0f, 3.0f};  // row 1
  const std::vector<int32_t> k = {2, 1};
  const std::vector<float> t = {0.5f, 1.0f};
  std::vector<int32_t> ids(6, -1), counts(2);
  std::vector<float> values(6);
  ASSERT_TRUE(b.TopKRows(x.data(), 2, 5, k, t, 3, ids.data(), values.data(), counts.data()).ok());
  EXPECT_EQ(counts, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 2), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(std::vector<float>(values.begin(), values.begin() + 2),
            (std::vector<float>{2.0f, 2.0f}));  // raw, not divided
  EXPECT_EQ(std::vector<int32_t>(ids.begin() + 3, ids.end()), (std::vector<int32_t>{0, 3, 4}));
  const std::vector<int32_t> skip = {0, 2};
  ASSERT_TRUE(b.TopKRows(x.data(), 2, 5, skip, t, 3, ids.data(), values.data(), counts.data()).ok());
  EXPECT_EQ(counts, (std::vector<int32_t>{0, 3}));
  const std::vector<float> zero = {1.0f, 0.0f};
  absl::Status bad = b.TopKRows(x.data(), 2, 5, k, zero, 3, ids.data(), values.data(), counts.data());
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("temperature[1]"), std::string::npos) << bad;
  bad = b.TopKRows(x.data(), 2, 5, std::span<const int32_t>(k).first(1), t, 3, ids.data(),
                   values.data(), counts.data());
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
}

// The default SampleRows: DrawFromRow over each row divided by its temperature (and the
// drawn token's undivided logit), u < 0 skipped, bad arguments refused with their names.
TEST(ReferenceBackendTest, SampleRowsDrawsFromTheDividedRows) {
  ReferenceBackend b;
  const std::vector<float> x = {0.0f, 1.0f, 3.0f, -INFINITY,  // row 0
                                -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  for (const double u : {0.0, 0.3, 0.9, 0.999999}) {
    const std::vector<float> t = {0.5f, 1.0f};
    const std::vector<double> us = {u, 0.5};
    std::vector<int32_t> tokens(2, 7);
    std::vector<float> logits(2, 0.5f);
    ASSERT_TRUE(b.SampleRows(x.data(), 2, 4, t, us, tokens.data(), logits.data()).ok());
    const std::vector<float> scaled = {0.0f, 2.0f, 6.0f, -INFINITY};
    EXPECT_EQ(tokens[0], DrawFromRow(scaled, u)) << u;
    EXPECT_EQ(logits[0], x[static_cast<size_t>(tokens[0])]) << u;
    EXPECT_EQ(tokens[1], -1) << "no finite value";
    EXPECT_EQ(logits[1], 0.5f) << "untouched without a token";
  }
  std::vector<int32_t> tokens(2, 7);
  const std::vector<float> t = {1.0f, 1.0f};
  ASSERT_TRUE(
      b.SampleRows(x.data(), 2, 4, t, std::vector<double>{-1.0, -1.0}, tokens.data(), nullptr)
          .ok());
  EXPECT_EQ(tokens, (std::vector<int32_t>{-1, -1}));
  absl::Status bad =
      b.SampleRows(x.data(), 2, 4, t, std::vector<double>{0.5, 1.0}, tokens.data(), nullptr);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("u[1]"), std::string::npos) << bad;
  bad = b.SampleRows(x.data(), 2, 4, std::vector<float>{1.0f}, std::vector<double>{0.5, 0.5},
                     tokens.data(), nullptr);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
}

// The default EditLogits: each edit's steps in order (bias, repetition, frequency and
// presence, n-gram ban, late bias, end ban) on its own logit, values worked out by hand,
// and the values they replaced;
// edits out of order, repeated or outside x refused with their index, x unchanged.
TEST(ReferenceBackendTest, EditLogitsAppliesEachStepInOrder) {
  ReferenceBackend b;
  std::vector<float> x = {2.0f, -3.0f, 0.5f, 1.0f,   // row 0
                          4.0f, 0.0f, -1.5f, 8.0f};  // row 1
  const auto edit = [](int32_t row, int32_t token, uint32_t steps) {
    return LogitEdit{.row = row, .token = token, .steps = steps, .bias = 1.0f, .penalty = 2.0f,
                     .late_bias = -1.0f, .frequency = 0.5, .presence = 0.25};
  };

  const std::vector<LogitEdit> edits = {
      edit(0, 0, kEditBias | kEditRepetition),               // (2 + 1) / 2
      edit(0, 1, kEditRepetition | kEditFrequencyPresence),  // -3 * 2 - 0.5 - 0.25
      edit(0, 3, kEditNgramBan | kEditLateBias),             // -inf
      edit(1, 2, kEditLateBias),                             // -1.5 - 1
      edit(1, 3, kEditBias | kEditEndBan),                   // -inf
  };
  std::vector<float> previous(edits.size(), NAN);
  ASSERT_TRUE(b.EditLogits(x.data(), 2, 4, edits, previous.data()).ok());
  EXPECT_EQ(x, (std::vector<float>{1.5f, -6.75f, 0.5f, -INFINITY, 4.0f, 0.0f, -2.5f, -INFINITY}));
  EXPECT_EQ(previous, (std::vector<float>{2.0f, -3.0f, 1.0f, -1.5f, 8.0f}));
  const std::vector<float> before = x;
  for (const auto& [bad_edits, index] :
       {std::pair{std::vector<LogitEdit>{edit(0, 2, kEditBias), edit(0, 1, kEditBias)}, 1},
        std::pair{std::vector<LogitEdit>{edit(1, 0, kEditBias), edit(0, 3, kEditBias)}, 1},
        std::pair{std::vector<LogitEdit>{edit(0, 1, kEditBias), edit(0, 1, kEditBias)}, 1},
        std::pair{std::vector<LogitEdit>{edit(0, 4, kEditBias)}, 0},
        std::pair{std::vector<LogitEdit>{edit(0, 0, kEditBias), edit(2, 0, kEditBias)}, 1},
        std::pair{std::vector<LogitEdit>{edit(0, -1, kEditBias)}, 0}}) {
    const absl::Status bad = b.EditLogits(x.data(), 2, 4, bad_edits, nullptr);
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bad.message().find("edits[" + std::to_string(index) + "]"), std::string::npos)
        << bad;
  }
  EXPECT_EQ(x, before);
}

// The default SoftmaxDenominators: Σ exp(x / T - max) per row in float64, rows at
// temperature 0 skipped, -inf rows 0, NaN weighing nothing.
TEST(ReferenceBackendTest, SoftmaxDenominatorsPerRowTemperature) {
  ReferenceBackend b;
  const std::vector<float> x = {0.0f, 1.0f, 2.0f,           // row 0
                                -INFINITY, -INFINITY, -INFINITY,  // row 1
                                1.0f, NAN, 3.0f,            // row 2
                                5.0f, 5.0f, 5.0f};          // row 3
  const std::vector<float> t = {0.5f, 1.0f, 1.0f, 0.0f};
  std::vector<double> sums(4, -1.0);
  ASSERT_TRUE(b.SoftmaxDenominators(x.data(), 4, 3, t, sums.data()).ok());
  EXPECT_DOUBLE_EQ(sums[0], std::exp(-4.0) + std::exp(-2.0) + 1.0);
  EXPECT_EQ(sums[1], 0.0);
  EXPECT_DOUBLE_EQ(sums[2], std::exp(-2.0) + 1.0);
  EXPECT_EQ(sums[3], 0.0);
  EXPECT_EQ(b.SoftmaxDenominators(x.data(), 4, 3, std::vector<float>{1.0f}, sums.data()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReferenceBackendTest, AttentionGqaAndMqaAreCausal) {
  std::mt19937 rng(6);
  for (int64_t kv_heads : {3, 1, 6}) {  // GQA, MQA, MHA
    const AttentionParams p{6, kv_heads, 8, 1.0f / std::sqrt(8.0f)};
    const int64_t cache_len = 9, n_tokens = 4;
    const std::vector<int32_t> pos = {5, 6, 7, 8};
    const auto q = RandomFloats(n_tokens * p.num_heads * p.head_dim, rng, 2.0f);
    auto k = RandomFloats(cache_len * kv_heads * p.head_dim, rng, 2.0f);
    const auto v = RandomFloats(cache_len * kv_heads * p.head_dim, rng);
    ReferenceBackend be;
    std::vector<float> out(q.size());
    be.Attention(q.data(), n_tokens, pos, k.data(), v.data(), cache_len, p, out.data());
    ExpectClose(out, Attention64(q, n_tokens, pos, k, v, p));
    // Causality: changing the last cache row changes only the query at position 8.
    for (int64_t e = 0; e < kv_heads * p.head_dim; ++e) k[(cache_len - 1) * kv_heads * p.head_dim + e] += 5.0f;
    std::vector<float> out2(q.size());
    be.Attention(q.data(), n_tokens, pos, k.data(), v.data(), cache_len, p, out2.data());
    const int64_t per_token = p.num_heads * p.head_dim;
    for (int64_t i = 0; i < 3 * per_token; ++i) EXPECT_EQ(out[i], out2[i]);
  }
}

}  // namespace
}  // namespace tessera
