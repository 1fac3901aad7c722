// Bad inputs: ids outside the vocabulary, unknown models and pre-tokenizers, inconsistent
// vocabularies. Each asserts the status code and that the message names the culprit.
#include <sys/mman.h>

#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_tokenizer.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

// A tiny byte-level BPE vocabulary: the 256 byte tokens plus "ab" from one merge.
Vocabulary TinyBpe() {
  Vocabulary v;
  v.model = VocabModel::kByteLevelBpe;
  v.pre = "gpt-2";
  v.source = "tiny.gguf";
  for (int b = 0; b < 256; ++b) {
    // GPT-2 maps printable ASCII to itself; others are irrelevant for these tests.
    v.tokens.push_back(b >= '!' && b <= '~' ? std::string(1, static_cast<char>(b))
                                            : "<b" + std::to_string(b) + ">");
  }
  v.tokens.push_back("ab");
  v.tokens.push_back("<|end|>");
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.types.back() = TokenType::kControl;
  v.merges = {"a b"};
  v.eos_id = static_cast<int32_t>(v.tokens.size()) - 1;
  return v;
}

TEST(TokenizerErrorsTest, IdOutOfRangeNamesTheId) {
  auto tok = Tokenizer::FromVocabulary(TinyBpe());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto bytes = (*tok)->TokenBytes(100000);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bytes.status().message(), HasSubstr("100000"));
  const std::vector<int32_t> ids = {97, -5};
  auto text = (*tok)->Decode(ids);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("-5"));
}

TEST(TokenizerErrorsTest, TinyVocabularyMergesAndStops) {
  auto tok = Tokenizer::FromVocabulary(TinyBpe());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode("abc<|end|>", EncodeOptions{});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{256, 'c', 257}));
  EXPECT_EQ((*tok)->stop_ids(), (std::vector<int32_t>{257}));
}

TEST(TokenizerErrorsTest, UnknownPreTokenizerNamesKeyAndValue) {
  Vocabulary v = TinyBpe();
  v.pre = "klingon-bpe";
  auto tok = Tokenizer::FromVocabulary(std::move(v));
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.pre"));
  EXPECT_THAT(tok.status().message(), HasSubstr("klingon-bpe"));
  EXPECT_THAT(tok.status().message(), HasSubstr("tiny.gguf"));
}

TEST(TokenizerErrorsTest, InconsistentArraysNameTheKey) {
  Vocabulary v = TinyBpe();
  v.types.pop_back();
  auto tok = Tokenizer::FromVocabulary(std::move(v));
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.token_type"));

  Vocabulary w = TinyBpe();
  w.bos_id = 99999;
  auto tok2 = Tokenizer::FromVocabulary(std::move(w));
  EXPECT_EQ(tok2.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok2.status().message(), HasSubstr("bos_token_id"));
}

TEST(TokenizerErrorsTest, MalformedMergeNamesTheEntry) {
  Vocabulary v = TinyBpe();
  v.merges = {"a b", "nospace"};
  auto tok = Tokenizer::FromVocabulary(std::move(v));
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.ggml.merges[1]"));
}

TEST(TokenizerErrorsTest, UnsupportedRegexSyntaxIsRejected) {
  for (const char* pattern : {"(?i:abc)", "a+?", "[abc", "(ab", "\\p{Xx}", "\\w+"}) {
    auto re = SplitRegex::Compile(pattern);
    EXPECT_EQ(re.status().code(), absl::StatusCode::kInvalidArgument) << pattern;
    EXPECT_THAT(re.status().message(), HasSubstr(pattern));
  }
}

TEST(TokenizerErrorsTest, EveryKnownFamilyCompiles) {
  for (const char* name :
       {"default", "gpt-2", "llama-bpe", "llama3", "smollm", "starcoder", "falcon", "deepseek-llm",
        "deepseek-coder", "deepseek-v3", "qwen2", "phi-2", "mpt", "refact", "command-r", "olmo",
        "gpt-4o", "jais", "stablelm2", "chatglm-bpe", "glm4", "poro-chat", "viking", "tekken",
        "bloom", "gpt3-finnish", "exaone", "minerva-7b", "codeshell", "dbrx", "smaug-bpe",
        "chameleon", "bailingmoe", "seed-coder"}) {
    auto spec = PreTokenizerSpecForName(name);
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status();
    auto pre = PreTokenizer::Create(spec->patterns);
    EXPECT_TRUE(pre.ok()) << name << ": " << pre.status();
  }
}

TEST(TokenizerErrorsTest, RegexLimitsAreEnforcedAtCompileTime) {
  const std::pair<std::string, std::string> bad[] = {
      {"a{5,2}", "m < n"},
      {"a{99999999999}", "repeat count above"},
      {"(?:ab)+", "repeat at most"},       // unbounded group: recursion per repetition
      {"(a+)+", "repeat at most"},         // the classic exponential shape
      {"(?:ab){1,17}", "repeat at most"},
      {"(?=a)*", "repeat at most"},        // zero-width repeat
      {"\\p{L", "missing '}'"},
      {"ab\\", "trailing backslash"},
      {"[a\\", "trailing backslash"},
      {std::string(40, '(') + "a" + std::string(40, ')'), "nested deeper"},
  };
  for (const auto& [pattern, detail] : bad) {
    auto re = SplitRegex::Compile(pattern);
    EXPECT_EQ(re.status().code(), absl::StatusCode::kInvalidArgument) << pattern;
    EXPECT_THAT(re.status().message(), HasSubstr(pattern));
    EXPECT_THAT(re.status().message(), HasSubstr(detail)) << pattern;
  }
  // Just inside the limits, and repeats of single codepoints stay unbounded.
  for (const std::string& pattern :
       {std::string("(?:ab){0,16}"), std::string("(?:a|b)+"), std::string("((?=\\p{L})[^a-z])*"),
        std::string("a{1000}"), std::string(32, '(') + "a" + std::string(32, ')')}) {
    EXPECT_TRUE(SplitRegex::Compile(pattern).ok()) << pattern;
  }
}

TEST(TokenizerErrorsTest, TextTooLongForThe32BitOffsetsIsRejected) {
  auto tok = Tokenizer::FromVocabulary(TinyBpe());
  ASSERT_TRUE(tok.ok()) << tok.status();
  // 1 GiB of untouched zero pages: readable, but never backed by memory.
  const size_t size = size_t{1} << 30;
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto ids = (*tok)->Encode(std::string_view(static_cast<const char*>(p), size), EncodeOptions{});
  munmap(p, size);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ids.status().message(), HasSubstr("tiny.gguf"));
  EXPECT_THAT(ids.status().message(), HasSubstr("too long"));
}

// The token index and models point into the tokenizer's own vocabulary; a copy would
// dangle, so there must be none.
static_assert(!std::is_copy_constructible_v<VocabTokenizer>);
static_assert(!std::is_copy_assignable_v<VocabTokenizer>);
static_assert(!std::is_move_constructible_v<VocabTokenizer>);

}  // namespace
}  // namespace tessera
