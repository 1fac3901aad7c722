// `tessera generate` on the default model: its greedy text (and its --json token ids) equal
// the tokens of a greedy loop written here over LlamaModel directly, on both backends; it
// reports prefill / decode speed on stderr.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "nlohmann/json.hpp"
#include "tests/tools/subprocess.h"
#include "tokenizer/tokenizer.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

std::vector<int32_t> GreedyTokens(LlamaModel& model, std::vector<int32_t> tokens, int max_new,
                                  const std::vector<int32_t>& stop_ids) {
  auto cache = model.NewKvCache(static_cast<int64_t>(tokens.size()) + max_new);
  EXPECT_TRUE(cache.ok());
  std::vector<int32_t> out;
  std::vector<float> logits;
  int64_t pos = 0;
  std::vector<int32_t> feed = tokens;
  for (int i = 0; i < max_new; ++i) {
    EXPECT_TRUE(model.Forward(feed, pos, *cache, false, &logits).ok());
    pos += static_cast<int64_t>(feed.size());
    int32_t best = 0;
    for (int32_t v = 1; v < static_cast<int32_t>(logits.size()); ++v) {
      if (logits[v] > logits[best]) best = v;
    }
    if (std::find(stop_ids.begin(), stop_ids.end(), best) != stop_ids.end()) break;
    out.push_back(best);
    feed = {best};
  }
  return out;
}

class TesseraGenerateTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TesseraGenerateTest, GreedyTextMatchesLlamaModel) {
  const std::string backend_name = GetParam();
  auto path = ResolveModelPath("default");
  ASSERT_TRUE(path.ok()) << "fetch the default model first: " << path.status();
  auto store = OpenWeightStore(*path);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_NE((*store)->gguf(), nullptr);
  auto tokenizer = Tokenizer::FromGguf(*(*store)->gguf());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto backend = CreateBackend(backend_name, 2);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto model = LlamaModel::Load(**store, backend->get());
  ASSERT_TRUE(model.ok()) << model.status();

  const std::string prompt = "The capital of France is";
  constexpr int kMaxTokens = 6;
  auto prompt_ids = (*tokenizer)->Encode(prompt, EncodeOptions{});
  ASSERT_TRUE(prompt_ids.ok());
  const std::vector<int32_t> want =
      GreedyTokens(**model, *prompt_ids, kMaxTokens, (*tokenizer)->stop_ids());
  ASSERT_FALSE(want.empty());
  auto want_text = (*tokenizer)->Decode(want, /*skip_special=*/true);
  ASSERT_TRUE(want_text.ok());

  for (bool stream : {true, false}) {
    std::vector<std::string> args = {TESSERA_BINARY, "generate", "--model", "default",
                                     "--prompt", prompt, "--max-tokens",
                                     std::to_string(kMaxTokens), "--backend", backend_name,
                                     "--threads", "2"};
    if (!stream) args.push_back("--no-stream");
    testing::ProcessResult r = testing::RunProcess(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, *want_text + "\n") << (stream ? "streaming" : "--no-stream");
    EXPECT_THAT(r.err, HasSubstr("prefill: " + std::to_string(prompt_ids->size()) + " tokens"));
    EXPECT_THAT(r.err, HasSubstr("decode: " + std::to_string(want.size()) + " tokens generated"));
    EXPECT_THAT(r.err, HasSubstr("tokens/s"));
  }
  // --json reports the same tokens.
  testing::ProcessResult r = testing::RunProcess(
      {TESSERA_BINARY, "generate", "--model", "default", "--prompt", prompt, "--max-new-tokens",
       std::to_string(kMaxTokens), "--backend", backend_name, "--threads", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), want);
  EXPECT_EQ(j["text"], *want_text);
}

INSTANTIATE_TEST_SUITE_P(Backends, TesseraGenerateTest,
                         ::testing::Values("cpu", "cpu-reference"),
                         [](const auto& info) {
                           return std::string(info.param) == "cpu" ? std::string("cpu")
                                                                   : std::string("reference");
                         });

TEST(TesseraGenerateChatTest, ChatStopsAtEndOfTurnOrMaxTokens) {
  testing::ProcessResult r = testing::RunProcess(
      {TESSERA_BINARY, "generate", "--model", "default", "--prompt", "Say hello.", "--chat",
       "--max-tokens", "24", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("<|im_end|>")));
  EXPECT_THAT(r.err, HasSubstr("decode: "));
}

TEST(TesseraGenerateChatTest, ChatTemplateFile) {
  const std::string path = ::testing::TempDir() + "chatml_template.txt";
  { std::ofstream(path) << "chatml"; }
  testing::ProcessResult r = testing::RunProcess(
      {TESSERA_BINARY, "generate", "--prompt", "Hi", "--chat", "--chat-template", path,
       "--max-tokens", "3", "--threads", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("decode: "));

  r = testing::RunProcess({TESSERA_BINARY, "generate", "--prompt", "Hi", "--chat",
                           "--chat-template", "/nonexistent/template.jinja"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/template.jinja"));

  r = testing::RunProcess({TESSERA_BINARY, "generate", "--prompt", "Hi", "--chat-template", path});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--chat-template needs --chat"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tessera
