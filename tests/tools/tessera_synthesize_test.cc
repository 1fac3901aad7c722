// `tessera synthesize` and `--model random:SHAPE`, run as a subprocess: help and listing,
// argument errors (exit 2, one line naming the flag), I/O errors (exit 1), and a synthesized
// tiny model driving generate / tokenize end to end.
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tools/subprocess.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessResult;
using testing::CountLines;
using testing::ExpectUsageError;
using testing::RunProcess;

ProcessResult Tessera(std::vector<std::string> args) {
  args.insert(args.begin(), TESSERA_BINARY);
  return RunProcess(args);
}



TEST(TesseraSynthesizeTest, HelpAndList) {
  ProcessResult r = Tessera({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("synthesize"));
  r = Tessera({"synthesize", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, AllOf(HasSubstr("--shape"), HasSubstr("--dtype"), HasSubstr("--seed"),
                           HasSubstr("--layers"), HasSubstr("--output"), HasSubstr("--list")));
  r = Tessera({"synthesize", "--list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("smollm2-135m"), HasSubstr("134.5M"),
                           HasSubstr("llama-3-8b"), HasSubstr("8.03B"), HasSubstr("llama-3-70b"),
                           HasSubstr("tiny")));
}

TEST(TesseraSynthesizeTest, BadArgumentsExitTwoNamingTheFlag) {
  const std::string out = ::testing::TempDir() + "never_written.gguf";
  ProcessResult r = Tessera({"synthesize", "--shape", "llama-9-1t", "--output", out});
  ExpectUsageError(r, "--shape");
  EXPECT_THAT(r.err, AllOf(HasSubstr("llama-9-1t"), HasSubstr("smollm2-135m"),
                           HasSubstr("llama-3-8b"), HasSubstr("tiny")));
  r = Tessera({"synthesize", "--shape", "tiny", "--dtype", "q4_K", "--output", out});
  ExpectUsageError(r, "--dtype");
  EXPECT_THAT(r.err, HasSubstr("bf16"));
  ExpectUsageError(Tessera({"synthesize", "--output", out}), "--shape");
  ExpectUsageError(Tessera({"synthesize", "--shape", "tiny"}), "--output");
  ExpectUsageError(Tessera({"synthesize", "--shape", "tiny", "--layers", "0", "-o", out}),
                   "--layers");
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(TesseraSynthesizeTest, UnwritableOutputExitsOne) {
  ProcessResult r =
      Tessera({"synthesize", "--shape", "tiny", "--output", "/nonexistent-dir/m.gguf"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("--output"), HasSubstr("/nonexistent-dir/m.gguf")));
}

TEST(TesseraSynthesizeTest, SynthesizedModelRunsGenerateAndTokenize) {
  const std::string path = ::testing::TempDir() + "tessera_synth_tiny.gguf";
  ProcessResult r = Tessera(
      {"synthesize", "--shape", "tiny", "--dtype", "q8_0", "--seed", "3", "--output", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr(path), HasSubstr("tiny"), HasSubstr("q8_0")));
  EXPECT_THAT(r.err, HasSubstr("100%"));  // the progress bar
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));

  r = Tessera({"generate", "--model", path, "--prompt", "hello", "--max-tokens", "8"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_THAT(r.err, HasSubstr("8 tokens generated"));
  r = Tessera({"generate", "--model", path, "--prompt", "hello", "--chat", "--max-tokens", "4"});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  r = Tessera({"tokenize", "--model", path, "--text", "hello world"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("0 "));  // BOS
  std::filesystem::remove(path);
}

TEST(TesseraSynthesizeTest, GenerateOnRandomWeightsDirectly) {
  ProcessResult r = Tessera(
      {"generate", "--model", "random:tiny:q4_0", "--prompt", "hello", "--max-tokens", "4"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("synthesizing random:tiny:q4_0"),
                           HasSubstr("4 tokens generated")));
  ExpectUsageError(Tessera({"generate", "--model", "random:llama-9-1t", "--prompt", "hi"}),
                   "--model random:llama-9-1t");
  ExpectUsageError(Tessera({"generate", "--model", "random:tiny:q4_K", "--prompt", "hi"}),
                   "q4_K");
  ExpectUsageError(Tessera({"generate", "--model", "random:tiny:bf16:0", "--prompt", "hi"}),
                   "layer count");
}

// tokenize / detokenize on random:SHAPE build the shape's synthetic tokenizer without writing
// the model, and it is the one the synthesized file holds.
TEST(TesseraSynthesizeTest, TokenizerOfARandomModelIsTheSynthesizedFilesOne) {
  const std::string path = ::testing::TempDir() + "tessera_synth_tokenizer.gguf";
  ProcessResult r = Tessera({"synthesize", "--shape", "tiny", "--dtype", "q4_0", "-o", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string text = "hello world, the cat sat";
  const ProcessResult from_file = Tessera({"tokenize", "--model", path, "--text", text});
  const ProcessResult from_random =
      Tessera({"tokenize", "--model", "random:tiny:q4_0", "--text", text});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  ASSERT_EQ(from_random.exit_code, 0) << from_random.err;
  EXPECT_EQ(from_random.out, from_file.out);
  EXPECT_THAT(from_random.err, Not(HasSubstr("synthesizing")));  // nothing written
  std::string ids = from_file.out;
  while (!ids.empty() && ids.back() == '\n') ids.pop_back();
  const ProcessResult back_file = Tessera({"detokenize", "--model", path, "--ids", ids});
  const ProcessResult back_random = Tessera({"detokenize", "--model", "random:tiny", "--ids", ids});
  ASSERT_EQ(back_random.exit_code, 0) << back_random.err;
  EXPECT_EQ(back_random.out, back_file.out);
  EXPECT_THAT(back_random.out, HasSubstr(text));
  ExpectUsageError(Tessera({"tokenize", "--model", "random:llama-9-1t", "--text", "hi"}),
                   "--model random:llama-9-1t");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace tessera
