// Random-weight models in named shapes: every dtype loads and runs to finite logits, the
// bytes depend only on the options, fewer layers give a prefix of the model, Llama-3.2's
// rope_freqs, and the errors.
#include "model/synthetic_model.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "formats/gguf_reader.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tests/model/tiny_llama.h"
#include "tokenizer/synthetic_vocab.h"
#include "tokenizer/tokenizer.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

SynthesisOptions Options(const std::string& shape, DType dtype, int64_t layers = 0,
                         uint64_t seed = 0) {
  SynthesisOptions o;
  o.shape = *FindModelShape(shape);
  o.dtype = dtype;
  o.layers = layers;
  o.seed = seed;
  o.num_threads = 2;
  return o;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A synthesized file, removed at the end of the test.
class Synthesized {
 public:
  explicit Synthesized(const SynthesisOptions& o) : path_(testing::TempGgufPath("synthetic")) {
    status_ = SynthesizeModel(o, path_);
  }
  ~Synthesized() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }
  const absl::Status& status() const { return status_; }

 private:
  std::string path_;
  absl::Status status_;
};

struct DTypeCase {
  std::string shape;
  int64_t layers;
  DType dtype;
};

class SyntheticModelDTypeTest : public ::testing::TestWithParam<DTypeCase> {};

TEST_P(SyntheticModelDTypeTest, LoadsAndRunsToFiniteLogits) {
  const DTypeCase& p = GetParam();
  const SynthesisOptions o = Options(p.shape, p.dtype, p.layers);
  Synthesized file(o);
  ASSERT_TRUE(file.status().ok()) << file.status();

  absl::StatusOr<std::unique_ptr<WeightStore>> store = OpenWeightStore(file.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_NE((*store)->gguf(), nullptr);
  absl::StatusOr<ModelConfig> want = SynthesizedConfig(o);
  ASSERT_TRUE(want.ok()) << want.status();
  absl::StatusOr<ModelConfig> got = ModelConfigFromGguf(*(*store)->gguf());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, *want);
  int64_t bytes = 0;
  for (const GgufTensorInfo& t : (*store)->gguf()->tensors()) {
    bytes += t.num_bytes;
    if (t.name.find("norm") == std::string::npos && t.name != "rope_freqs.weight") {
      EXPECT_EQ(t.dtype, p.dtype) << t.name;
    } else {
      EXPECT_EQ(t.dtype, DType::kF32) << t.name;
    }
  }
  EXPECT_EQ(bytes, *SynthesizedTensorBytes(o));

  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromGguf(*(*store)->gguf());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), want->vocab_size);
  absl::StatusOr<std::vector<int32_t>> tokens =
      (*tokenizer)->Encode("hello, random world", EncodeOptions{});
  ASSERT_TRUE(tokens.ok()) << tokens.status();

  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend("cpu", 2);
  ASSERT_TRUE(backend.ok()) << backend.status();
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Load(**store, backend->get());
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<KvCache> cache = (*model)->NewKvCache(32);
  ASSERT_TRUE(cache.ok()) << cache.status();
  std::vector<float> logits;
  ASSERT_TRUE((*model)->Forward(*tokens, 0, *cache, /*all_logits=*/false, &logits).ok());
  ASSERT_EQ(static_cast<int64_t>(logits.size()), want->vocab_size);
  double sum = 0, sum2 = 0;
  for (float v : logits) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sum2 += static_cast<double>(v) * v;
  }
  const double mean = sum / logits.size();
  const double stddev = std::sqrt(sum2 / logits.size() - mean * mean);
  // Unit-scale activations through the LM head of std 1/sqrt(hidden): logits of std ~1.
  EXPECT_GT(stddev, 0.2);
  EXPECT_LT(stddev, 5.0);
}

std::vector<DTypeCase> Cases() {
  std::vector<DTypeCase> cases;
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ5_0,
                  DType::kQ5_1, DType::kQ4_0, DType::kQ4_1}) {
    cases.push_back({"tiny", 0, d});
    cases.push_back({"smollm2-135m", 2, d});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, SyntheticModelDTypeTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<DTypeCase>& info) {
                           std::string name = info.param.shape + "_" +
                                              std::string(DTypeName(info.param.dtype));
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(SyntheticModel, BytesDependOnlyOnTheOptions) {
  SynthesisOptions o = Options("tiny", DType::kQ4_0, 0, /*seed=*/7);
  Synthesized a(o);
  o.num_threads = 1;
  Synthesized same(o);
  o.seed = 8;
  Synthesized other(o);
  ASSERT_TRUE(a.status().ok() && same.status().ok() && other.status().ok());
  const std::string bytes = ReadAll(a.path());
  EXPECT_FALSE(bytes.empty());
  EXPECT_TRUE(bytes == ReadAll(same.path()));
  const std::string other_bytes = ReadAll(other.path());
  ASSERT_EQ(other_bytes.size(), bytes.size());  // the seed key is a fixed-size uint64
  EXPECT_FALSE(other_bytes == bytes);
}

TEST(SyntheticModel, FewerLayersHoldTheFirstLayersOfTheFullModel) {
  Synthesized full(Options("tiny", DType::kF16, 0));
  Synthesized one(Options("tiny", DType::kF16, 1));
  ASSERT_TRUE(full.status().ok() && one.status().ok());
  auto a = GgufFile::Open(full.path());
  auto b = GgufFile::Open(one.path());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*b)->FindTensor("blk.1.attn_q.weight"), nullptr);
  for (const char* name : {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight"}) {
    const GgufTensorInfo* x = (*a)->FindTensor(name);
    const GgufTensorInfo* y = (*b)->FindTensor(name);
    ASSERT_TRUE(x != nullptr && y != nullptr) << name;
    ASSERT_EQ(x->num_bytes, y->num_bytes);
    EXPECT_EQ(std::memcmp(x->view.data, y->view.data, static_cast<size_t>(x->num_bytes)), 0)
        << name;
  }
}

