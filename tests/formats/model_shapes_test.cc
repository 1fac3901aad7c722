// The named model shapes: their parameter counts against the published sizes, the default
// model's file and config.json, and lookup errors.
#include "formats/model_shapes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/gguf_reader.h"
#include "formats/hf_config.h"
#include "formats/model_locator.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

ModelConfig ShapeConfig(const std::string& name) {
  absl::StatusOr<ModelShape> s = FindModelShape(name);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? s->config : ModelConfig{};
}

TEST(ModelShapes, ParameterCountsMatchThePublishedModels) {
  // Exact counts of the Hugging Face checkpoints (sum of their tensors' elements).
  EXPECT_EQ(ParameterCount(ShapeConfig("smollm2-135m")), 134'515'008);
  EXPECT_EQ(ParameterCount(ShapeConfig("smollm2-360m")), 361'821'120);
  EXPECT_EQ(ParameterCount(ShapeConfig("llama-3.2-1b")), 1'235'814'400);
  EXPECT_EQ(ParameterCount(ShapeConfig("llama-3.2-3b")), 3'212'749'824);
  EXPECT_EQ(ParameterCount(ShapeConfig("llama-3-8b")), 8'030'261'248);
  EXPECT_EQ(ParameterCount(ShapeConfig("llama-3-70b")), 70'553'706'496);
}

TEST(ModelShapes, EveryShapeValidatesAndIsFoundByName) {
  ASSERT_GE(KnownModelShapes().size(), 7u);
  for (const ModelShape& s : KnownModelShapes()) {
    EXPECT_TRUE(s.config.Validate().ok()) << s.name << ": " << s.config.Validate();
    EXPECT_EQ(s.config.name, s.name);
    EXPECT_FALSE(s.description.empty()) << s.name;
    absl::StatusOr<ModelShape> found = FindModelShape(s.name);
    ASSERT_TRUE(found.ok()) << s.name;
    EXPECT_EQ(found->config, s.config);
  }
  const ModelConfig c = ShapeConfig("llama-3-8b");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(ShapeConfig("llama-3.2-1b").rope_scaling.type, RopeScalingType::kLlama3);
}

TEST(ModelShapes, SmolLM2MatchesThePublishedConfigJson) {
  const std::string fixture = std::string(TESSERA_SOURCE_DIR) +
                              "/tests/fixtures/formats/smollm2_135m_instruct/config.json";
  absl::StatusOr<ModelConfig> hf = ModelConfigFromHfConfigFile(fixture);
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_TRUE(HyperParametersEqual(ShapeConfig("smollm2-135m"), *hf));
}

TEST(ModelShapes, SmolLM2MatchesTheDefaultModelFile) {
  absl::StatusOr<std::string> path = ResolveModelPath("default");
  if (!path.ok()) GTEST_SKIP() << "the default model is not fetched: " << path.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(*path);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<ModelConfig> from_file = ModelConfigFromGguf(**file);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_TRUE(HyperParametersEqual(ShapeConfig("smollm2-135m"), *from_file));
  int64_t elements = 0;
  for (const GgufTensorInfo& t : (*file)->tensors()) elements += t.view.NumElements();
  EXPECT_EQ(ParameterCount(*from_file), elements);
}

TEST(ModelShapes, UnknownNameListsTheKnownOnes) {
  absl::StatusOr<ModelShape> s = FindModelShape("llama-9-1t");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              ::testing::AllOf(HasSubstr("llama-9-1t"), HasSubstr("smollm2-135m"), HasSubstr("llama-3-8b"),
                    HasSubstr("tiny")));
  EXPECT_THAT(KnownModelShapeNames(), HasSubstr("tiny, smollm2-135m"));
}

}  // namespace
}  // namespace tessera
