// PagedAttention / WriteKv / CopyBlocks of "cpu-reference" and "cpu" (kernels/ops.h).
//
// Scenarios: several sequences whose blocks are drawn from a shuffled pool (so tables are
// non-contiguous and out of order), block sizes 1, 16 and 32, GQA ratios 1, 3 and 9:3
// (SmolLM2-135M), a prefill from position 0, a prefill chunk starting mid-sequence, decodes
// (n_q = 1) including a context of 300 (several of the cpu backend's 128-position chunks)
// and a context of 1, context lengths that are not multiples of the block size, and a
// sliding window; float and half caches.
//
// A half (kF16) cache runs the same scenarios: WriteKv rounds K and V to IEEE half, so the
// reference must equal float64 attention over the rounded K/V (same tolerance), and the cpu
// backend must match the reference as for float.
//
// Tolerances:
//   * reference vs a float64 implementation here: 1e-5·(1 + |want|) (float outputs of
//     double computations, as in reference_backend_test.cc).
//   * reference paged vs reference contiguous Attention on the same data: both accumulate in
//     double in the same order, so 1e-6·(1 + |want|).
//   * cpu vs reference: the cpu backend accumulates scores in float. A score's error is at
//     most about d·2^-24·scale·Σ|q_e·k_e| (≈ 2e-5 for d = 64 and the unit-normal data here,
//     typically 50x smaller); that perturbs the softmax weights by the same relative amount,
//     and the output is their convex combination of V rows (|v| ≲ 5). 5e-5·(1 + |want|) is
//     well above that (the largest error seen here is below 5e-6) and far below the O(0.1)
//     error of reading one wrong row; scaling every score by 1.0001 already fails it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/half.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/reference_backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

using testing::RandomFloats;

struct SeqSpec {
  int64_t context_len;
  int64_t num_queries;  // the last num_queries positions of the context
};

// A batch over a paged cache filled through WriteKv, plus the same K/V laid out
// contiguously per sequence.
struct Scenario {
  PagedKvLayout layout;
  PagedAttentionParams params;
  std::vector<std::vector<int32_t>> tables;
  std::vector<PagedSequence> seqs;
  std::vector<int32_t> positions;  // query rows
  std::vector<float> q;            // [rows, H, d]
  std::vector<std::vector<float>> k, v;  // per sequence [ctx, KVH, d]
  std::vector<float> k_pool, v_pool;         // a kF32 cache
  std::vector<uint16_t> k_half, v_half;      // a kF16 cache
  KvPool pool() {
    if (layout.dtype == DType::kF16) return {k_half.data(), v_half.data()};
    return {k_pool.data(), v_pool.data()};
  }
  int64_t rows() const { return static_cast<int64_t>(positions.size()); }
};

