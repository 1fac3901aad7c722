// ModelConfig from GGUF metadata and from config.json; both sources agree on the same model.
#include "formats/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "formats/hf_config.h"
#include "formats/model_locator.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

const std::string kFixture =
    std::string(TESSERA_SOURCE_DIR) + "/tests/fixtures/formats/smollm2_135m_instruct/config.json";

TEST(ModelConfig, SmolLM2GgufEqualsPublishedConfigJson) {
  absl::StatusOr<std::string> path = ResolveModelPath("default");
  ASSERT_TRUE(path.ok()) << "the default model is needed for this test: " << path.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(*path);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<ModelConfig> from_gguf = ModelConfigFromGguf(**file);
  ASSERT_TRUE(from_gguf.ok()) << from_gguf.status();
  absl::StatusOr<ModelConfig> from_hf = ModelConfigFromHfConfigFile(kFixture);
  ASSERT_TRUE(from_hf.ok()) << from_hf.status();

  const ModelConfig& c = *from_gguf;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.name, "Smollm2 135M 8k Lc100K Mix1 Ep2");
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_EQ(c.rms_norm_eps, static_cast<double>(1e-5f));
  EXPECT_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c.has_rope_freqs);
  EXPECT_TRUE(c.tie_word_embeddings);

  EXPECT_TRUE(HyperParametersEqual(*from_gguf, *from_hf));
  EXPECT_NE(from_gguf->name, from_hf->name);  // labels differ; hyper-parameters do not
  ModelConfig changed = *from_hf;
  changed.num_kv_heads = 9;
  EXPECT_FALSE(HyperParametersEqual(*from_gguf, changed));
}

json Llama3Json() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "vocab_size": 1000, "_name_or_path": "tiny-llama3",
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})");
}