TEST(SyntheticModel, MatricesHaveStdOneOverSqrtFanInAndNormsAreOne) {
  Synthesized f(Options("tiny", DType::kF32));
  ASSERT_TRUE(f.status().ok()) << f.status();
  auto file = GgufFile::Open(f.path());
  ASSERT_TRUE(file.ok());
  for (const char* name : {"token_embd.weight", "blk.1.ffn_down.weight"}) {
    const GgufTensorInfo* t = (*file)->FindTensor(name);
    ASSERT_NE(t, nullptr);
    const auto* v = static_cast<const float*>(t->view.data);
    const int64_t n = t->view.NumElements();
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      sum += v[i];
      sum2 += static_cast<double>(v[i]) * v[i];
    }
    const double fan_in = static_cast<double>(t->view.Cols());
    EXPECT_NEAR(sum / n, 0.0, 0.05 / std::sqrt(fan_in)) << name;
    EXPECT_NEAR(std::sqrt(sum2 / n) * std::sqrt(fan_in), 1.0, 0.05) << name;
  }
  const GgufTensorInfo* norm = (*file)->FindTensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  for (int64_t i = 0; i < norm->view.NumElements(); ++i) {
    EXPECT_EQ(static_cast<const float*>(norm->view.data)[i], 1.0f);
  }
}

TEST(SyntheticModel, Llama3ScalingIsWrittenAsRopeFreqs) {
  // A small shape with Llama-3.2's rope scaling (the real ones are too big for a unit test).
  SynthesisOptions o = Options("llama-3.2-1b", DType::kQ8_0);
  ModelConfig& c = o.shape.config;
  c.vocab_size = 300;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_layers = 1;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = c.rope_dim = 32;
  Synthesized f(o);
  ASSERT_TRUE(f.status().ok()) << f.status();
  auto store = OpenWeightStore(f.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto config = ModelConfigFromGguf(*(*store)->gguf());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->has_rope_freqs);
  EXPECT_EQ(config->rope_scaling.type, RopeScalingType::kNone);
  absl::StatusOr<TensorView> freqs = (*store)->Get("rope_freqs.weight");
  ASSERT_TRUE(freqs.ok()) << freqs.status();
  const std::vector<float> want = Llama3RopeFreqFactors(c);
  ASSERT_EQ(freqs->NumElements(), static_cast<int64_t>(want.size()));
  EXPECT_EQ(std::memcmp(freqs->data, want.data(), want.size() * sizeof(float)), 0);
  auto backend = CreateBackend("cpu", 1);
  ASSERT_TRUE(backend.ok());
  auto model = LlamaModel::Load(**store, backend->get());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE((*model)->config().has_rope_freqs);
}

TEST(SyntheticModel, ErrorsNameTheField) {
  SynthesisOptions o = Options("tiny", DType::kQ4_K);
  EXPECT_FALSE(CanSynthesize(DType::kQ4_K));
  absl::Status s = SynthesizeModel(o, "/tmp/unused.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("dtype"));
  EXPECT_THAT(s.message(), HasSubstr("q4_0"));
  o = Options("tiny", DType::kBF16, -1);
  s = SynthesizeModel(o, "/tmp/unused.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("layers"));
  o = Options("tiny", DType::kBF16);
  s = SynthesizeModel(o, "/nonexistent-dir/model.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent-dir/model.gguf"));
}

// The config checks live beside the shapes (formats/synthesis_spec.h); the vocabulary's size
// is the synthetic tokenizer's to check, when the file is written.
TEST(SyntheticModel, EveryKnownShapeHasAConfigAndAVocabulary) {
  for (const ModelShape& shape : KnownModelShapes()) {
    SCOPED_TRACE(shape.name);
    const absl::StatusOr<ModelConfig> c = SynthesizedConfig({.shape = shape, .dtype = DType::kBF16});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(SyntheticVocabulary(c->vocab_size).ok());
  }
  SynthesisOptions o = Options("tiny", DType::kBF16);
  o.shape.config.vocab_size = kMinSyntheticVocabSize - 1;
  const absl::Status s = SynthesizeModel(o, "/tmp/unused.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("vocab_size"));
}

}  // namespace
}  // namespace tessera
