// SmolLM2-135M-Instruct's real vocabulary (the default model) against encodings made by
// Hugging Face `tokenizers` (tests/fixtures/tokenizer/make_smollm2_fixture.py), plus the
// model's special ids, stop ids and flags.
#include <fstream>
#include <sstream>

#include "absl/strings/str_join.h"
#include "formats/gguf_reader.h"
#include "formats/model_locator.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"

namespace tessera {
namespace {

class SmolLm2TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto path = ResolveModelPath("default");
    ASSERT_TRUE(path.ok()) << "the default model is missing (run scripts/fetch_model.py): "
                           << path.status();
    auto file = GgufFile::Open(*path);
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = file->release();
    auto tok = Tokenizer::FromGguf(*file_);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = tok->release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete file_;
    tok_ = nullptr;
    file_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tok_, nullptr); }

  static GgufFile* file_;
  static Tokenizer* tok_;
};
GgufFile* SmolLm2TokenizerTest::file_ = nullptr;
Tokenizer* SmolLm2TokenizerTest::tok_ = nullptr;

TEST_F(SmolLm2TokenizerTest, MatchesHuggingFaceTokenizers) {
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) +
                   "/tests/fixtures/tokenizer/smollm2_encodings.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  const EncodeOptions options{.add_bos = false, .parse_special = true, .add_eos = false};
  ASSERT_GE(fixture["cases"].size(), 10u);
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"];
    const std::vector<int32_t> expected = c["ids"];
    auto ids = tok_->Encode(text, options);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(absl::StrJoin(*ids, " "), absl::StrJoin(expected, " ")) << "text: " << text;
    auto decoded = tok_->Decode(*ids);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, text);
  }
}

TEST_F(SmolLm2TokenizerTest, SpecialIdsAndFlags) {
  EXPECT_EQ(tok_->vocab_size(), 49152);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_FALSE(tok_->add_bos_default());
  EXPECT_EQ(tok_->TokenId("<|im_start|>"), 1);
  EXPECT_EQ(tok_->TokenId("<|im_end|>"), 2);
  EXPECT_EQ(tok_->TokenId("no such token text"), -1);
  EXPECT_TRUE(tok_->IsSpecial(2));
  EXPECT_FALSE(tok_->IsSpecial(19556));
  // <|endoftext|> (0) and <|im_end|> (2) both end generation.
  EXPECT_EQ(tok_->stop_ids(), (std::vector<int32_t>{0, 2}));
  EXPECT_NE(tok_->chat_template().find("<|im_start|>"), std::string::npos);
}

TEST_F(SmolLm2TokenizerTest, SpecialTextIsPlainWhenNotParsed) {
  const EncodeOptions plain{.add_bos = true, .parse_special = false, .add_eos = true};
  auto ids = tok_->Encode("<|im_end|>", plain);
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 1u);
  for (int32_t id : *ids) EXPECT_FALSE(tok_->IsSpecial(id));
  auto back = tok_->Decode(*ids);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "<|im_end|>");
}

TEST_F(SmolLm2TokenizerTest, SkipSpecialDropsControlTokens) {
  const std::vector<int32_t> ids = {1, 4093, 198, 26843, 665, 2};
  auto with = tok_->Decode(ids, /*skip_special=*/false);
  auto without = tok_->Decode(ids, /*skip_special=*/true);
  ASSERT_TRUE(with.ok());
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(*with, "<|im_start|>user\nHi there<|im_end|>");
  EXPECT_EQ(*without, "user\nHi there");
}

TEST_F(SmolLm2TokenizerTest, LongPromptEncodesAndRoundTrips) {
  std::string text;
  for (int i = 0; i < 60; ++i) {
    text += "Line " + std::to_string(i) + ": the café serves 3 kinds of 🍵 tea, isn't it?\n";
  }
  auto ids = tok_->Encode(text, EncodeOptions{});
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 512u);
  auto back = tok_->Decode(*ids);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, text);
}

}  // namespace
}  // namespace tessera