TEST(ModelConfig, HfRopeScalingVariants) {
  absl::StatusOr<ModelConfig> l3 = ModelConfigFromHfConfig(Llama3Json());
  ASSERT_TRUE(l3.ok()) << l3.status();
  EXPECT_EQ(l3->name, "tiny-llama3");
  EXPECT_EQ(l3->head_dim, 64);
  EXPECT_FALSE(l3->tie_word_embeddings);  // LlamaConfig's default
  EXPECT_EQ(l3->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(l3->rope_scaling.factor, 8.0);
  EXPECT_EQ(l3->rope_scaling.original_max_position_embeddings, 8192);

  json linear = Llama3Json();
  linear["rope_scaling"] = json::parse(R"({"type": "linear", "factor": 2.0})");
  absl::StatusOr<ModelConfig> lin = ModelConfigFromHfConfig(linear);
  ASSERT_TRUE(lin.ok()) << lin.status();
  EXPECT_EQ(lin->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_EQ(lin->rope_scaling.factor, 2.0);

  json yarn = Llama3Json();
  yarn["rope_scaling"] = json::parse(
      R"({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768,
          "beta_fast": 16})");
  yarn["head_dim"] = 32;
  absl::StatusOr<ModelConfig> y = ModelConfigFromHfConfig(yarn);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(y->rope_scaling.beta_fast, 16.0);
  EXPECT_EQ(y->rope_scaling.beta_slow, 1.0);
  EXPECT_EQ(y->rope_scaling.original_max_position_embeddings, 32768);
  EXPECT_EQ(y->head_dim, 32);
  EXPECT_EQ(y->rope_dim, 32);

  json dflt = Llama3Json();
  dflt["rope_scaling"] = json::parse(R"({"rope_type": "default"})");
  EXPECT_EQ(ModelConfigFromHfConfig(dflt)->rope_scaling.type, RopeScalingType::kNone);
}

void ExpectHfError(const json& j, const std::string& field) {
  absl::StatusOr<ModelConfig> c = ModelConfigFromHfConfig(j, "x/config.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_THAT(c.status().message(), HasSubstr("x/config.json"));
  EXPECT_THAT(c.status().message(), HasSubstr(field));
}

TEST(ModelConfig, HfErrorsNameTheField) {
  json j = Llama3Json();
  j.erase("hidden_size");
  ExpectHfError(j, "hidden_size");
  j = Llama3Json();
  j["num_hidden_layers"] = "two";
  ExpectHfError(j, "num_hidden_layers");
  j = Llama3Json();
  j["architectures"] = json::array({"GPT2LMHeadModel"});
  ExpectHfError(j, "architectures");
  j = Llama3Json();
  j["rope_scaling"]["rope_type"] = "longrope";
  ExpectHfError(j, "rope_scaling.rope_type");
  j = Llama3Json();
  j["rope_scaling"].erase("factor");
  ExpectHfError(j, "rope_scaling.factor");
  j = Llama3Json();
  j["num_key_value_heads"] = 3;  // does not divide 4
  ExpectHfError(j, "num_kv_heads");
  j = Llama3Json();
  j["tie_word_embeddings"] = 1;
  ExpectHfError(j, "tie_word_embeddings");
  ExpectHfError(json::array(), "not a JSON object");
  EXPECT_EQ(ModelConfigFromHfConfigFile("/nonexistent/config.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ModelConfig, Llama3RopeFreqFactorsMatchFloat64Reference) {
  ModelConfig c = *ModelConfigFromHfConfig(Llama3Json());
  const std::vector<float> f = Llama3RopeFreqFactors(c);
  ASSERT_EQ(f.size(), 32u);
  // Independent float64 reference of Llama 3.1's rule.
  const double theta = 500000.0, factor = 8.0, lo = 1.0, hi = 4.0, old_ctx = 8192.0;
  int n_one = 0, n_factor = 0, n_smooth = 0;
  for (int i = 0; i < 32; ++i) {
    const double freq = std::pow(theta, -2.0 * i / 64.0);
    const double wavelen = 2 * M_PI / freq;
    double expect;
    if (wavelen < old_ctx / hi) {
      expect = 1.0;
      ++n_one;
    } else if (wavelen > old_ctx / lo) {
      expect = factor;
      ++n_factor;
    } else {
      const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
      expect = 1.0 / ((1 - smooth) / factor + smooth);
      ++n_smooth;
    }
    EXPECT_NEAR(f[i], expect, 1e-4 * expect) << i;
  }
  EXPECT_GT(n_one, 0);
  EXPECT_GT(n_factor, 0);
  EXPECT_GT(n_smooth, 0);
}

// A GGUF holding only metadata for a small llama.
GgufWriter SmallLlamaGguf() {
  GgufWriter w;
  EXPECT_TRUE(w.AddString("general.architecture", "llama").ok());
  EXPECT_TRUE(w.AddUint32("llama.context_length", 4096).ok());
  EXPECT_TRUE(w.AddUint32("llama.embedding_length", 256).ok());
  EXPECT_TRUE(w.AddUint32("llama.feed_forward_length", 512).ok());
  EXPECT_TRUE(w.AddUint32("llama.block_count", 2).ok());
  EXPECT_TRUE(w.AddUint32("llama.attention.head_count", 4).ok());
  EXPECT_TRUE(w.AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-6f).ok());
  EXPECT_TRUE(w.AddStringArray("tokenizer.ggml.tokens", {"a", "b", "c"}).ok());
  return w;
}

absl::StatusOr<ModelConfig> FromWriter(const GgufWriter& w, std::string* image) {
  *image = *w.Serialize();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(
      "cfg.gguf", reinterpret_cast<const uint8_t*>(image->data()), image->size());
  if (!f.ok()) return f.status();
  return ModelConfigFromGguf(**f);
}

TEST(ModelConfig, GgufDefaultsAndScalingKeys) {
  std::string image;
  absl::StatusOr<ModelConfig> c = FromWriter(SmallLlamaGguf(), &image);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 4);        // defaults to head_count
  EXPECT_EQ(c->rope_theta, 10000.0);    // default freq_base
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rope_dim, 64);
  EXPECT_EQ(c->vocab_size, 3);          // from tokenizer.ggml.tokens
  EXPECT_TRUE(c->tie_word_embeddings);  // no output.weight

  GgufWriter yarn = SmallLlamaGguf();
  ASSERT_TRUE(yarn.AddString("llama.rope.scaling.type", "yarn").ok());
  ASSERT_TRUE(yarn.AddFloat32("llama.rope.scaling.factor", 4.0f).ok());
  ASSERT_TRUE(yarn.AddUint32("llama.rope.scaling.original_context_length", 1024).ok());
  ASSERT_TRUE(yarn.AddUint32("llama.attention.key_length", 32).ok());
  ASSERT_TRUE(yarn.AddUint32("llama.vocab_size", 7).ok());
  float outw[256 * 7] = {};
  ASSERT_TRUE(yarn.AddTensorRowMajor("output.weight", DType::kF32, {7, 256}, outw,
                                     sizeof(outw)).ok());
  float freqs[16] = {};
  ASSERT_TRUE(yarn.AddTensor("rope_freqs.weight", DType::kF32, {16}, freqs, sizeof(freqs)).ok());
  c = FromWriter(yarn, &image);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(c->rope_scaling.factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 1024);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->vocab_size, 7);
  EXPECT_TRUE(c->has_rope_freqs);
  EXPECT_FALSE(c->tie_word_embeddings);

  GgufWriter old_linear = SmallLlamaGguf();
  ASSERT_TRUE(old_linear.AddFloat32("llama.rope.scale_linear", 2.0f).ok());
  c = FromWriter(old_linear, &image);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_EQ(c->rope_scaling.factor, 2.0);
}

