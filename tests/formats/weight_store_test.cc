// WeightStore: GGUF passthrough, and HF checkpoints that must look exactly like the GGUF
// conversion of the same weights (names, Q/K permutation, F32 norms, rope_freqs, config).
#include "formats/weight_store.h"

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "common/half.h"
#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "formats/hf_tensor_names.h"
#include "formats/model_locator.h"
#include "tests/formats/safetensors_builder.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::BytesOf;
using testing::SafetensorsBuilder;
namespace fs = std::filesystem;

TEST(HfTensorNames, MapsLlamaNames) {
  EXPECT_EQ(GgufNameForHfTensor("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(GgufNameForHfTensor("model.norm.weight"), "output_norm.weight");
  EXPECT_EQ(GgufNameForHfTensor("lm_head.weight"), "output.weight");
  EXPECT_EQ(GgufNameForHfTensor("model.layers.0.self_attn.q_proj.weight"), "blk.0.attn_q.weight");
  EXPECT_EQ(GgufNameForHfTensor("model.layers.12.self_attn.o_proj.weight"),
            "blk.12.attn_output.weight");
  EXPECT_EQ(GgufNameForHfTensor("model.layers.3.mlp.down_proj.weight"), "blk.3.ffn_down.weight");
  EXPECT_EQ(GgufNameForHfTensor("model.layers.3.post_attention_layernorm.weight"),
            "blk.3.ffn_norm.weight");
  EXPECT_EQ(GgufNameForHfTensor("model.layers.x.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(GgufNameForHfTensor("model.layers.1.self_attn.q_proj.bias"), std::nullopt);
  EXPECT_EQ(GgufNameForHfTensor("transformer.wte.weight"), std::nullopt);
  // A leading zero would alias layer 1: "01" and "1" must not both reach blk.1.
  EXPECT_EQ(GgufNameForHfTensor("model.layers.01.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(GgufNameForHfTensor("model.layers.10.mlp.up_proj.weight"), "blk.10.ffn_up.weight");
}

TEST(HfTensorNames, PermuteRowsForRopeOnOneHead) {
  // head_dim 6: HF rows (x0 x1 x2 | y0 y1 y2) -> GGUF (x0 y0 x1 y1 x2 y2); two heads.
  const std::vector<int32_t> src = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
  std::vector<int32_t> dst(12);
  PermuteRowsForRope(src.data(), dst.data(), 12, sizeof(int32_t), 2);
  EXPECT_THAT(dst, ElementsAre(0, 3, 1, 4, 2, 5, 10, 13, 11, 14, 12, 15));
}

// ---- A tiny Llama written both ways -------------------------------------------------------

constexpr int64_t kVocab = 10, kHidden = 16, kHeads = 4, kKvHeads = 2, kHeadDim = 4,
                  kFfn = 24, kLayers = 2, kCtx = 64;

struct Weights {
  std::map<std::string, std::vector<int64_t>> shapes;  // HF names, row-major
  std::map<std::string, std::vector<double>> values;
};

Weights MakeWeights(bool with_lm_head) {
  Weights w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) { w.shapes[name] = shape; };
  add("model.embed_tokens.weight", {kVocab, kHidden});
  add("model.norm.weight", {kHidden});
  if (with_lm_head) add("lm_head.weight", {kVocab, kHidden});
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "self_attn.q_proj.weight", {kHeads * kHeadDim, kHidden});
    add(p + "self_attn.k_proj.weight", {kKvHeads * kHeadDim, kHidden});
    add(p + "self_attn.v_proj.weight", {kKvHeads * kHeadDim, kHidden});
    add(p + "self_attn.o_proj.weight", {kHidden, kHeads * kHeadDim});
    add(p + "mlp.gate_proj.weight", {kFfn, kHidden});
    add(p + "mlp.up_proj.weight", {kFfn, kHidden});
    add(p + "mlp.down_proj.weight", {kHidden, kFfn});
    add(p + "input_layernorm.weight", {kHidden});
    add(p + "post_attention_layernorm.weight", {kHidden});
  }
  std::mt19937 rng(42);
  for (const auto& [name, shape] : w.shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<double>& v = w.values[name];
    // Multiples of 1/64 in [-2, 2): exact in bf16, f32 and f64, so no rounding enters.
    for (int64_t i = 0; i < n; ++i) v.push_back(static_cast<int>(rng() % 256) / 64.0 - 2.0);
  }
  return w;
}

std::string Encode(const std::vector<double>& v, DType dtype) {
  std::string out;
  for (double x : v) {
    if (dtype == DType::kF32) {
      const float f = static_cast<float>(x);
      out.append(reinterpret_cast<const char*>(&f), 4);
    } else {
      const uint16_t b = FloatToBf16(static_cast<float>(x));
      out.append(reinterpret_cast<const char*>(&b), 2);
    }
  }
  return out;
}

// numpy: w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols),
// written as explicit 4-D indexing.
std::vector<double> ReferencePermute(const std::vector<double>& w, int64_t rows, int64_t cols,
                                     int64_t n_head) {
  const int64_t half = rows / n_head / 2;
  std::vector<double> out(w.size());
  // out has shape [n_head, half, 2, cols]; out[h][a][b][c] = w[h][b][a][c].
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t a = 0; a < half; ++a)
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t c = 0; c < cols; ++c)
          out[((h * half + a) * 2 + b) * cols + c] = w[((h * 2 + b) * half + a) * cols + c];
  return out;
}

std::string GgufNameInTest(const std::string& hf) {
  static const std::map<std::string, std::string> kTop = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  static const std::map<std::string, std::string> kLayer = {
      {"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"}, {"self_attn.o_proj.weight", "attn_output.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},   {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},   {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"}};
  if (kTop.count(hf)) return kTop.at(hf);
  const size_t a = std::string("model.layers.").size();
  const size_t b = hf.find('.', a);
  return "blk." + hf.substr(a, b - a) + "." + kLayer.at(hf.substr(b + 1));
}

nlohmann::json HfConfig(bool tied) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", kHidden},
          {"intermediate_size", kFfn},
          {"num_hidden_layers", kLayers},
          {"num_attention_heads", kHeads},
          {"num_key_value_heads", kKvHeads},
          {"max_position_embeddings", kCtx},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"vocab_size", kVocab},
          {"tie_word_embeddings", tied},
          {"rope_scaling", nullptr},
          {"torch_dtype", "float32"}};
}

