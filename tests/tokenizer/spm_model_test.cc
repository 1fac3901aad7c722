// SentencePiece BPE on hand-made vocabularies: merge order follows scores, unknown
// characters fall back to <0xNN> byte tokens (or <unk>), "▁" stands for spaces and the
// space prefix comes and goes.
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tokenizer/tokenizer.h"

namespace tessera {
namespace {

struct Piece {
  std::string text;
  float score;
  TokenType type = TokenType::kNormal;
};

std::unique_ptr<Tokenizer> Make(const std::vector<Piece>& pieces, bool byte_tokens) {
  Vocabulary v;
  v.model = VocabModel::kSentencePiece;
  v.source = "spm-test";
  auto add = [&](const std::string& text, float score, TokenType type) {
    v.tokens.push_back(text);
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, TokenType::kUnknown);
  add("<s>", 0, TokenType::kControl);
  add("</s>", 0, TokenType::kControl);
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  if (byte_tokens) {
    for (int b = 0; b < 256; ++b) add(absl::StrFormat("<0x%02X>", b), 0, TokenType::kByte);
  }
  for (const Piece& p : pieces) add(p.text, p.score, p.type);
  auto tok = Tokenizer::FromVocabulary(std::move(v));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return *std::move(tok);
}

std::vector<std::string> Texts(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(*tok.TokenBytes(id));
  return out;
}

const EncodeOptions kNoSpecial{.add_bos = false, .parse_special = false, .add_eos = false};

TEST(SpmModelTest, HigherScoreMergesFirst) {
  const std::vector<Piece> base = {{"▁", -1}, {"a", -2}, {"b", -2}, {"c", -2}};
  auto ab_first = base, bc_first = base;
  ab_first.push_back({"ab", -3});
  ab_first.push_back({"bc", -4});
  bc_first.push_back({"ab", -4});
  bc_first.push_back({"bc", -3});
  auto t1 = Make(ab_first, true);
  auto t2 = Make(bc_first, true);
  EXPECT_EQ(Texts(*t1, *t1->Encode("abc", kNoSpecial)),
            (std::vector<std::string>{" ", "ab", "c"}));
  EXPECT_EQ(Texts(*t2, *t2->Encode("abc", kNoSpecial)),
            (std::vector<std::string>{" ", "a", "bc"}));
}

TEST(SpmModelTest, SpacesBecomeTheMetaSymbol) {
  auto tok = Make({{"▁", -1}, {"a", -2}, {"▁a", -1.5}, {"▁▁", -1.2}}, true);
  auto ids = tok->Encode("a  a", kNoSpecial);
  ASSERT_TRUE(ids.ok());
  // "▁a▁▁a": in "▁▁a" the pair "▁▁" (-1.2) outscores "▁a" (-1.5) and wins, leaving "a".
  EXPECT_EQ(Texts(*tok, *ids), (std::vector<std::string>{" a", "  ", "a"}));
  EXPECT_EQ(*tok->Decode(*ids), "a  a");
}

TEST(SpmModelTest, UnknownCharactersFallBackToBytesOrUnk) {
  auto with_bytes = Make({{"▁", -1}, {"a", -2}}, true);
  auto ids = with_bytes->Encode("aé", kNoSpecial);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{3 + 256, 3 + 257, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(*with_bytes->Decode(*ids), "aé");

  auto without_bytes = Make({{"▁", -1}, {"a", -2}}, false);
  auto ids2 = without_bytes->Encode("aé", kNoSpecial);
  ASSERT_TRUE(ids2.ok());
  EXPECT_EQ(*ids2, (std::vector<int32_t>{3, 4, 0}));  // "▁", "a", <unk> for the whole "é"
}

TEST(SpmModelTest, ControlTextIsNotMatchedInPlainText) {
  auto tok = Make({{"▁", -1}, {"<", -2}, {"s", -2}, {">", -2}, {"<s", -3}}, true);
  auto plain = tok->Encode("<s>", kNoSpecial);
  ASSERT_TRUE(plain.ok());
  for (int32_t id : *plain) EXPECT_NE(id, 1);
  auto parsed = tok->Encode("<s>a", EncodeOptions{.add_bos = false, .parse_special = true});
  ASSERT_TRUE(parsed.ok());
  ASSERT_FALSE(parsed->empty());
  EXPECT_EQ((*parsed)[0], 1);
}

TEST(SpmModelTest, BosFollowsTheVocabularyDefault) {
  auto tok = Make({{"▁", -1}, {"a", -2}}, true);
  EXPECT_TRUE(tok->add_bos_default());
  auto ids = tok->Encode("a", EncodeOptions{});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 1);
  EXPECT_EQ(*tok->Decode(*ids, /*skip_special=*/true), "a");
  EXPECT_EQ(tok->stop_ids(), (std::vector<int32_t>{2}));
}

}  // namespace
}  // namespace tessera