Scenario MakeScenario(int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim,
                      const std::vector<SeqSpec>& specs, uint32_t seed, Backend& writer,
                      float q_stddev = 1.0f, int64_t window = 0,
                      DType kv_dtype = DType::kF32) {
  std::mt19937 rng(seed);
  Scenario s;
  int64_t needed = 0;
  for (const SeqSpec& sp : specs) needed += (sp.context_len + block_size - 1) / block_size;
  s.layout = {.num_blocks = needed + 5, .block_size = block_size, .num_kv_heads = kv_heads,
              .head_dim = head_dim, .dtype = kv_dtype};
  s.params = {.num_heads = heads, .num_kv_heads = kv_heads, .head_dim = head_dim,
              .scale = 1.0f / std::sqrt(static_cast<float>(head_dim)),
              .sliding_window = window};
  std::vector<int32_t> free(static_cast<size_t>(s.layout.num_blocks));
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), rng);
  // Unwritten slots hold NaN.
  if (kv_dtype == DType::kF16) {
    s.k_half.assign(static_cast<size_t>(s.layout.pool_elems()), 0x7e00);
    s.v_half.assign(static_cast<size_t>(s.layout.pool_elems()), 0x7e00);
  } else {
    s.k_pool.assign(static_cast<size_t>(s.layout.pool_elems()), NAN);
    s.v_pool.assign(static_cast<size_t>(s.layout.pool_elems()), NAN);
  }
  size_t next_free = 0;
  for (const SeqSpec& sp : specs) {
    // One spare table entry past the context: never read.
    const int64_t nb = (sp.context_len + block_size - 1) / block_size;
    std::vector<int32_t> table(free.begin() + next_free, free.begin() + next_free + nb);
    next_free += nb;
    table.push_back(static_cast<int32_t>(free[next_free]));
    s.tables.push_back(table);
    s.k.push_back(RandomFloats(sp.context_len * kv_heads * head_dim, rng));
    s.v.push_back(RandomFloats(sp.context_len * kv_heads * head_dim, rng));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    // Write the whole context of sequence i through the slot mapping.
    std::vector<int32_t> pos(static_cast<size_t>(specs[i].context_len));
    std::iota(pos.begin(), pos.end(), 0);
    const PagedSequence all{0, specs[i].context_len, specs[i].context_len, s.tables[i]};
    std::vector<int32_t> slots;
    EXPECT_TRUE(ComputeSlotMapping({&all, 1}, pos, s.layout, &slots).ok());
    EXPECT_TRUE(writer.WriteKv(s.k[i].data(), s.v[i].data(), slots, s.layout, s.pool()).ok());
    s.seqs.push_back({s.rows(), specs[i].num_queries, specs[i].context_len, s.tables[i]});
    for (int64_t j = specs[i].context_len - specs[i].num_queries; j < specs[i].context_len; ++j) {
      s.positions.push_back(static_cast<int32_t>(j));
    }
  }
  s.q = RandomFloats(s.rows() * heads * head_dim, rng, q_stddev);
  if (kv_dtype == DType::kF16) {
    // What the cache holds: the float64 attention below reads these.
    for (auto* rows : {&s.k, &s.v}) {
      for (std::vector<float>& seq : *rows) {
        for (float& x : seq) x = Fp16ToFloat(FloatToFp16(x));
      }
    }
  }
  return s;
}

// Float64 attention of each query row over its sequence's contiguous K/V.
std::vector<double> Attention64(const Scenario& s) {
  const PagedAttentionParams& p = s.params;
  const int64_t d = p.head_dim, group = p.num_heads / p.num_kv_heads;
  std::vector<double> out(s.q.size(), 0.0);
  for (size_t si = 0; si < s.seqs.size(); ++si) {
    const PagedSequence& seq = s.seqs[si];
    for (int64_t t = seq.query_start; t < seq.query_start + seq.num_queries; ++t) {
      const int64_t hi = s.positions[t];
      const int64_t lo = p.sliding_window > 0 ? std::max<int64_t>(0, hi - p.sliding_window + 1) : 0;
      for (int64_t h = 0; h < p.num_heads; ++h) {
        const float* qh = s.q.data() + (t * p.num_heads + h) * d;
        std::vector<double> w;
        double mx = -INFINITY;
        for (int64_t j = lo; j <= hi; ++j) {
          const float* kj = s.k[si].data() + (j * p.num_kv_heads + h / group) * d;
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) dot += static_cast<double>(qh[e]) * kj[e];
          w.push_back(dot * static_cast<double>(p.scale));
          mx = std::max(mx, w.back());
        }
        double sum = 0;
        for (double& x : w) sum += (x = std::exp(x - mx));
        for (int64_t j = lo; j <= hi; ++j) {
          const float* vj = s.v[si].data() + (j * p.num_kv_heads + h / group) * d;
          for (int64_t e = 0; e < d; ++e) {
            out[(t * p.num_heads + h) * d + e] += w[j - lo] / sum * vj[e];
          }
        }
      }
    }
  }
  return out;
}

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  testing::ExpectAllClose(got, want, tol);
}

std::vector<double> ToDouble(const std::vector<float>& x) { return {x.begin(), x.end()}; }

struct Shape {
  int64_t block_size, heads, kv_heads, head_dim;
};
void PrintTo(const Shape& s, std::ostream* os) {
  *os << "bs" << s.block_size << "_H" << s.heads << "_KVH" << s.kv_heads << "_d" << s.head_dim;
}