// The GGUF llama.cpp's converter would make (tensors in `dtype`, 1-D ones in F32).
void WriteReferenceGguf(const Weights& w, DType dtype, const std::string& path,
                        const std::vector<double>* rope_freqs) {
  GgufWriter g;
  ASSERT_TRUE(g.AddString("general.architecture", "llama").ok());
  ASSERT_TRUE(g.AddString("general.name", "tiny").ok());
  ASSERT_TRUE(g.AddUint32("llama.context_length", kCtx).ok());
  ASSERT_TRUE(g.AddUint32("llama.embedding_length", kHidden).ok());
  ASSERT_TRUE(g.AddUint32("llama.feed_forward_length", kFfn).ok());
  ASSERT_TRUE(g.AddUint32("llama.block_count", kLayers).ok());
  ASSERT_TRUE(g.AddUint32("llama.attention.head_count", kHeads).ok());
  ASSERT_TRUE(g.AddUint32("llama.attention.head_count_kv", kKvHeads).ok());
  ASSERT_TRUE(g.AddFloat32("llama.rope.freq_base", 10000.0f).ok());
  ASSERT_TRUE(g.AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f).ok());
  ASSERT_TRUE(g.AddUint32("llama.vocab_size", kVocab).ok());
  ASSERT_TRUE(g.AddUint32("llama.rope.dimension_count", kHeadDim).ok());
  for (const auto& [name, shape] : w.shapes) {
    std::vector<double> v = w.values.at(name);
    if (name.find("q_proj") != std::string::npos) v = ReferencePermute(v, shape[0], shape[1], kHeads);
    if (name.find("k_proj") != std::string::npos) v = ReferencePermute(v, shape[0], shape[1], kKvHeads);
    const DType t = shape.size() == 1 ? DType::kF32 : dtype;
    const std::string bytes = Encode(v, t);
    ASSERT_TRUE(g.AddTensorRowMajor(GgufNameInTest(name), t, shape, bytes.data(), bytes.size()).ok());
  }
  if (rope_freqs != nullptr) {
    const std::string bytes = Encode(*rope_freqs, DType::kF32);
    ASSERT_TRUE(g.AddTensor("rope_freqs.weight", DType::kF32,
                            {static_cast<int64_t>(rope_freqs->size())}, bytes.data(),
                            bytes.size()).ok());
  }
  ASSERT_TRUE(g.WriteFile(path).ok());
}

class WeightStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("ws_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "hf");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteHf(const Weights& w, DType dtype, const nlohmann::json& config, int shards) {
    std::ofstream(dir_ / "hf" / "config.json") << config.dump(2);
    std::vector<SafetensorsBuilder> b(static_cast<size_t>(shards));
    nlohmann::json weight_map;
    int i = 0;
    for (const auto& [name, shape] : w.shapes) {
      const int s = i++ % shards;
      b[s].Add(name, dtype == DType::kF32 ? "F32" : "BF16", shape, Encode(w.values.at(name), dtype));
      weight_map[name] = ShardName(s, shards);
    }
    if (shards == 1) {
      // Data at 2 mod 4: F32 tensors that are not 4-byte aligned, which the store must copy.
      b[0].Write((dir_ / "hf" / "model.safetensors").string(), 4, 2);
      return;
    }
    for (int s = 0; s < shards; ++s) b[s].Write((dir_ / "hf" / ShardName(s, shards)).string());
    std::ofstream(dir_ / "hf" / "model.safetensors.index.json")
        << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump();
  }
  static std::string ShardName(int s, int n) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "model-%05d-of-%05d.safetensors", s + 1, n);
    return buf;
  }

  void ExpectSameStores(const WeightStore& hf, const WeightStore& gguf, double freqs_tol) {
    EXPECT_TRUE(HyperParametersEqual(hf.config(), gguf.config()));
    std::vector<std::string> a = hf.TensorNames(), b = gguf.TensorNames();
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    ASSERT_EQ(a, b);
    EXPECT_EQ(hf.TotalBytes(), gguf.TotalBytes());
    for (const std::string& name : a) {
      const TensorView x = *hf.Get(name), y = *gguf.Get(name);
      EXPECT_EQ(x.dtype, y.dtype) << name;
      EXPECT_EQ(x.shape, y.shape) << name;
      ASSERT_EQ(x.NumBytes(), y.NumBytes()) << name;
      if (x.dtype == DType::kF32) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data) % 4, 0u) << name;
      }
      if (name == "rope_freqs.weight") {
        for (int64_t i = 0; i < x.NumElements(); ++i) {
          const float fx = static_cast<const float*>(x.data)[i];
          const float fy = static_cast<const float*>(y.data)[i];
          EXPECT_NEAR(fx, fy, freqs_tol * fy) << i;
        }
        continue;
      }
      EXPECT_EQ(std::memcmp(x.data, y.data, static_cast<size_t>(x.NumBytes())), 0) << name;
    }
  }

  fs::path dir_;
};

