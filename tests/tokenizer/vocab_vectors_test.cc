// llama.cpp's reference tokenizations (shared testdata/tokenizer, see its README): every
// case of every vocabulary must encode to the stored ids (no BOS, special tokens not
// parsed), and decoding must give the input back.
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "formats/gguf_reader.h"
#include "gtest/gtest.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct VectorCase {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<VectorCase> LoadCases(const std::string& base) {
  const std::string inp = ReadFile(base + ".inp");
  const std::string out = ReadFile(base + ".out");
  std::vector<std::string> texts = absl::StrSplit(inp, "\n__ggml_vocab_test__\n");
  if (!texts.empty() && texts.back().empty()) texts.pop_back();
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::vector<VectorCase> cases;
  for (size_t i = 0; i < texts.size() && i < lines.size(); ++i) {
    VectorCase c;
    c.text = texts[i];
    for (absl::string_view tok : absl::StrSplit(lines[i], ' ', absl::SkipEmpty())) {
      c.ids.push_back(std::stoi(std::string(tok)));
    }
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(texts.size(), lines.size()) << base;
  return cases;
}

std::string Join(const std::vector<int32_t>& ids) { return absl::StrJoin(ids, " "); }

class VocabVectorsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    base_ = std::string(TESSERA_SHARED_TESTDATA) + "/tokenizer/ggml-vocab-" + GetParam() + ".gguf";
    auto file = GgufFile::Open(base_);
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = *std::move(file);
    auto tok = Tokenizer::FromGguf(*file_);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = *std::move(tok);
    cases_ = LoadCases(base_);
    ASSERT_FALSE(cases_.empty());
  }

  std::string base_;
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tok_;
  std::vector<VectorCase> cases_;
};

TEST_P(VocabVectorsTest, EncodesEveryCaseLikeTheReference) {
  const EncodeOptions options{.add_bos = false, .parse_special = false, .add_eos = false};
  int passed = 0;
  for (size_t i = 0; i < cases_.size(); ++i) {
    auto ids = tok_->Encode(cases_[i].text, options);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (*ids == cases_[i].ids) {
      ++passed;
    } else {
      ADD_FAILURE() << GetParam() << " case " << i << " text \"" << cases_[i].text
                    << "\"\n  expected: " << Join(cases_[i].ids) << "\n  actual:   " << Join(*ids);
    }
  }
  EXPECT_EQ(passed, static_cast<int>(cases_.size()));
}

TEST_P(VocabVectorsTest, DecodeOfReferenceIdsGivesTheText) {
  for (size_t i = 0; i < cases_.size(); ++i) {
    auto text = tok_->Decode(cases_[i].ids);
    ASSERT_TRUE(text.ok()) << text.status();
    // For SentencePiece the reference ids start with the prefix space that encoding
    // added, which decoding drops again: the text comes back unchanged too.
    EXPECT_EQ(*text, cases_[i].text) << GetParam() << " case " << i;
  }
}

TEST_P(VocabVectorsTest, RoundTripsThroughEncode) {
  const EncodeOptions options{.add_bos = false, .parse_special = false, .add_eos = false};
  for (size_t i = 0; i < cases_.size(); ++i) {
    auto ids = tok_->Encode(cases_[i].text, options);
    ASSERT_TRUE(ids.ok());
    auto text = tok_->Decode(*ids);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, cases_[i].text) << GetParam() << " case " << i;
  }
}

TEST_P(VocabVectorsTest, ArbitraryBytesRoundTrip) {
  // Random byte strings, invalid UTF-8 included: byte-level BPE must give them back
  // exactly; SentencePiece only has to for valid UTF-8.
  std::mt19937 rng(1234);
  const EncodeOptions options{.add_bos = false, .parse_special = false, .add_eos = false};
  const bool byte_level = GetParam() != "llama-spm";
  const char kAlphabet[] = "ab \n\t1'.,\xC3\xA9\xE6\x97\xA5\xF0\x9F\xA6\x99";
  std::vector<uint8_t> byte_alphabet;
  for (int b = 0; b < 256; ++b) {
    std::string mapped;
    AppendUtf8(ByteToGpt2Codepoint(static_cast<uint8_t>(b)), &mapped);
    const int32_t id = tok_->TokenId(mapped);
    if (id < 0) continue;
    // deepseek-coder spells a few missing bytes as added tokens, which render as their
    // text (as in the reference); those bytes cannot round-trip either.
    auto bytes = tok_->TokenBytes(id);
    if (bytes.ok() && *bytes == std::string(1, static_cast<char>(b))) {
      byte_alphabet.push_back(static_cast<uint8_t>(b));
    }
  }
  if (byte_level) {
    ASSERT_GE(byte_alphabet.size(), 200u);
  }
  for (int round = 0; round < 200; ++round) {
    std::string text;
    const int len = static_cast<int>(rng() % 40);
    for (int i = 0; i < len; ++i) {
      if (byte_level && rng() % 8 == 0) {
        // Any byte the vocabulary has a normal token for. (Only GPT-2 has all 256; the
        // others lack some bytes, e.g. C0, C1, F5..FF that never occur in UTF-8, and drop
        // them as the reference does.)
        text.push_back(static_cast<char>(byte_alphabet[rng() % byte_alphabet.size()]));
      } else {
        text.push_back(kAlphabet[rng() % (sizeof(kAlphabet) - 1)]);
      }
    }
    if (!byte_level) {
      // Keep whole UTF-8 characters only: cut at the last complete character.
      while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80) != 0) text.pop_back();
    }
    auto ids = tok_->Encode(text, options);
    ASSERT_TRUE(ids.ok());
    auto back = tok_->Decode(*ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text) << GetParam() << " round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(AllVocabularies, VocabVectorsTest,
                         ::testing::Values("gpt-2", "llama-spm", "starcoder", "falcon",
                                           "deepseek-coder"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace tessera