// Prefill from 0, a mid-sequence chunk, long and short decodes; none a multiple of 16.
const std::vector<SeqSpec> kMixedBatch = {{37, 37}, {50, 13}, {300, 1}, {1, 1}, {17, 1}};

class PagedAttentionShapeTest : public ::testing::TestWithParam<Shape> {
 protected:
  Scenario Make(uint32_t seed, int64_t window = 0, float q_stddev = 1.0f,
                DType kv_dtype = DType::kF32) {
    const Shape& sh = GetParam();
    return MakeScenario(sh.block_size, sh.heads, sh.kv_heads, sh.head_dim, kMixedBatch, seed,
                        ref_, q_stddev, window, kv_dtype);
  }
  std::vector<float> RunPaged(Backend& be, Scenario& s) {
    std::vector<float> out(s.q.size(), NAN);
    const absl::Status st = be.PagedAttention(s.q.data(), s.rows(), s.positions, s.seqs,
                                              s.layout, s.pool(), s.params, out.data());
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }
  ReferenceBackend ref_;
};

TEST_P(PagedAttentionShapeTest, ReferenceMatchesContiguousAttentionAndFloat64) {
  Scenario s = Make(1);
  const std::vector<float> paged = RunPaged(ref_, s);
  ExpectClose(paged, Attention64(s), 1e-5);
  // The existing contiguous op, one sequence at a time on the unpaged copy of its K/V.
  const AttentionParams ap{s.params.num_heads, s.params.num_kv_heads, s.params.head_dim,
                           s.params.scale};
  const int64_t row = s.params.num_heads * s.params.head_dim;
  for (size_t i = 0; i < s.seqs.size(); ++i) {
    const PagedSequence& seq = s.seqs[i];
    std::vector<float> contiguous(static_cast<size_t>(seq.num_queries * row), NAN);
    ref_.Attention(s.q.data() + seq.query_start * row, seq.num_queries,
                   std::span(s.positions).subspan(seq.query_start, seq.num_queries),
                   s.k[i].data(), s.v[i].data(), seq.context_len, ap, contiguous.data());
    const std::vector<float> got(paged.begin() + seq.query_start * row,
                                 paged.begin() + (seq.query_start + seq.num_queries) * row);
    SCOPED_TRACE(absl::StrFormat("sequence %d", i));
    ExpectClose(got, ToDouble(contiguous), 1e-6);
  }
}

TEST_P(PagedAttentionShapeTest, SlidingWindowMatchesFloat64) {
  for (int64_t window : {1, 7, 32}) {
    SCOPED_TRACE(absl::StrFormat("window %d", window));
    Scenario s = Make(2, window);
    ExpectClose(RunPaged(ref_, s), Attention64(s), 1e-5);
    // A window wider than every context changes nothing.
    Scenario wide = Make(2, 1000);
    Scenario full = Make(2, 0);
    ExpectClose(RunPaged(ref_, wide), ToDouble(RunPaged(ref_, full)), 0.0);
  }
}

TEST_P(PagedAttentionShapeTest, CpuMatchesReferenceOnEveryIsaAndThreadCount) {
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    for (int threads : {1, 2, 3}) {
      CpuBackend cpu(threads, kernels);
      for (int64_t window : {0, 7}) {
        // q_stddev 4 makes the softmax peaky, so the online max changes late in the context.
        for (float q_stddev : {1.0f, 4.0f}) {
          SCOPED_TRACE(absl::StrFormat("%s x%d window %d q_stddev %g", kernels->isa, threads,
                                       window, q_stddev));
          Scenario s = Make(3, window, q_stddev);
          ExpectClose(RunPaged(cpu, s), ToDouble(RunPaged(ref_, s)), 5e-5);
        }
      }
    }
  }
}

TEST_P(PagedAttentionShapeTest, HalfCacheMatchesFloat64OverTheRoundedKv) {
  for (int64_t window : {0, 7}) {
    SCOPED_TRACE(absl::StrFormat("window %d", window));
    Scenario s = Make(5, window, 1.0f, DType::kF16);
    ExpectClose(RunPaged(ref_, s), Attention64(s), 1e-5);
  }
}