TEST_F(WeightStoreTest, HfF32SingleFileMatchesGguf) {
  const Weights w = MakeWeights(/*with_lm_head=*/true);
  WriteHf(w, DType::kF32, HfConfig(/*tied=*/false), 1);
  WriteReferenceGguf(w, DType::kF32, (dir_ / "ref.gguf").string(), nullptr);
  absl::StatusOr<std::unique_ptr<WeightStore>> hf = OpenWeightStore((dir_ / "hf").string());
  ASSERT_TRUE(hf.ok()) << hf.status();
  absl::StatusOr<std::unique_ptr<WeightStore>> gguf = OpenWeightStore((dir_ / "ref.gguf").string());
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_EQ((*hf)->gguf(), nullptr);
  EXPECT_NE((*gguf)->gguf(), nullptr);
  EXPECT_FALSE((*hf)->config().tie_word_embeddings);
  EXPECT_TRUE((*hf)->Has("output.weight"));
  ExpectSameStores(**hf, **gguf, 0);
  // Opening the .safetensors file directly finds config.json beside it.
  absl::StatusOr<std::unique_ptr<WeightStore>> file =
      OpenWeightStore((dir_ / "hf" / "model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status();
  ExpectSameStores(**file, **gguf, 0);
}

TEST_F(WeightStoreTest, HfBf16ShardedTiedMatchesGguf) {
  const Weights w = MakeWeights(/*with_lm_head=*/false);
  WriteHf(w, DType::kBF16, HfConfig(/*tied=*/true), 3);
  WriteReferenceGguf(w, DType::kBF16, (dir_ / "ref.gguf").string(), nullptr);
  absl::StatusOr<std::unique_ptr<WeightStore>> hf = OpenWeightStore((dir_ / "hf").string());
  ASSERT_TRUE(hf.ok()) << hf.status();
  absl::StatusOr<std::unique_ptr<WeightStore>> gguf = OpenWeightStore((dir_ / "ref.gguf").string());
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_TRUE((*hf)->config().tie_word_embeddings);
  EXPECT_EQ((*hf)->Get("blk.0.attn_norm.weight")->dtype, DType::kF32);
  EXPECT_EQ((*hf)->Get("blk.1.ffn_up.weight")->dtype, DType::kBF16);
  ExpectSameStores(**hf, **gguf, 0);
}

TEST_F(WeightStoreTest, HfLlama3ScalingBecomesRopeFreqsTensor) {
  Weights w = MakeWeights(/*with_lm_head=*/true);
  nlohmann::json cfg = HfConfig(false);
  cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  WriteHf(w, DType::kF32, cfg, 1);
  // float64 reference of llama.cpp's rope_freqs for head_dim 4, theta 1e4.
  std::vector<double> freqs;
  for (int i = 0; i < kHeadDim; i += 2) {
    const double wavelen = 2 * M_PI * std::pow(10000.0, static_cast<double>(i) / kHeadDim);
    if (wavelen < 16 / 4.0) freqs.push_back(1.0);
    else if (wavelen > 16 / 1.0) freqs.push_back(8.0);
    else {
      const double smooth = (16 / wavelen - 1.0) / (4.0 - 1.0);
      freqs.push_back(1.0 / ((1 - smooth) / 8.0 + smooth));
    }
  }
  WriteReferenceGguf(w, DType::kF32, (dir_ / "ref.gguf").string(), &freqs);
  absl::StatusOr<std::unique_ptr<WeightStore>> hf = OpenWeightStore((dir_ / "hf").string());
  ASSERT_TRUE(hf.ok()) << hf.status();
  absl::StatusOr<std::unique_ptr<WeightStore>> gguf = OpenWeightStore((dir_ / "ref.gguf").string());
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_TRUE((*hf)->config().has_rope_freqs);
  EXPECT_EQ((*hf)->config().rope_scaling.type, RopeScalingType::kNone);
  EXPECT_TRUE((*gguf)->config().has_rope_freqs);
  ExpectSameStores(**hf, **gguf, 1e-5);
}

TEST_F(WeightStoreTest, HfErrors) {
  Weights w = MakeWeights(true);
  w.shapes["model.layers.0.self_attn.rotary_emb.inv_freq"] = {2};
  w.values["model.layers.0.self_attn.rotary_emb.inv_freq"] = {1, 2};
  WriteHf(w, DType::kF32, HfConfig(false), 1);
  EXPECT_TRUE(OpenWeightStore((dir_ / "hf").string()).ok());  // inv_freq is skipped

  w.shapes["model.vision_tower.weight"] = {2};
  w.values["model.vision_tower.weight"] = {1, 2};
  WriteHf(w, DType::kF32, HfConfig(false), 1);
  absl::Status s = OpenWeightStore((dir_ / "hf").string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.vision_tower.weight"));

  // "layers.01" would alias "layers.1" (both blk.1): rejected, not silently dropped.
  Weights alias = MakeWeights(true);
  alias.shapes["model.layers.01.mlp.up_proj.weight"] =
      alias.shapes.at("model.layers.1.mlp.up_proj.weight");
  alias.values["model.layers.01.mlp.up_proj.weight"] =
      alias.values.at("model.layers.1.mlp.up_proj.weight");
  WriteHf(alias, DType::kF32, HfConfig(false), 1);
  s = OpenWeightStore((dir_ / "hf").string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.layers.01.mlp.up_proj.weight"));

  Weights no_head = MakeWeights(false);
  WriteHf(no_head, DType::kF32, HfConfig(/*tied=*/false), 1);
  s = OpenWeightStore((dir_ / "hf").string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("lm_head.weight"));

  Weights bad_q = MakeWeights(true);
  bad_q.shapes["model.layers.1.self_attn.q_proj.weight"] = {kHidden - 2, kHidden + 2};
  WriteHf(bad_q, DType::kF32, HfConfig(false), 1);
  s = OpenWeightStore((dir_ / "hf").string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.layers.1.self_attn.q_proj.weight"));

  fs::remove(dir_ / "hf" / "config.json");
  s = OpenWeightStore((dir_ / "hf").string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("config.json"));

  EXPECT_EQ(OpenWeightStore((dir_ / "none.gguf").string()).status().code(),
            absl::StatusCode::kNotFound);
  std::ofstream(dir_ / "notes.txt") << "hello";
  s = OpenWeightStore((dir_ / "notes.txt").string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("notes.txt"));
  // A FIFO is refused without sniffing it (reading its magic would wait for a writer).
  const std::string pipe = (dir_ / "pipe").string();
  ASSERT_EQ(::mkfifo(pipe.c_str(), 0600), 0);
  s = OpenWeightStore(pipe).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(pipe));
}

TEST(GgufWeightStore, DefaultModel) {
  absl::StatusOr<std::string> path = ResolveModelPath("default");
  ASSERT_TRUE(path.ok()) << "the default model is needed for this test: " << path.status();
  absl::StatusOr<std::unique_ptr<WeightStore>> store = OpenWeightStore(*path);
  ASSERT_TRUE(store.ok()) << store.status();
  const WeightStore& s = **store;
  ASSERT_NE(s.gguf(), nullptr);
  EXPECT_EQ(s.config().num_layers, 30);
  EXPECT_EQ(s.TensorNames().size(), 272u);
  absl::StatusOr<TensorView> embd = s.Get("token_embd.weight");
  ASSERT_TRUE(embd.ok());
  EXPECT_EQ(embd->dtype, DType::kQ8_0);
  EXPECT_THAT(embd->shape, ElementsAre(49152, 576));
  EXPECT_TRUE(s.Has("blk.29.ffn_down.weight"));
  absl::Status missing = s.Get("output.weight").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("output.weight"));
  EXPECT_THAT(missing.message(), HasSubstr(*path));
  EXPECT_GT(s.TotalBytes(), 90'000'000);
  EXPECT_LT(s.TotalBytes(), static_cast<int64_t>(fs::file_size(*path)));
}

}  // namespace
}  // namespace tessera
