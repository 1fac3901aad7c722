// Byte-level BPE on hand-made vocabularies: merge ranks decide the order, ties go to the
// leftmost pair, tiktoken-style families take a whole piece that is a token, and added
// (user-defined) tokens are found even when special tokens are not parsed.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

// The 256 byte tokens (ids 0..255 = byte values), then `extra` tokens from id 256.
std::unique_ptr<Tokenizer> Make(const std::string& pre, const std::vector<std::string>& extra,
                                const std::vector<std::string>& merges,
                                TokenType extra_type = TokenType::kNormal) {
  Vocabulary v;
  v.model = VocabModel::kByteLevelBpe;
  v.pre = pre;
  for (int b = 0; b < 256; ++b) {
    std::string t;
    AppendUtf8(ByteToGpt2Codepoint(static_cast<uint8_t>(b)), &t);
    v.tokens.push_back(t);
  }
  v.types.assign(256, TokenType::kNormal);
  for (const auto& t : extra) {
    v.tokens.push_back(t);
    v.types.push_back(extra_type);
  }
  v.merges = merges;
  auto tok = Tokenizer::FromVocabulary(std::move(v));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return *std::move(tok);
}

std::vector<int32_t> Ids(const Tokenizer& tok, std::string_view text, bool parse_special) {
  auto ids = tok.Encode(text, EncodeOptions{.add_bos = false, .parse_special = parse_special});
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(BpeModelTest, LowerRankMergesFirst) {
  // "ab"=256, "bc"=257.
  auto bc_first = Make("gpt-2", {"ab", "bc"}, {"b c", "a b"});
  auto ab_first = Make("gpt-2", {"ab", "bc"}, {"a b", "b c"});
  EXPECT_EQ(Ids(*bc_first, "abc", false), (std::vector<int32_t>{'a', 257}));
  EXPECT_EQ(Ids(*ab_first, "abc", false), (std::vector<int32_t>{256, 'c'}));
}

TEST(BpeModelTest, EqualRanksGoLeftFirst) {
  // "aa"=256: "aaa" -> "aa" + "a", never "a" + "aa".
  auto tok = Make("gpt-2", {"aa"}, {"a a"});
  EXPECT_EQ(Ids(*tok, "aaa", false), (std::vector<int32_t>{256, 'a'}));
  EXPECT_EQ(Ids(*tok, "aaaa", false), (std::vector<int32_t>{256, 256}));
}

TEST(BpeModelTest, MergesChainThroughMergedSymbols) {
  // "ab"=256, "abc"=257, "Ġabc"=258 (space is Ġ in GPT-2's byte mapping).
  auto tok = Make("gpt-2", {"ab", "abc", "\xC4\xA0" "abc"}, {"a b", "ab c", "\xC4\xA0 abc"});
  EXPECT_EQ(Ids(*tok, "abc abc", false), (std::vector<int32_t>{257, 258}));
  EXPECT_EQ(*tok->Decode(std::vector<int32_t>{257, 258}), "abc abc");
}

TEST(BpeModelTest, TiktokenFamiliesTakeWholeTokenPieces) {
  // "abc" is a token but no merge leads to it.
  auto llama3 = Make("llama-bpe", {"abc"}, {});
  auto gpt2 = Make("gpt-2", {"abc"}, {});
  EXPECT_EQ(Ids(*llama3, "abc", false), (std::vector<int32_t>{256}));
  EXPECT_EQ(Ids(*gpt2, "abc", false), (std::vector<int32_t>{'a', 'b', 'c'}));
  EXPECT_TRUE(llama3->add_bos_default());
  EXPECT_FALSE(gpt2->add_bos_default());
}

TEST(BpeModelTest, UserDefinedTokensAreAlwaysMatched) {
  auto tok = Make("gpt-2", {"<tool>"}, {}, TokenType::kUserDefined);
  EXPECT_EQ(Ids(*tok, "x<tool>y", false), (std::vector<int32_t>{'x', 256, 'y'}));
  auto control = Make("gpt-2", {"<tool>"}, {}, TokenType::kControl);
  EXPECT_EQ(Ids(*control, "x<tool>y", true), (std::vector<int32_t>{'x', 256, 'y'}));
  const std::vector<int32_t> plain = Ids(*control, "x<tool>y", false);
  EXPECT_EQ(plain.size(), 8u);  // every byte on its own
}

TEST(BpeModelTest, BytesWithoutATokenAreDroppedAsTheReferenceDoes) {
  // Real vocabularies (SmolLM2's among them) lack the tokens of bytes that never occur in
  // valid UTF-8; Encode drops such bytes rather than failing (tokenizer.h).
  Vocabulary v;
  v.model = VocabModel::kByteLevelBpe;
  v.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) {
    std::string t;
    AppendUtf8(ByteToGpt2Codepoint(static_cast<uint8_t>(b)), &t);
    v.tokens.push_back(b == 0xFF ? "<no-ff>" : t);
  }
  auto tok = Tokenizer::FromVocabulary(std::move(v));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(Ids(**tok, "a\xFF" "b", false), (std::vector<int32_t>{'a', 'b'}));
  EXPECT_EQ(Ids(**tok, "\xFE\xFF\xFE", false), (std::vector<int32_t>{0xFE, 0xFE}));
}

}  // namespace
}  // namespace tessera