TEST_P(PagedAttentionShapeTest, CpuHalfCacheMatchesReferenceOnEveryIsaAndThreadCount) {
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    for (int threads : {1, 3}) {
      CpuBackend cpu(threads, kernels);
      for (int64_t window : {0, 7}) {
        for (float q_stddev : {1.0f, 4.0f}) {
          SCOPED_TRACE(absl::StrFormat("%s x%d window %d q_stddev %g", kernels->isa, threads,
                                       window, q_stddev));
          // Written by the cpu backend itself: its WriteKv rounds as the reference's does.
          Scenario s = MakeScenario(GetParam().block_size, GetParam().heads,
                                    GetParam().kv_heads, GetParam().head_dim, kMixedBatch, 6,
                                    cpu, q_stddev, window, DType::kF16);
          ExpectClose(RunPaged(cpu, s), ToDouble(RunPaged(ref_, s)), 5e-5);
        }
      }
    }
  }
}

// The cpu backend gives each work item several KV heads, one GQA group or a part of one,
// depending on how many items the batch has per thread, and splits the positions of a decode
// of few sequences into chunks merged afterwards (split-K): one long decode, three decodes
// of different lengths (with and without split-K by thread count), one prefill and the mixed
// batch on 1 to 8 threads take every one of those ways.
TEST_P(PagedAttentionShapeTest, CpuMatchesReferenceHoweverItSplitsTheWork) {
  const Shape& sh = GetParam();
  const std::vector<std::vector<SeqSpec>> batches = {
      {{300, 1}}, {{300, 1}, {129, 1}, {5, 1}}, {{37, 37}}, kMixedBatch};
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    for (int threads : {1, 2, 4, 8}) {
      CpuBackend cpu(threads, kernels);
      for (size_t b = 0; b < batches.size(); ++b) {
        for (DType kv : {DType::kF32, DType::kF16}) {
          SCOPED_TRACE(absl::StrFormat("%s x%d batch %d %s", kernels->isa, threads, b,
                                       DTypeName(kv)));
          Scenario s = MakeScenario(sh.block_size, sh.heads, sh.kv_heads, sh.head_dim,
                                    batches[b], 8, ref_, 2.0f, 0, kv);
          ExpectClose(RunPaged(cpu, s), ToDouble(RunPaged(ref_, s)), 5e-5);
        }
      }
    }
  }
}

