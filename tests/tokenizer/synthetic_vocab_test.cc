// The synthetic vocabulary of random-weight models: its layout, its GGUF round trip, and the
// tokenizer built from it encoding and decoding text.
#include "tokenizer/synthetic_vocab.h"

#include <string>
#include <vector>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/tokenizer.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

struct Loaded {
  std::string image;
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
};

Loaded ThroughGguf(const Vocabulary& v) {
  Loaded l;
  GgufWriter w;
  EXPECT_TRUE(AddVocabularyToGguf(v, w).ok());
  l.image = *w.Serialize();
  auto f = GgufFile::Parse("synthetic.gguf", reinterpret_cast<const uint8_t*>(l.image.data()),
                           l.image.size());
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return l;
  l.file = *std::move(f);
  auto t = Tokenizer::FromGguf(*l.file);
  EXPECT_TRUE(t.ok()) << t.status();
  if (t.ok()) l.tokenizer = *std::move(t);
  return l;
}

TEST(SyntheticVocab, HasExactlyTheAskedSizeAndIsDeterministic) {
  for (int64_t n : {int64_t{260}, int64_t{261}, int64_t{512}, int64_t{49152}, int64_t{128256}}) {
    absl::StatusOr<Vocabulary> v = SyntheticVocabulary(n);
    ASSERT_TRUE(v.ok()) << n << ": " << v.status();
    EXPECT_EQ(static_cast<int64_t>(v->tokens.size()), n);
    EXPECT_EQ(v->types.size(), v->tokens.size());
    EXPECT_EQ(static_cast<int64_t>(v->merges.size()), n - 260);
  }
  EXPECT_EQ(SyntheticVocabulary(1000)->tokens, SyntheticVocabulary(1000)->tokens);
  for (int64_t bad : {int64_t{0}, int64_t{259}, int64_t{1} << 32}) {
    absl::StatusOr<Vocabulary> v = SyntheticVocabulary(bad);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(v.status().message(), HasSubstr("vocab_size"));
  }
}

TEST(SyntheticVocab, GgufRoundTripGivesTheSameVocabulary) {
  const Vocabulary v = *SyntheticVocabulary(2000);
  Loaded l = ThroughGguf(v);
  ASSERT_NE(l.file, nullptr);
  absl::StatusOr<Vocabulary> back = VocabularyFromGguf(*l.file);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tokens, v.tokens);
  EXPECT_EQ(back->types, v.types);
  EXPECT_EQ(back->merges, v.merges);
  EXPECT_EQ(back->pre, "gpt-2");
  EXPECT_EQ(back->bos_id, 0);
  EXPECT_EQ(back->eos_id, 1);
  EXPECT_EQ(back->eot_id, 3);
  EXPECT_EQ(back->add_bos, std::optional<bool>(true));
  EXPECT_EQ(back->chat_template, v.chat_template);
  GgufWriter twice;
  ASSERT_TRUE(AddVocabularyToGguf(v, twice).ok());
  EXPECT_EQ(AddVocabularyToGguf(v, twice).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SyntheticVocab, TokenizerRoundTripsText) {
  Loaded l = ThroughGguf(*SyntheticVocabulary(49152));
  ASSERT_NE(l.tokenizer, nullptr);
  const Tokenizer& t = *l.tokenizer;
  EXPECT_EQ(t.vocab_size(), 49152);
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_THAT(t.stop_ids(), ::testing::Contains(1));
  for (const std::string& text : std::vector<std::string>{
           "hello world", "The quick brown fox, 42 times!\n\tnew line", "héllo wörld ✓ 日本語",
        std::string("bytes \x01\x7f end"), std::string("")}) {
    absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text, EncodeOptions{});
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_FALSE(ids->empty());
    EXPECT_EQ(ids->front(), 0) << "BOS first";
    absl::StatusOr<std::string> back = t.Decode(*ids, /*skip_special=*/true);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
  }
  // Letters merge: fewer tokens than bytes.
  absl::StatusOr<std::vector<int32_t>> ids =
      t.Encode("hello there general kenobi", EncodeOptions{.add_bos = false});
  ASSERT_TRUE(ids.ok());
  EXPECT_LT(ids->size(), 15u);
  // Specials are parsed in text, and rendered back.
  ids = t.Encode("<|im_start|>user\nhi<|im_end|>", EncodeOptions{.add_bos = false});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 2);
  EXPECT_EQ(ids->back(), 3);
  EXPECT_TRUE(t.IsSpecial(3));
  EXPECT_THAT(t.stop_ids(), ::testing::Contains(3));
  EXPECT_EQ(*t.Decode(*ids), "<|im_start|>user\nhi<|im_end|>");
  EXPECT_FALSE(t.chat_template().empty());
}

}  // namespace
}  // namespace tessera
