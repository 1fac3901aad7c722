// Streaming detokenization: characters split across tokens are held back until complete,
// broken bytes become U+FFFD, SentencePiece's leading space is dropped once.
#include "absl/status/status.h"
#include "formats/gguf_reader.h"
#include "formats/model_locator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

bool IsValidUtf8(std::string_view s) {
  const Utf8Prefix p = ValidUtf8Prefix(s);
  return p.valid_bytes == s.size();
}

// Byte-level vocabulary with exactly one token per byte: every multi-byte character is
// split across tokens.
std::unique_ptr<Tokenizer> BytesOnly() {
  Vocabulary v;
  v.model = VocabModel::kByteLevelBpe;
  v.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) {
    std::string text;
    AppendUtf8(ByteToGpt2Codepoint(static_cast<uint8_t>(b)), &text);
    v.tokens.push_back(text);
  }
  v.tokens.push_back("<|end|>");
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.types.back() = TokenType::kControl;
  auto tok = Tokenizer::FromVocabulary(std::move(v));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return *std::move(tok);
}

TEST(IncrementalDetokenizerTest, HoldsBackSplitCharacters) {
  auto tok = BytesOnly();
  IncrementalDetokenizer detok(*tok);
  // "é" is C3 A9; "🦙" is F0 9F A6 99.
  EXPECT_EQ(*detok.Push(0xC3), "");
  EXPECT_EQ(detok.pending_bytes(), 1u);
  EXPECT_EQ(*detok.Push(0xA9), "é");
  EXPECT_EQ(*detok.Push(0xF0), "");
  EXPECT_EQ(*detok.Push(0x9F), "");
  EXPECT_EQ(*detok.Push(0xA6), "");
  EXPECT_EQ(*detok.Push(0x99), "🦙");
  EXPECT_EQ(*detok.Push('a'), "a");
  EXPECT_EQ(detok.Flush(), "");
}

TEST(IncrementalDetokenizerTest, BrokenBytesBecomeReplacementCharacters) {
  auto tok = BytesOnly();
  IncrementalDetokenizer detok(*tok);
  EXPECT_EQ(*detok.Push(0xFF), "\xEF\xBF\xBD");  // can never start a character
  EXPECT_EQ(*detok.Push(0xE6), "");               // start of a 3-byte character...
  EXPECT_EQ(*detok.Push('x'), "\xEF\xBF\xBDx");   // ...cut short by 'x'
  EXPECT_EQ(*detok.Push(0xE6), "");
  EXPECT_EQ(detok.Flush(), "\xEF\xBF\xBD");       // truly broken tail at the end
  EXPECT_EQ(detok.pending_bytes(), 0u);
}

TEST(IncrementalDetokenizerTest, SpecialTokensFollowSkipSpecial) {
  auto tok = BytesOnly();
  IncrementalDetokenizer skipping(*tok, /*skip_special=*/true);
  EXPECT_EQ(*skipping.Push(256), "");
  IncrementalDetokenizer showing(*tok, /*skip_special=*/false);
  EXPECT_EQ(*showing.Push(256), "<|end|>");
}

TEST(IncrementalDetokenizerTest, BadIdNamesTheId) {
  auto tok = BytesOnly();
  IncrementalDetokenizer detok(*tok);
  auto r = detok.Push(4242);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("4242"));
}

TEST(IncrementalDetokenizerTest, SmolLm2EmojiAndCjkStreamAsCompleteText) {
  auto path = ResolveModelPath("default");
  ASSERT_TRUE(path.ok()) << "the default model is missing (run scripts/fetch_model.py): "
                         << path.status();
  auto file = GgufFile::Open(*path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto tok = Tokenizer::FromGguf(**file);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = "Llamas 🦙 say 你好世界 and 👩‍💻 codes.";
  auto ids = (*tok)->Encode(text, EncodeOptions{.add_bos = false});
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer detok(**tok);
  std::string streamed;
  size_t max_pending = 0;
  for (int32_t id : *ids) {
    auto piece = detok.Push(id);
    ASSERT_TRUE(piece.ok()) << piece.status();
    EXPECT_TRUE(IsValidUtf8(*piece)) << "token " << id;
    max_pending = std::max(max_pending, detok.pending_bytes());
    streamed += *piece;
  }
  streamed += detok.Flush();
  EXPECT_EQ(streamed, text);
  EXPECT_GT(max_pending, 0u) << "no character was split across tokens; the test lost its point";
}

TEST(IncrementalDetokenizerTest, SentencePieceDropsTheFirstSpaceOnly) {
  auto file = GgufFile::Open(std::string(TESSERA_SHARED_TESTDATA) +
                             "/tokenizer/ggml-vocab-llama-spm.gguf");
  ASSERT_TRUE(file.ok()) << file.status();
  auto tok = Tokenizer::FromGguf(**file);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode("Hello world 🦙", EncodeOptions{});
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ((*ids)[0], (*tok)->bos_id());
  IncrementalDetokenizer detok(**tok);
  std::vector<std::string> pieces;
  for (int32_t id : *ids) pieces.push_back(*detok.Push(id));
  EXPECT_EQ(pieces[0], "");       // BOS, skipped
  EXPECT_EQ(pieces[1], "Hello");  // "▁Hello" loses the prefix space
  EXPECT_EQ(pieces[2], " world");
  std::string all;
  for (const auto& p : pieces) all += p;
  EXPECT_EQ(all + detok.Flush(), "Hello world 🦙");
}

}  // namespace
}  // namespace tessera
