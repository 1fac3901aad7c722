// LlamaModel against the independent float64 forward (reference_llama.h) on tiny random
// models written with GgufWriter and read back through OpenWeightStore: every weight dtype,
// MHA / GQA / MQA, tied and separate LM heads, each RoPE scaling, head_dim != hidden/heads,
// partial rotary dims; prefill (all logits) then incremental decode over the KV cache; on
// both CPU backends.
//
// Tolerance: max |logit - ref| <= tol * max(1, max |ref|) over the compared rows (logits
// here reach 10..100). tol is 5e-6 on "cpu-reference" (float32 activations, double
// accumulation; observed <= 6e-7) and, on "cpu", 1e-4 for f32/f16/bf16 weights (observed
// <= 6e-7) and 5e-2 for block-quantized weights: its integer dot products quantize the
// activations to 8 bits as llama.cpp does (observed about 2e-2 after 2 layers). On CPUs with
// AVX512_BF16, bf16 weights multiply activations rounded to bf16 (8-bit mantissa, as
// llama.cpp does): 1e-2 there (observed <= 4e-3 after 3 layers).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tests/model/reference_llama.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using testing::ReferenceForward;
using testing::TinyRope;
using testing::TinySpec;
using testing::TinyWeights;

struct Case {
  std::string name;
  TinySpec spec;
};

TinySpec KQuantSized(DType dtype) {
  // K-quant super-blocks are 256 wide: every matrix's inner dimension must be a multiple.
  TinySpec s;
  s.dtype = dtype;
  s.hidden = 256;
  s.heads = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.rope_dim = 64;
  s.ffn = 256;
  s.vocab = 40;
  return s;
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0,
                  DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}) {
    TinySpec s;
    s.dtype = d;
    cases.push_back({"dtype_" + std::string(DTypeName(d)), s});
  }
  for (DType d : {DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    cases.push_back({"dtype_" + std::string(DTypeName(d)), KQuantSized(d)});
  }
  {
    TinySpec s;  // multi-head attention: as many KV heads as heads
    s.kv_heads = 4;
    cases.push_back({"mha", s});
  }
  {
    TinySpec s;  // multi-query attention
    s.kv_heads = 1;
    s.dtype = DType::kQ8_0;
    cases.push_back({"mqa_q8_0", s});
  }
  {
    TinySpec s;
    s.tied = false;
    s.dtype = DType::kQ4_1;
    cases.push_back({"separate_lm_head_q4_1", s});
  }
  {
    TinySpec s;
    s.rope = TinyRope::kLinear;
    s.theta = 100.0;  // fast rotations so that scaling shows at small positions
    cases.push_back({"rope_linear", s});
  }
  {
    TinySpec s;
    s.rope = TinyRope::kLlama3Tensor;
    s.rope_factor = 8.0;
    s.original_context = 256;
    cases.push_back({"rope_llama3_freqs_tensor", s});
  }
  {
    TinySpec s;
    s.rope = TinyRope::kYarn;
    s.rope_factor = 4.0;
    s.original_context = 2048;
    cases.push_back({"rope_yarn", s});
  }
  {
    TinySpec s;  // head_dim (24) != hidden / heads (16)
    s.head_dim = 24;
    s.rope_dim = 24;
    cases.push_back({"head_dim_24", s});
  }
  {
    TinySpec s;  // only the first 8 of 16 dims of each head rotate
    s.rope_dim = 8;
    cases.push_back({"partial_rotary", s});
  }
  {
    TinySpec s;
    s.norm_dtype = DType::kF16;
    s.layers = 3;
    s.dtype = DType::kBF16;
    cases.push_back({"f16_norms_3_layers", s});
  }
  return cases;
}

struct Param {
  Case c;
  std::string backend;
};

std::vector<Param> AllParams() {
  std::vector<Param> params;
  for (const Case& c : AllCases()) {
    for (const char* b : {"cpu-reference", "cpu"}) params.push_back({c, b});
  }
  return params;
}

void PrintTo(const Param& p, std::ostream* os) { *os << p.c.name << " on " << p.backend; }

