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

// Every family on long runs of one kind of text (and a mix), followed by a letter: the
// backtracking engine must not rescan a run from each position. A quadratic case would
// take minutes here; the assertions check that the pieces tile the input exactly.
TEST(PreTokenizerTest, LongAdversarialRunsSplitIntoTilingPieces) {
  constexpr size_t kLength = 100000;
  const std::pair<const char*, std::string> units[] = {
      {"spaces", " "},         {"digits", "7"},      {"punct", "!"},
      {"letters", "a"},        {"upper", "A"},       {"upper-lower", "Aa"},
      {"cjk", "\xE4\xB8\xAD"}, {"tabs", "\t"},     {"space-newline", " \n"},
      {"crlf", "\r\n"},        {"apostrophes", "'"}, {"two-spaces-a", "  a"},
      {"nbsp", "\xC2\xA0"},    {"combining", "a\xCC\x81"},
      {"mixed", "a1!\xE4\xB8\xAD \t'"}, {"invalid", "\xFF"}, {"sentinel", "<sentinel:"}};
  for (const char* family :
       {"default", "llama3", "qwen2", "deepseek-llm", "deepseek-v3", "deepseek-coder", "falcon",
        "smollm", "gpt-2", "bloom", "viking", "tekken", "chameleon", "gpt-4o", "bailingmoe",
        "seed-coder"}) {
    auto spec = PreTokenizerSpecForName(family);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto pre = PreTokenizer::Create(spec->patterns);
    ASSERT_TRUE(pre.ok()) << pre.status();
    for (const auto& [name, unit] : units) {
      std::string text;
      while (text.size() < kLength) text += unit;
      text += "x";
      const auto pieces = pre->Split(text);
      ASSERT_FALSE(pieces.empty()) << family << " " << name;
      uint32_t expected_begin = 0;
      for (const auto& [b, e] : pieces) {
        ASSERT_EQ(b, expected_begin) << family << " " << name;
        ASSERT_LT(b, e) << family << " " << name;
        expected_begin = e;
      }
      EXPECT_EQ(expected_begin, text.size()) << family << " " << name;
    }
  }
  // Spot checks of the shapes: one space is left for the word, digits go by three.
  const std::string spaces(kLength, ' ');
  EXPECT_EQ(SplitFamily("gpt-2", spaces + "x"),
            (std::vector<std::string>{spaces.substr(1), " x"}));
  const std::vector<std::string> digits = SplitFamily("llama3", std::string(kLength, '7'));
  EXPECT_EQ(digits.size(), (kLength + 2) / 3);
  EXPECT_EQ(digits.back(), "7");
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
