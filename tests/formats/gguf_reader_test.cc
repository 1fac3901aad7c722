// GgufFile on the real default model (SmolLM2-135M-Instruct Q4_1).
#include "formats/gguf_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/model_locator.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class DefaultModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> path = ResolveModelPath("default");
    ASSERT_TRUE(path.ok()) << "the default model is needed for this test: " << path.status();
    absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(*path);
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(file).value().release();
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  static GgufFile* file_;
};
GgufFile* DefaultModelTest::file_ = nullptr;

TEST_F(DefaultModelTest, Header) {
  ASSERT_NE(file_, nullptr);
  EXPECT_EQ(file_->version(), 3u);
  EXPECT_EQ(file_->alignment(), 32u);  // no general.alignment key: the default
  EXPECT_EQ(file_->data_offset() % 32, 0u);
  EXPECT_EQ(file_->tensors().size(), 272u);
  EXPECT_EQ(file_->metadata().size(), 33u);
  EXPECT_EQ(file_->metadata().front().first, "general.architecture");
}

TEST_F(DefaultModelTest, MetadataValuesAndTypes) {
  ASSERT_NE(file_, nullptr);
  EXPECT_EQ(*file_->GetString("general.architecture"), "llama");
  EXPECT_EQ(*file_->GetInt("llama.block_count"), 30);
  EXPECT_EQ(file_->Find("llama.block_count")->type, GgufType::kUint32);
  EXPECT_EQ(*file_->GetInt("llama.embedding_length"), 576);
  EXPECT_FLOAT_EQ(static_cast<float>(*file_->GetFloat("llama.rope.freq_base")), 100000.0f);
  EXPECT_EQ(file_->Find("llama.rope.freq_base")->type, GgufType::kFloat32);
  EXPECT_FLOAT_EQ(static_cast<float>(*file_->GetFloat("llama.attention.layer_norm_rms_epsilon")),
                  1e-5f);
  EXPECT_EQ(*file_->GetBool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_EQ(*file_->GetString("tokenizer.ggml.pre"), "smollm");
  absl::StatusOr<std::vector<std::string>> tokens = file_->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 49152u);
  EXPECT_EQ((*tokens)[0], "<|endoftext|>");
  absl::StatusOr<std::vector<int64_t>> types = file_->GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(types.ok()) << types.status();
  EXPECT_EQ(types->size(), 49152u);
  EXPECT_EQ(file_->GetStringArray("tokenizer.ggml.merges")->size(), 48900u);
  EXPECT_THAT(*file_->GetStringArray("general.languages"), ElementsAre("en"));
}

TEST_F(DefaultModelTest, GetterErrorsNameFileAndKey) {
  ASSERT_NE(file_, nullptr);
  absl::StatusOr<int64_t> missing = file_->GetInt("llama.no_such_key");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("llama.no_such_key"));
  EXPECT_THAT(missing.status().message(), HasSubstr(file_->path()));
  absl::StatusOr<std::string> wrong = file_->GetString("llama.block_count");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("llama.block_count"));
  EXPECT_THAT(wrong.status().message(), HasSubstr("uint32"));
  EXPECT_EQ(file_->GetIntArray("tokenizer.ggml.tokens").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetBool("general.name").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DefaultModelTest, Tensors) {
  ASSERT_NE(file_, nullptr);
  const GgufTensorInfo* embd = file_->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dtype, DType::kQ8_0);
  EXPECT_THAT(embd->ne, ElementsAre(576, 49152));
  EXPECT_THAT(embd->view.shape, ElementsAre(49152, 576));
  EXPECT_EQ(embd->num_bytes, 49152LL * 576 / 32 * 34);
  EXPECT_EQ(embd->view.NumBytes(), embd->num_bytes);
  const GgufTensorInfo* down = file_->FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dtype, DType::kQ4_1);
  EXPECT_THAT(down->view.shape, ElementsAre(576, 1536));
  const GgufTensorInfo* norm = file_->FindTensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->dtype, DType::kF32);
  EXPECT_THAT(norm->view.shape, ElementsAre(576));
  EXPECT_EQ(file_->FindTensor("output.weight"), nullptr);  // tied embeddings
  for (const GgufTensorInfo& t : file_->tensors()) {
    EXPECT_EQ(t.offset % file_->alignment(), 0u) << t.name;
    EXPECT_EQ(static_cast<const uint8_t*>(t.view.data) -
                  static_cast<const uint8_t*>(file_->tensors()[0].view.data),
              static_cast<int64_t>(t.offset - file_->tensors()[0].offset));
  }
}

TEST(GgufFileOpen, MissingFileIsNotFound) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open("/nonexistent/dir/x.gguf");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/dir/x.gguf"));
}

}  // namespace
}  // namespace tessera