double Tolerance(const Param& p) {
  if (p.backend == "cpu-reference") return 5e-6;
  const DType d = p.c.spec.dtype;
  if (d == DType::kBF16 && BestCpuKernels().activation_type(d) == DType::kBF16) return 1e-2;
  const bool float_weights = d == DType::kF32 || d == DType::kF16 || d == DType::kBF16;
  return float_weights ? 1e-4 : 5e-2;
}

// Max |got - want[row_offset..]| relative to max(1, max |want rows|).
double RelativeError(const std::vector<float>& got, const std::vector<double>& want,
                     size_t offset) {
  double max_ref = 1.0, max_err = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(want[offset + i]));
    max_err = std::max(max_err, std::abs(static_cast<double>(got[i]) - want[offset + i]));
  }
  return max_err / max_ref;
}

class LlamaModelTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const Param& p = GetParam();
    path_ = testing::TempGgufPath(p.c.name);
    auto weights = testing::WriteTinyModel(p.c.spec, path_);
    ASSERT_TRUE(weights.ok()) << weights.status();
    weights_ = std::move(*weights);
    auto store = OpenWeightStore(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto backend = CreateBackend(p.backend, 2);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto model = LlamaModel::Load(*store_, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  std::string path_;
  TinyWeights weights_;
  std::unique_ptr<WeightStore> store_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_P(LlamaModelTest, PrefillThenDecodeMatchesFloat64Reference) {
  const TinySpec& s = GetParam().c.spec;
  const double tol = Tolerance(GetParam());
  const std::vector<int32_t> tokens = {1, static_cast<int32_t>(s.vocab - 1), 7, 3, 7, 20, 0, 11};
  const std::vector<double> ref = ReferenceForward(weights_, tokens);
  const size_t vocab = static_cast<size_t>(s.vocab);
  constexpr size_t kPrefill = 5;

  auto cache = model_->NewKvCache(16);
  ASSERT_TRUE(cache.ok()) << cache.status();
  std::vector<float> logits;
  ASSERT_TRUE(model_
                  ->Forward(std::span(tokens).first(kPrefill), 0, *cache, /*all_logits=*/true,
                            &logits)
                  .ok());
  ASSERT_EQ(logits.size(), kPrefill * vocab);
  EXPECT_LE(RelativeError(logits, ref, 0), tol) << "prefill";
  EXPECT_EQ(cache->num_tokens(), static_cast<int64_t>(kPrefill));

  for (size_t t = kPrefill; t < tokens.size(); ++t) {
    ASSERT_TRUE(model_->Forward(std::span(tokens).subspan(t, 1), static_cast<int64_t>(t),
                                *cache, /*all_logits=*/false, &logits)
                    .ok());
    ASSERT_EQ(logits.size(), vocab);
    EXPECT_LE(RelativeError(logits, ref, t * vocab), tol) << "decode step at position " << t;
  }
  EXPECT_EQ(cache->num_tokens(), static_cast<int64_t>(tokens.size()));
}

TEST_P(LlamaModelTest, LastTokenLogitsAndRewindMatchReference) {
  const TinySpec& s = GetParam().c.spec;
  const double tol = Tolerance(GetParam());
  const std::vector<int32_t> tokens = {4, 9, 2, 2, 15, 6};
  const std::vector<int32_t> other = {4, 9, 2, 30, 1, 5};  // shares the first 3 tokens
  const size_t vocab = static_cast<size_t>(s.vocab);
  auto cache = model_->NewKvCache(8);
  ASSERT_TRUE(cache.ok());
  std::vector<float> logits;
  ASSERT_TRUE(model_->Forward(tokens, 0, *cache, /*all_logits=*/false, &logits).ok());
  const std::vector<double> ref = ReferenceForward(weights_, tokens);
  ASSERT_EQ(logits.size(), vocab);
  EXPECT_LE(RelativeError(logits, ref, (tokens.size() - 1) * vocab), tol);

  // Rewind to position 3 and continue with a different suffix: rows 0..2 are reused.
  ASSERT_TRUE(model_->Forward(std::span(other).subspan(3), 3, *cache, true, &logits).ok());
  const std::vector<double> ref_other = ReferenceForward(weights_, other);
  ASSERT_EQ(logits.size(), 3 * vocab);
  EXPECT_LE(RelativeError(logits, ref_other, 3 * vocab), tol);
}

INSTANTIATE_TEST_SUITE_P(AllVariants, LlamaModelTest, ::testing::ValuesIn(AllParams()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           std::string name = info.param.c.name + "_" + info.param.backend;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

// Packed weights (kernels/cpu/packed_weights.h, with Q/K/V and gate/up stacked) against the
// same backend reading the GGUF layout, for every packed dtype, on any CPU: the table's
// packed GEMM is the portable one where this CPU has no SIMD one. Both quantize the
// activations the same way, so only float summation order differs (observed ~1e-6
// relative); greedy tokens must agree.
TEST(LlamaModelPackedTest, PackedAndStackedWeightsGiveTheGgufLayoutsLogits) {
  for (DType dtype : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    SCOPED_TRACE(DTypeName(dtype));
    TinySpec spec;
    spec.dtype = dtype;
    spec.hidden = 64;
    spec.ffn = 96;
    spec.vocab = 80;
    spec.layers = 2;
    spec.heads = 4;
    spec.kv_heads = 2;
    const std::string path = testing::TempGgufPath("packed");
    ASSERT_TRUE(testing::WriteTinyModel(spec, path).ok());
    auto store = OpenWeightStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    CpuKernels table = BestCpuKernels();
    if (table.packed_gemm == nullptr) table.packed_gemm = PackedGemmReference;
    CpuBackend packed_backend(2, &table), plain_backend(2, &table, false, /*pack_weights=*/false);
    auto packed = LlamaModel::Load(**store, &packed_backend);
    auto plain = LlamaModel::Load(**store, &plain_backend);
    ASSERT_TRUE(packed.ok() && plain.ok());
    // The LM head, then per layer Q|K|V, O, gate|up and down (none where the table does not
    // pack this dtype: Q8_0 on AVX2).
    PackedFormat format;
    ASSERT_TRUE(PackedFormatFor(dtype, &format));
    const bool packs = table.packs_format == nullptr || table.packs_format(format);
    EXPECT_EQ((*packed)->packed_weight_count(), packs ? 1 + 4 * spec.layers : 0);
    EXPECT_EQ((*plain)->packed_weight_count(), 0);
    std::vector<int32_t> tokens = {1, 79, 7, 3, 7, 20};
    auto packed_cache = (*packed)->NewKvCache(32);
    auto plain_cache = (*plain)->NewKvCache(32);
    ASSERT_TRUE(packed_cache.ok() && plain_cache.ok());
    std::vector<float> a, b;
    int64_t pos = 0;
    for (int step = 0; step < 8; ++step) {
      const std::span<const int32_t> in =
          step == 0 ? std::span<const int32_t>(tokens) : std::span<const int32_t>(tokens).last(1);
      ASSERT_TRUE((*packed)->Forward(in, pos, *packed_cache, /*all_logits=*/true, &a).ok());
      ASSERT_TRUE((*plain)->Forward(in, pos, *plain_cache, /*all_logits=*/true, &b).ok());
      ASSERT_EQ(a.size(), b.size());
      double max_ref = 1, max_err = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        max_ref = std::max(max_ref, std::abs(double(b[i])));
        max_err = std::max(max_err, std::abs(double(a[i]) - b[i]));
      }
      EXPECT_LE(max_err / max_ref, 1e-4) << "step " << step;
      const auto last_a = a.end() - spec.vocab, last_b = b.end() - spec.vocab;
      const int32_t next_a = static_cast<int32_t>(std::max_element(last_a, a.end()) - last_a);
      const int32_t next_b = static_cast<int32_t>(std::max_element(last_b, b.end()) - last_b);
      EXPECT_EQ(next_a, next_b) << "step " << step;
      pos += static_cast<int64_t>(in.size());
      tokens.push_back(next_b);
    }
    std::remove(path.c_str());
  }
}

}  // namespace
}  // namespace tessera
