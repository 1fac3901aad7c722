// The pre-tokenizer families against splits computed with Python's `regex` module
// (tests/fixtures/tokenizer/make_pretokenizer_fixture.py), and hand-checked regex cases.
#include <fstream>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

std::vector<std::string> SplitWith(const PreTokenizer& pre, std::string_view text) {
  std::vector<std::string> pieces;
  for (const auto& [b, e] : pre.Split(text)) pieces.emplace_back(text.substr(b, e - b));
  return pieces;
}

std::vector<std::string> SplitFamily(std::string_view family, std::string_view text) {
  auto spec = PreTokenizerSpecForName(family);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto pre = PreTokenizer::Create(spec->patterns);
  EXPECT_TRUE(pre.ok()) << pre.status();
  return SplitWith(*pre, text);
}

TEST(PreTokenizerTest, MatchesPythonRegexForEveryFamily) {
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) +
                   "/tests/fixtures/tokenizer/pretokenizer_splits.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  ASSERT_GE(fixture["cases"].size(), 100u);
  int failures = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string pre = c["pre"];
    const std::string text = c["text"];
    const std::vector<std::string> expected = c["pieces"];
    const std::vector<std::string> actual = SplitFamily(pre, text);
    if (actual != expected) {
      ++failures;
      ADD_FAILURE() << pre << " on \"" << text << "\"\n  expected: [" << absl::StrJoin(expected, "|")
                    << "]\n  actual:   [" << absl::StrJoin(actual, "|") << "]";
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(PreTokenizerTest, Gpt2KeepsOneSpaceForTheNextWord) {
  EXPECT_EQ(SplitFamily("gpt-2", "a   b"), (std::vector<std::string>{"a", "  ", " b"}));
  EXPECT_EQ(SplitFamily("gpt-2", "a   "), (std::vector<std::string>{"a", "   "}));
}

TEST(PreTokenizerTest, Llama3GroupsDigitsByThree) {
  EXPECT_EQ(SplitFamily("llama-bpe", "1234567"),
            (std::vector<std::string>{"123", "456", "7"}));
  EXPECT_EQ(SplitFamily("smollm", "1234"), (std::vector<std::string>{"1", "2", "3", "4"}));
}

TEST(PreTokenizerTest, LongWhitespaceRunBeforeADigit) {
  // "\s+$" cannot match anywhere in the run; each start must not rescan it.
  const std::string spaces(20000, ' ');
  EXPECT_EQ(SplitFamily("deepseek-llm", spaces + "7"), (std::vector<std::string>{spaces, "7"}));
}

TEST(PreTokenizerTest, InvalidUtf8BytesStayInThePieces) {
  const std::string text = "ab\xFF\xC3 cd";
  std::string joined;
  for (const auto& piece : SplitFamily("gpt-2", text)) joined += piece;
  EXPECT_EQ(joined, text);
}

TEST(SplitRegexTest, LeftmostFirstAlternationAndLookahead) {
  const std::string text = "  x";
  const std::vector<CodepointSpan> d = DecodeUtf8Lenient(text);
  std::vector<uint32_t> cps, cats;
  for (size_t i = 0; i + 1 < d.size(); ++i) {
    cps.push_back(d[i].cp);
    cats.push_back(CategoryBit(d[i].cp));
  }
  RegexSubject subject{cps.data(), cats.data(), 0, cps.size()};
  auto re = SplitRegex::Compile("\\s+(?!\\S)|x");
  ASSERT_TRUE(re.ok()) << re.status();
  size_t b, e;
  ASSERT_TRUE(re->Find(subject, 0, &b, &e));
  EXPECT_EQ(b, 0u);
  EXPECT_EQ(e, 1u);  // backs off one space so that it does not touch "x"
  ASSERT_TRUE(re->Find(subject, 1, &b, &e));
  EXPECT_EQ(b, 2u);  // a single space before "x" is not matched by \s+(?!\S)
  EXPECT_EQ(e, 3u);
}

}  // namespace
}  // namespace tessera