// Batch invariance (batch-invariant mode): a query row's output does not depend on the rows
// sharing its tile, with or without a sliding window (the chunks start at fixed positions),
// nor on being decoded alone (no split-K then), so each row of a prefill equals the same row
// computed alone, bit for bit.
TEST_P(PagedAttentionShapeTest, CpuRowsEqualThemselvesAloneBitForBit) {
  const Shape& sh = GetParam();
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    CpuBackend cpu(2, kernels, /*batch_invariant=*/true);
    for (int64_t window : {0, 7, 200}) {
      SCOPED_TRACE(absl::StrFormat("%s window %d", kernels->isa, window));
      Scenario s = MakeScenario(sh.block_size, sh.heads, sh.kv_heads, sh.head_dim, {{300, 37}}, 9,
                                ref_, 2.0f, window, DType::kF16);
      const std::vector<float> all = RunPaged(cpu, s);
      const int64_t row = sh.heads * sh.head_dim;
      for (int64_t t : {0, 5, 36}) {
        const PagedSequence one{0, 1, s.seqs[0].context_len, s.seqs[0].block_table};
        const std::vector<int32_t> position = {s.positions[t]};
        std::vector<float> alone(static_cast<size_t>(row), NAN);
        ASSERT_TRUE(cpu.PagedAttention(s.q.data() + t * row, 1, position, {&one, 1}, s.layout,
                                       s.pool(), s.params, alone.data())
                        .ok());
        EXPECT_EQ(std::memcmp(alone.data(), all.data() + t * row, row * sizeof(float)), 0)
            << "row " << t;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionShapeTest,
                         ::testing::Values(Shape{1, 4, 4, 16}, Shape{16, 4, 4, 16},
                                           Shape{32, 4, 4, 16}, Shape{1, 6, 2, 32},
                                           Shape{16, 6, 2, 32}, Shape{32, 6, 2, 32},
                                           Shape{1, 9, 3, 64}, Shape{16, 9, 3, 64},
                                           Shape{32, 9, 3, 64}, Shape{16, 8, 1, 24}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           const Shape& s = info.param;
                           return absl::StrFormat("bs%d_H%d_KVH%d_d%d", s.block_size, s.heads,
                                                  s.kv_heads, s.head_dim);
                         });

// Both backends, for the ops whose results are exact copies.
std::vector<std::unique_ptr<Backend>> AllBackends() {
  std::vector<std::unique_ptr<Backend>> out;
  out.push_back(std::make_unique<ReferenceBackend>());
  for (const CpuKernels* k : SupportedCpuKernels()) out.push_back(std::make_unique<CpuBackend>(2, k));
  return out;
}

TEST(PagedKvOpsTest, RowsOutsideEverySequenceAreLeftUnchanged) {
  for (auto& be : AllBackends()) {
    SCOPED_TRACE(std::string(be->name()));
    ReferenceBackend writer;
    Scenario s = MakeScenario(4, 2, 1, 8, {{9, 2}, {5, 1}}, 4, writer);
    // Three rows; row 1 (padding) belongs to no sequence.
    s.positions.insert(s.positions.begin() + 2, 0);
    s.q.insert(s.q.begin() + 2 * 16, 16, 0.5f);
    s.seqs[1].query_start = 3;
    std::vector<float> out(s.q.size(), 7.0f);
    ASSERT_TRUE(be->PagedAttention(s.q.data(), s.rows(), s.positions, s.seqs, s.layout,
                                   s.pool(), s.params, out.data())
                    .ok());
    for (int e = 0; e < 16; ++e) EXPECT_EQ(out[2 * 16 + e], 7.0f);
    EXPECT_FALSE(std::isnan(out[0]));
    EXPECT_NE(out[3 * 16], 7.0f);
  }
}

TEST(PagedKvOpsTest, WriteKvScattersRowsToSlotsAndSkipsPadding) {
  const PagedKvLayout layout{.num_blocks = 6, .block_size = 3, .num_kv_heads = 2, .head_dim = 4};
  const int64_t row = layout.token_elems();
  std::mt19937 rng(5);
  for (auto& be : AllBackends()) {
    SCOPED_TRACE(std::string(be->name()));
    std::vector<float> kp(layout.pool_elems(), -1.0f), vp(layout.pool_elems(), -2.0f);
    const std::vector<int32_t> slots = {17, 0, kPaddingSlot, 9, 4};
    const std::vector<float> k = RandomFloats(5 * row, rng), v = RandomFloats(5 * row, rng);
    ASSERT_TRUE(be->WriteKv(k.data(), v.data(), slots, layout, {kp.data(), vp.data()}).ok());
    std::vector<float> want_k(layout.pool_elems(), -1.0f), want_v(layout.pool_elems(), -2.0f);
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i] < 0) continue;
      std::copy_n(k.begin() + i * row, row, want_k.begin() + slots[i] * row);
      std::copy_n(v.begin() + i * row, row, want_v.begin() + slots[i] * row);
    }
    EXPECT_EQ(kp, want_k);
    EXPECT_EQ(vp, want_v);
  }
}

