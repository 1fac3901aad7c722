// The GGUF adapter: tokenizer.* keys of small in-memory GGUF files -> a working tokenizer,
// and each kind of bad metadata -> INVALID_ARGUMENT naming the key (and the file).
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

struct Options {
  std::string model = "gpt2";
  std::string pre = "gpt-2";
  bool with_model = true;
  uint32_t bos = 257;
  size_t scores = 0;  // number of scores to write (0: none)
};

// 256 byte tokens, "ab" (one merge) and a control "<s>"; the image outlives the file.
class TinyGguf {
 public:
  explicit TinyGguf(const Options& o) {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) {
      std::string t;
      AppendUtf8(ByteToGpt2Codepoint(static_cast<uint8_t>(b)), &t);
      tokens.push_back(t);
    }
    tokens.push_back("ab");
    tokens.push_back("<s>");
    std::vector<int32_t> types(tokens.size(), 1);
    types.back() = 3;
    GgufWriter w;
    if (o.with_model) {
      EXPECT_TRUE(w.AddString("tokenizer.ggml.model", o.model).ok());
    }
    EXPECT_TRUE(w.AddString("tokenizer.ggml.pre", o.pre).ok());
    EXPECT_TRUE(w.AddStringArray("tokenizer.ggml.tokens", tokens).ok());
    EXPECT_TRUE(w.AddValue("tokenizer.ggml.token_type", GgufValue::I32Array(types)).ok());
    EXPECT_TRUE(w.AddStringArray("tokenizer.ggml.merges", {"a b"}).ok());
    if (o.scores > 0) {
      EXPECT_TRUE(w.AddValue("tokenizer.ggml.scores",
                             GgufValue::F32Array(std::vector<float>(o.scores, 0.0f)))
                      .ok());
    }
    EXPECT_TRUE(w.AddUint32("tokenizer.ggml.bos_token_id", o.bos).ok());
    EXPECT_TRUE(w.AddUint32("tokenizer.ggml.eos_token_id", 257).ok());
    EXPECT_TRUE(w.AddBool("tokenizer.ggml.add_bos_token", true).ok());
    EXPECT_TRUE(w.AddString("tokenizer.chat_template", "{{ '<|im_start|>' }}").ok());
    auto image = w.Serialize();
    EXPECT_TRUE(image.ok()) << image.status();
    image_ = *image;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> Build() {
    auto file = GgufFile::Parse("tiny.gguf", reinterpret_cast<const uint8_t*>(image_.data()),
                                image_.size());
    if (!file.ok()) return file.status();
    file_ = *std::move(file);
    return Tokenizer::FromGguf(*file_);
  }

 private:
  std::string image_;
  std::unique_ptr<GgufFile> file_;
};

TEST(VocabularyGgufTest, ReadsTokensMergesIdsAndFlags) {
  TinyGguf gguf(Options{});
  auto tok = gguf.Build();
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 258);
  EXPECT_EQ((*tok)->bos_id(), 257);
  EXPECT_EQ((*tok)->eos_id(), 257);
  EXPECT_TRUE((*tok)->add_bos_default());
  EXPECT_EQ((*tok)->chat_template(), "{{ '<|im_start|>' }}");
  auto ids = (*tok)->Encode("abc", EncodeOptions{});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{257, 256, 'c'}));  // <s>, "ab", "c"
}

TEST(VocabularyGgufTest, MissingModelKeyIsNamed) {
  Options o;
  o.with_model = false;
  auto tok = TinyGguf(o).Build();
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.model"));
}

TEST(VocabularyGgufTest, UnknownModelIsNamed) {
  Options o;
  o.model = "bert";
  auto tok = TinyGguf(o).Build();
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.model"));
  EXPECT_THAT(tok.status().message(), HasSubstr("bert"));
  EXPECT_THAT(tok.status().message(), HasSubstr("tiny.gguf"));
}

TEST(VocabularyGgufTest, UnknownPreIsNamed) {
  Options o;
  o.pre = "klingon";
  auto tok = TinyGguf(o).Build();
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.pre"));
  EXPECT_THAT(tok.status().message(), HasSubstr("klingon"));
  EXPECT_THAT(tok.status().message(), HasSubstr("tiny.gguf"));
}

TEST(VocabularyGgufTest, SpecialIdOutsideVocabularyIsNamed) {
  Options o;
  o.bos = 9999;
  auto tok = TinyGguf(o).Build();
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.bos_token_id"));
  EXPECT_THAT(tok.status().message(), HasSubstr("9999"));
}

TEST(VocabularyGgufTest, ScoresOfWrongLengthAreNamed) {
  Options o;
  o.scores = 3;
  auto tok = TinyGguf(o).Build();
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.scores"));
}

TEST(VocabularyGgufTest, SentencePieceNeedsScores) {
  Options o;
  o.model = "llama";
  auto tok = TinyGguf(o).Build();
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.scores"));
}

}  // namespace
}  // namespace tessera
