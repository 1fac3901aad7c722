// The `tessera` binary's argument handling, tokenize / detokenize (also --jsonl) and inspect,
// run as a subprocess. The tokenizer results are compared with the library called in-process
// on the same file (the tokenizer's own tests check it against Hugging Face).
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "formats/gguf_reader.h"
#include "formats/model_locator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/device_probe.h"
#include "tests/tools/subprocess.h"
#include "tokenizer/tokenizer.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessResult;
using testing::CountLines;
using testing::ExpectUsageError;
using testing::RunProcess;

ProcessResult Tessera(std::vector<std::string> args, const std::string& stdin_text = "") {
  args.insert(args.begin(), TESSERA_BINARY);
  return RunProcess(args, stdin_text);
}



std::string DefaultModel() {
  auto path = ResolveModelPath("default");
  EXPECT_TRUE(path.ok()) << "the default model is missing (fetch it with "
                            "scripts/fetch_model.py): "
                         << path.status();
  return path.ok() ? *path : "";
}

std::string WriteTemp(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

TEST(TesseraCliTest, HelpExitsZero) {
  ProcessResult r = Tessera({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, AllOf(HasSubstr("generate"), HasSubstr("tokenize"), HasSubstr("inspect")));
  for (const char* cmd : {"generate", "tokenize", "detokenize", "inspect"}) {
    r = Tessera({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_THAT(r.out, HasSubstr(cmd));
  }
  r = Tessera({"generate", "--help"});
  EXPECT_THAT(r.out, AllOf(HasSubstr("--max-tokens"), HasSubstr("--chat"),
                           HasSubstr("--backend"), HasSubstr("--no-stream")));
}

// `tessera devices` lists what the cuda backend can use; without a GPU (or without CUDA in
// the build) it says why and exits 1.
TEST(TesseraCliTest, DevicesListsGpusOrSaysWhyThereAreNone) {
  const ProcessResult r = Tessera({"devices", "--smoke"});
  if (CudaDeviceCount().ok()) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out,
                AllOf(HasSubstr("GPU 0: "), HasSubstr("GiB free"), HasSubstr("kernels run")));
  } else {
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, AnyOf(HasSubstr("no CUDA device"), HasSubstr("built without CUDA")));
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
}

TEST(TesseraCliTest, ParseErrorsExitTwoWithOneLine) {
  ExpectUsageError(Tessera({}), "tessera");
  ExpectUsageError(Tessera({"frobnicate"}), "frobnicate");
  ExpectUsageError(Tessera({"tokenize", "--text", "hi"}), "--model");
  ExpectUsageError(Tessera({"tokenize", "--model", "x", "--bogus"}), "--bogus");
  ExpectUsageError(Tessera({"generate", "--model", "x"}), "--prompt");
  ExpectUsageError(Tessera({"generate", "--prompt", "x", "--max-tokens", "many"}),
                   "--max-tokens");
  ExpectUsageError(Tessera({"inspect"}), "file");
  ExpectUsageError(Tessera({"generate", "--prompt", "x", "--quantization", "int3"}),
                   "--quantization");
  ExpectUsageError(Tessera({"serve", "--quantization", "fp4"}), "--quantization");
}

TEST(TesseraCliTest, BadInputsExitTwo) {
  ExpectUsageError(Tessera({"tokenize", "--model", "/nonexistent/model.gguf", "--text", "a"}),
                   "/nonexistent/model.gguf");
  ExpectUsageError(Tessera({"inspect", "/nonexistent/model.gguf"}), "/nonexistent/model.gguf");
  ExpectUsageError(Tessera({"generate", "--model", "/nonexistent/m.gguf", "--prompt", "a"}),
                   "/nonexistent/m.gguf");
  const std::string model = DefaultModel();
  ExpectUsageError(Tessera({"tokenize", "--model", model}), "--text or --jsonl");
  ExpectUsageError(Tessera({"tokenize", "--model", model, "--text", "a", "--jsonl"}),
                   "--text or --jsonl");
  ExpectUsageError(Tessera({"detokenize", "--model", model, "--ids", "1 two 3"}), "'two'");
  ExpectUsageError(Tessera({"detokenize", "--model", model, "--ids", "1 99999999"}), "99999999");
  ExpectUsageError(
      Tessera({"generate", "--model", model, "--prompt", "a", "--backend", "abacus"}), "abacus");
  // FP8 weights are the cuda backend's.
  ExpectUsageError(Tessera({"generate", "--model", model, "--prompt", "a", "--quantization",
                            "fp8"}),
                   "FP8 weights need the 'cuda' backend");
  // launch refuses it before starting anything.
  ExpectUsageError(Tessera({"launch", "--model", model, "--quantization", "fp8"}),
                   "--quantization fp8 needs --backend cuda");
}

TEST(TesseraCliTest, InvalidModelFileExitsOne) {
  const std::string path = WriteTemp("not_a_model.gguf", "this is not a GGUF file at all");
  for (std::vector<std::string> args :
       {std::vector<std::string>{"inspect", path},
        std::vector<std::string>{"tokenize", "--model", path, "--text", "a"},
        std::vector<std::string>{"generate", "--model", path, "--prompt", "a"}}) {
    ProcessResult r = Tessera(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << r.err;
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("not_a_model.gguf"));
  }
  std::remove(path.c_str());
}

class TesseraTokenizerCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = DefaultModel();
    ASSERT_FALSE(model_.empty());
    auto file = GgufFile::Open(model_);
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
    auto tok = Tokenizer::FromGguf(*file_);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
  }
  std::vector<int32_t> Encode(const std::string& text, bool bos) {
    EncodeOptions o;
    o.add_bos = bos;
    auto ids = tokenizer_->Encode(text, o);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  std::string model_;
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(TesseraTokenizerCliTest, TokenizeDetokenizeRoundTrip) {
  const std::string text = "Hello, world! Tessera serves Llama models: 12345 tokens/s.";
  ProcessResult r = Tessera({"tokenize", "--model", model_, "--text", text});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<int32_t> want = Encode(text, true);
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(r.out, absl::StrJoin(want, " ") + "\n");

  r = Tessera({"tokenize", "--model", model_, "--text", text, "--no-bos"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrJoin(Encode(text, false), " ") + "\n");

  const std::string ids = r.out.substr(0, r.out.size() - 1);
  r = Tessera({"detokenize", "--model", model_, "--ids", ids});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, text + "\n");
}

TEST_F(TesseraTokenizerCliTest, DefaultModelNameResolves) {
  ProcessResult r = Tessera({"tokenize", "--model", "default", "--text", "hi there"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrJoin(Encode("hi there", true), " ") + "\n");
}

TEST_F(TesseraTokenizerCliTest, TokenizeJsonlKeepsOrder) {
  const std::vector<std::string> texts = {"first line", "<|im_start|>user\nsecond",
                                          "third: \"quoted\" \u00e9t\u00e9"};
  std::string input;
  for (const std::string& t : texts) {
    std::string escaped;
    for (char c : t) {
      if (c == '"') escaped += "\\\"";
      else if (c == '\n') escaped += "\\n";
      else escaped += c;
    }
    input += "{\"text\": \"" + escaped + "\"}\n";
  }
  ProcessResult r = Tessera({"tokenize", "--model", model_, "--jsonl", "--no-bos"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(lines[i], "{\"ids\":[" + absl::StrJoin(Encode(texts[i], false), ",") + "]}");
  }
}

TEST_F(TesseraTokenizerCliTest, TokenizeJsonlBadLineExitsTwoWithLineNumber) {
  ProcessResult r = Tessera({"tokenize", "--model", model_, "--jsonl"},
                            "{\"text\": \"ok\"}\n{\"txt\": \"oops\"}\n{\"text\": \"never\"}\n");
  ExpectUsageError(r, "line 2");
  EXPECT_EQ(CountLines(r.out), 1);  // the first line was answered
  r = Tessera({"tokenize", "--model", model_, "--jsonl"}, "{\"text\": \"a\"}\nnot json\n");
  ExpectUsageError(r, "line 2");
}

TEST_F(TesseraTokenizerCliTest, DetokenizeJsonl) {
  const std::vector<int32_t> a = Encode("One sentence.", false);
  const std::vector<int32_t> b = Encode("Another one, with <|im_end|>", false);
  const std::string input = "{\"ids\": [" + absl::StrJoin(a, ",") + "]}\n{\"ids\": [" +
                            absl::StrJoin(b, ",") + "]}\n";
  ProcessResult r = Tessera({"detokenize", "--model", model_, "--jsonl"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"text\":\"One sentence.\"}\n{\"text\":\"Another one, with <|im_end|>\"}\n");
  r = Tessera({"detokenize", "--model", model_, "--jsonl"}, "{\"ids\": [1, \"x\"]}\n");
  ExpectUsageError(r, "line 1");
}

TEST_F(TesseraTokenizerCliTest, InspectPrintsMetadataAndTensorTable) {
  ProcessResult r = Tessera({"inspect", model_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("general.architecture: string = "));
  EXPECT_THAT(r.out, HasSubstr("llama.block_count"));
  EXPECT_THAT(r.out, HasSubstr("tokenizer.ggml.tokens"));
  EXPECT_THAT(r.out, HasSubstr("tensors: 272"));  // 30 layers x 9 + embedding + output norm
  // The abbreviated 49152-entry vocabulary must not be printed in full.
  EXPECT_LT(r.out.size(), 100000u);
  bool saw_embd = false, saw_q = false;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 5) continue;
    if (f[0] == "token_embd.weight") {
      saw_embd = true;
      EXPECT_EQ(f[1], "q8_0");
      EXPECT_EQ(absl::StrCat(f[2], f[3]), "[49152,576]");
      EXPECT_EQ(f.back(), "30081024");  // 49152 rows x 18 blocks x 34 bytes
    }
    if (f[0] == "blk.0.attn_q.weight") {
      saw_q = true;
      EXPECT_EQ(f[1], "q4_1");
      EXPECT_EQ(f.back(), "207360");  // 576 x 18 blocks x 20 bytes
    }
  }
  EXPECT_TRUE(saw_embd);
  EXPECT_TRUE(saw_q);
}

}  // namespace
}  // namespace tessera