// A half cache: every backend stores FloatToFp16 of each element (ties to even, subnormals,
// overflow to infinity), so their caches are the same bits.
TEST(PagedKvOpsTest, WriteKvToAHalfCacheRoundsLikeFloatToFp16) {
  const PagedKvLayout layout{.num_blocks = 4, .block_size = 3, .num_kv_heads = 3, .head_dim = 5,
                             .dtype = DType::kF16};
  const int64_t row = layout.token_elems();  // 15: the SIMD conversion's tail runs too
  std::mt19937 rng(15);
  std::vector<float> k = RandomFloats(4 * row, rng, 100.0f), v = RandomFloats(4 * row, rng);
  // Edge values: ties (1 + 2^-11 rounds to 1, 1 + 3*2^-11 up), a subnormal half, the largest
  // half, a value that overflows, zero of both signs.
  const float edges[] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 3e-6f, 65504.0f, 1e6f,
                         -0.0f, 0.0f, -2.5e-7f, 65519.0f, 65520.0f};
  std::copy(std::begin(edges), std::end(edges), k.begin());
  const std::vector<int32_t> slots = {11, kPaddingSlot, 0, 5};
  for (auto& be : AllBackends()) {
    SCOPED_TRACE(std::string(be->name()));
    std::vector<uint16_t> kp(layout.pool_elems(), 0xABCD), vp(layout.pool_elems(), 0xABCD);
    ASSERT_TRUE(be->WriteKv(k.data(), v.data(), slots, layout, {kp.data(), vp.data()}).ok());
    std::vector<uint16_t> want_k(layout.pool_elems(), 0xABCD), want_v = want_k;
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i] < 0) continue;
      for (int64_t e = 0; e < row; ++e) {
        want_k[slots[i] * row + e] = FloatToFp16(k[i * row + e]);
        want_v[slots[i] * row + e] = FloatToFp16(v[i * row + e]);
      }
    }
    EXPECT_EQ(kp, want_k);
    EXPECT_EQ(vp, want_v);
  }
  EXPECT_EQ(FloatToFp16(1.0f + 0x1p-11f), 0x3C00);  // the tie went to even
  EXPECT_EQ(FloatToFp16(1e6f), 0x7C00);
}

TEST(PagedKvOpsTest, HalfConversionKernelsAreBitEqualToCommonHalf) {
  std::vector<uint16_t> every;  // every half but the NaNs
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) != 0x7C00 || (h & 0x3FF) == 0) every.push_back(static_cast<uint16_t>(h));
  }
  std::mt19937 rng(16);
  std::vector<float> floats = RandomFloats(999, rng, 1000.0f);
  for (uint16_t h : every) {  // each half, and the midpoint above it (a tie)
    floats.push_back(Fp16ToFloat(h));
    const float up = Fp16ToFloat(static_cast<uint16_t>(h + 1));
    if (std::isfinite(up) && std::isfinite(floats.back())) {
      floats.push_back(floats.back() + (up - floats.back()) / 2);
    }
  }
  for (const CpuKernels* kernels : SupportedCpuKernels()) {
    SCOPED_TRACE(std::string(kernels->isa));
    std::vector<float> widened(every.size());
    kernels->f16_to_f32(every.data(), widened.data(), static_cast<int64_t>(every.size()));
    for (size_t i = 0; i < every.size(); ++i) {
      const float want = Fp16ToFloat(every[i]);
      ASSERT_EQ(std::memcmp(&widened[i], &want, sizeof(float)), 0) << "half " << every[i];
    }
    std::vector<uint16_t> narrowed(floats.size());
    kernels->f32_to_f16(floats.data(), narrowed.data(), static_cast<int64_t>(floats.size()));
    for (size_t i = 0; i < floats.size(); ++i) {
      ASSERT_EQ(narrowed[i], FloatToFp16(floats[i])) << "float " << floats[i];
    }
  }
}

TEST(PagedKvOpsTest, CopyAndSwapMoveWholeHalfBlocks) {
  const PagedKvLayout layout{.num_blocks = 5, .block_size = 2, .num_kv_heads = 2, .head_dim = 3,
                             .dtype = DType::kF16};
  PagedKvLayout host = layout;
  host.num_blocks = 3;
  const int64_t n = layout.block_elems();
  std::mt19937 rng(17);
  auto random_halves = [&](int64_t count) {
    std::vector<uint16_t> x(static_cast<size_t>(count));
    for (uint16_t& h : x) h = static_cast<uint16_t>(rng() & 0x3FFF);
    return x;
  };
  for (auto& be : AllBackends()) {
    SCOPED_TRACE(std::string(be->name()));
    std::vector<std::vector<uint16_t>> pools, hosts;
    for (int i = 0; i < 4; ++i) pools.push_back(random_halves(layout.pool_elems()));
    for (int i = 0; i < 4; ++i) hosts.push_back(random_halves(host.pool_elems()));
    const auto before = pools;
    const auto hosts_before = hosts;
    std::vector<KvPool> layers, host_layers;
    for (int l = 0; l < 2; ++l) {
      layers.push_back({pools[2 * l].data(), pools[2 * l + 1].data()});
      host_layers.push_back({hosts[2 * l].data(), hosts[2 * l + 1].data()});
    }
    ASSERT_TRUE(be->CopyBlocks(layers, layout, std::vector<KvBlockCopy>{{4, 0}}).ok());
    ASSERT_TRUE(be->SwapBlocks(layers, layout, host_layers, host,
                               std::vector<KvBlockCopy>{{3, 2}})
                    .ok());
    for (int i = 0; i < 4; ++i) {
      std::vector<uint16_t> want = before[i];
      std::copy_n(before[i].begin() + 4 * n, n, want.begin());
      EXPECT_EQ(pools[i], want) << "pool " << i;
      std::vector<uint16_t> want_host = hosts_before[i];
      std::copy_n(before[i].begin() + 3 * n, n, want_host.begin() + 2 * n);
      EXPECT_EQ(hosts[i], want_host) << "host pool " << i;
    }
    // Sides of different dtypes are refused.
    PagedKvLayout f32_host = host;
    f32_host.dtype = DType::kF32;
    const absl::Status st = be->SwapBlocks(layers, layout, host_layers, f32_host,
                                           std::vector<KvBlockCopy>{{3, 2}});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find("dtype f16 vs f32"), std::string::npos) << st;
  }
}