TEST(ModelConfig, AddModelConfigToGgufRoundTrips) {
  ModelConfig base;
  base.name = "round-trip";
  base.vocab_size = 300;
  base.hidden_size = 128;
  base.intermediate_size = 320;
  base.num_layers = 3;
  base.num_heads = 4;
  base.num_kv_heads = 2;
  base.head_dim = 64;
  base.rope_dim = 32;
  base.max_position_embeddings = 4096;
  base.rms_norm_eps = static_cast<float>(1e-6);
  base.rope_theta = 500000.0;
  base.tie_word_embeddings = true;
  ModelConfig linear = base;
  linear.rope_scaling.type = RopeScalingType::kLinear;
  linear.rope_scaling.factor = 2.0;
  ModelConfig yarn = base;
  yarn.rope_scaling.type = RopeScalingType::kYarn;
  yarn.rope_scaling.factor = 4.0;
  yarn.rope_scaling.original_max_position_embeddings = 1024;
  yarn.rope_scaling.beta_fast = 16.0;
  yarn.rope_scaling.beta_slow = 2.0;
  yarn.rope_scaling.attn_factor = 0.5;
  for (const ModelConfig& want : {base, linear, yarn}) {
    GgufWriter w;
    ASSERT_TRUE(AddModelConfigToGguf(want, w).ok());
    std::string image;
    absl::StatusOr<ModelConfig> got = FromWriter(w, &image);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want);
  }
  ModelConfig llama3 = base;
  llama3.rope_scaling.type = RopeScalingType::kLlama3;
  GgufWriter w;
  absl::Status s = AddModelConfigToGguf(llama3, w);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("rope_freqs"));
}

TEST(ModelConfig, GgufErrorsNameFileAndKey) {
  std::string image;
  GgufWriter no_arch;
  absl::StatusOr<ModelConfig> c = FromWriter(no_arch, &image);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("general.architecture"));

  GgufWriter gpt2;
  ASSERT_TRUE(gpt2.AddString("general.architecture", "gpt2").ok());
  c = FromWriter(gpt2, &image);
  EXPECT_THAT(c.status().message(), HasSubstr("unsupported architecture 'gpt2'"));

  GgufWriter bad_kv = SmallLlamaGguf();
  ASSERT_TRUE(bad_kv.AddUint32("llama.attention.head_count_kv", 3).ok());
  c = FromWriter(bad_kv, &image);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("cfg.gguf"));
  EXPECT_THAT(c.status().message(), HasSubstr("num_kv_heads"));

  GgufWriter wrong_type = SmallLlamaGguf();
  ASSERT_TRUE(wrong_type.AddString("llama.rope.freq_base", "big").ok());
  c = FromWriter(wrong_type, &image);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("llama.rope.freq_base"));

  GgufWriter bad_scaling = SmallLlamaGguf();
  ASSERT_TRUE(bad_scaling.AddString("llama.rope.scaling.type", "longrope").ok());
  c = FromWriter(bad_scaling, &image);
  EXPECT_THAT(c.status().message(), HasSubstr("llama.rope.scaling.type"));
}

TEST(ModelConfig, ValidateNamesTheField) {
  ModelConfig c = *ModelConfigFromHfConfig(Llama3Json());
  ASSERT_TRUE(c.Validate().ok());
  ModelConfig bad = c;
  bad.num_layers = 0;
  EXPECT_THAT(bad.Validate().message(), HasSubstr("num_layers"));
  bad = c;
  bad.rope_dim = 65;
  EXPECT_THAT(bad.Validate().message(), HasSubstr("rope_dim"));
  bad = c;
  bad.rms_norm_eps = 0;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.Validate().message(), HasSubstr("rms_norm_eps"));
  bad = c;
  bad.has_rope_freqs = true;  // with llama3 scaling
  EXPECT_THAT(bad.Validate().message(), HasSubstr("rope_scaling"));
}

TEST(ModelConfig, ValidateRejectsSizesWhoseProductsOverflow) {
  ModelConfig c = *ModelConfigFromHfConfig(Llama3Json());
  ModelConfig bad = c;
  bad.num_heads = int64_t{1} << 40;  // x head_dim would overflow consumers' int64 math
  bad.num_kv_heads = bad.num_heads;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.Validate().message(), HasSubstr("num_heads"));
  bad = c;
  bad.vocab_size = kMaxModelDim;
  EXPECT_TRUE(bad.Validate().ok());
  bad.vocab_size = kMaxModelDim + 1;
  EXPECT_THAT(bad.Validate().message(), HasSubstr("vocab_size"));
  // From config.json the error names the file too.
  json j = Llama3Json();
  j["hidden_size"] = int64_t{1} << 50;
  ExpectHfError(j, "hidden_size");
}

}  // namespace
}  // namespace tessera