TEST(PagedKvOpsTest, CopyBlocksCopiesEveryLayerInOrder) {
  const PagedKvLayout layout{.num_blocks = 6, .block_size = 2, .num_kv_heads = 1, .head_dim = 3};
  const int64_t n = layout.block_elems();
  std::mt19937 rng(6);
  for (auto& be : AllBackends()) {
    SCOPED_TRACE(std::string(be->name()));
    std::vector<std::vector<float>> pools;
    for (int i = 0; i < 6; ++i) pools.push_back(RandomFloats(layout.pool_elems(), rng));
    const std::vector<std::vector<float>> before = pools;
    std::vector<KvPool> layers;
    for (int l = 0; l < 3; ++l) layers.push_back({pools[2 * l].data(), pools[2 * l + 1].data()});
    // 1 -> 4, then 4 -> 5 (sees the new 4), and a self-copy.
    const std::vector<KvBlockCopy> copies = {{1, 4}, {4, 5}, {2, 2}};
    ASSERT_TRUE(be->CopyBlocks(layers, layout, copies).ok());
    for (int i = 0; i < 6; ++i) {
      std::vector<float> want = before[i];
      std::copy_n(before[i].begin() + 1 * n, n, want.begin() + 4 * n);
      std::copy_n(before[i].begin() + 1 * n, n, want.begin() + 5 * n);
      EXPECT_EQ(pools[i], want) << "pool " << i;
    }
  }
}

// Bad inputs: INVALID_ARGUMENT naming the field, nothing written.
TEST(PagedKvOpsTest, RejectsBadInputsNamingTheField) {
  for (auto& be : AllBackends()) {
    SCOPED_TRACE(std::string(be->name()));
    ReferenceBackend writer;
    Scenario s = MakeScenario(4, 4, 2, 8, {{10, 3}, {6, 1}}, 7, writer);
    std::vector<float> out(s.q.size(), 3.0f);
    auto attend = [&](const std::vector<PagedSequence>& seqs, const PagedAttentionParams& p,
                      const PagedKvLayout& layout) {
      return be->PagedAttention(s.q.data(), s.rows(), s.positions, seqs, layout, s.pool(), p,
                                out.data());
    };
    auto expect = [&](const absl::Status& st, absl::StatusCode code, const std::string& field) {
      EXPECT_EQ(st.code(), code) << st;
      EXPECT_NE(st.message().find(field), std::string::npos) << st;
      EXPECT_NE(st.message().find(std::string(be->name())), std::string::npos) << st;
    };
    constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

    std::vector<int32_t> bad_table = s.tables[1];
    bad_table[1] = static_cast<int32_t>(s.layout.num_blocks);  // block id out of range
    std::vector<PagedSequence> seqs = s.seqs;
    seqs[1].block_table = bad_table;
    expect(attend(seqs, s.params, s.layout), kInvalid, "sequences[1].block_table[1]");
    bad_table[1] = -3;
    expect(attend(seqs, s.params, s.layout), kInvalid, "sequences[1].block_table[1]");

    seqs = s.seqs;  // context beyond the table (table holds 3 + 1 spare blocks of 4)
    seqs[0].context_len = 17;
    expect(attend(seqs, s.params, s.layout), kInvalid, "sequences[0].context_len");
    seqs = s.seqs;  // a query position at or past the context
    seqs[0].context_len = 9;
    expect(attend(seqs, s.params, s.layout), kInvalid, "positions[2]");
    seqs = s.seqs;  // overlapping rows
    seqs[1].query_start = 2;
    expect(attend(seqs, s.params, s.layout), kInvalid, "sequences[1]");

    PagedAttentionParams p = s.params;
    p.num_heads = 5;
    expect(attend(s.seqs, p, s.layout), kInvalid, "params.num_heads");
    p = s.params;
    p.head_dim = 16;
    expect(attend(s.seqs, p, s.layout), kInvalid, "params.head_dim");
    p = s.params;
    p.sliding_window = -1;
    expect(attend(s.seqs, p, s.layout), kInvalid, "params.sliding_window");
    PagedKvLayout bf16 = s.layout;
    bf16.dtype = DType::kBF16;
    expect(attend(s.seqs, s.params, bf16), absl::StatusCode::kUnimplemented, "layout.dtype");
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float x) { return x == 3.0f; }));

    const std::vector<float> kv(3 * s.layout.token_elems(), 1.0f);
    const std::vector<float> k_before = s.k_pool;
    const std::vector<int32_t> too_far = {0, static_cast<int32_t>(s.layout.num_slots()), 1};
    expect(be->WriteKv(kv.data(), kv.data(), too_far, s.layout, s.pool()), kInvalid,
           "slots[1]");
    const std::vector<int32_t> negative = {0, 1, -2};
    expect(be->WriteKv(kv.data(), kv.data(), negative, s.layout, s.pool()), kInvalid,
           "slots[2]");
    EXPECT_EQ(std::memcmp(s.k_pool.data(), k_before.data(), k_before.size() * 4), 0);

    const KvPool layers[] = {s.pool()};
    const KvBlockCopy bad_copy[] = {{0, 1}, {2, static_cast<int32_t>(s.layout.num_blocks)}};
    expect(be->CopyBlocks(layers, s.layout, bad_copy), kInvalid, "copies[1]");
    EXPECT_EQ(std::memcmp(s.k_pool.data(), k_before.data(), k_before.size() * 4), 0);
  }
}

// A backend that does not override the paged ops answers UNIMPLEMENTED (ops.h defaults).
class NoPagedBackend : public Backend {
 public:
  std::string_view name() const override { return "no-paged"; }
  absl::Status MatMul(const float*, int64_t, int64_t, const TensorView&, float*) override {
    return absl::OkStatus();
  }
  absl::Status Embedding(const TensorView&, std::span<const int32_t>, float*) override {
    return absl::OkStatus();
  }
  void RmsNorm(const float*, const float*, int64_t, int64_t, float, float*) override {}
  void Rope(float*, int64_t, int64_t, std::span<const int32_t>, const RopeParams&) override {}
  void SiluMul(const float*, const float*, int64_t, float*) override {}
  void Add(const float*, const float*, int64_t, float*) override {}
  void Attention(const float*, int64_t, std::span<const int32_t>, const float*, const float*,
                 int64_t, const AttentionParams&, float*) override {}
  void Softmax(float*, int64_t, int64_t) override {}
};

TEST(PagedKvOpsTest, DefaultsAreUnimplemented) {
  NoPagedBackend be;
  const PagedKvLayout layout{.num_blocks = 1, .block_size = 1, .num_kv_heads = 1, .head_dim = 1};
  absl::Status st = be.WriteKv(nullptr, nullptr, {}, layout, {});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("no-paged backend has no WriteKv"), std::string::npos) << st;
  st = be.PagedAttention(nullptr, 0, {}, {}, layout, {}, {}, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("PagedAttention"), std::string::npos) << st;
  st = be.CopyBlocks({}, layout, {});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("CopyBlocks"), std::string::npos) << st;
}

}  // namespace
}  // namespace tessera
