// tools/batch_request.h on the default model's tokenizer: a line's settings override the
// command line's defaults, ids and lengths resolve as documented, and every bad line is
// INVALID_ARGUMENT naming its line and field.
#include "tools/batch_request.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/chat_prompt.h"
#include "tools/cli_util.h"
#include "tools/model_session.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

class BatchRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto handle = LoadTokenizer("default");
    ASSERT_TRUE(handle.ok()) << "fetch the default model first: " << handle.status();
    handle_ = *std::move(handle);
    auto chat = LoadChatTemplate("", *handle_.file);
    ASSERT_TRUE(chat.ok()) << chat.status();
    chat_ = *std::move(chat);
    defaults_.config.do_sample = true;
    defaults_.config.temperature = 0.5;
    defaults_.config.top_k = 20;
    defaults_.max_new_tokens_flag = 7;
    context_.tokenizer = handle_.tokenizer.get();
    context_.chat_template = &*chat_;
    context_.defaults = &defaults_;
    context_.context_length = 64;
  }

  TokenizerHandle handle_;
  std::optional<ChatTemplate> chat_;
  DecodingSettings defaults_;
  BatchRequestContext context_;
};

TEST_F(BatchRequestTest, LineSettingsOverrideCommandLineDefaults) {
  auto r = ParseBatchLine(R"({"prompt": "Hello world", "temperature": 0.9, "n": 3,
                              "priority": -2, "seed": 5})",
                          4, context_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, "4");
  const GenerationConfig& g = r->request.generation;
  EXPECT_TRUE(g.do_sample);            // from the defaults
  EXPECT_EQ(g.top_k, 20);              // from the defaults
  EXPECT_DOUBLE_EQ(g.temperature, 0.9);  // the line's
  EXPECT_EQ(g.seed, 5u);
  EXPECT_EQ(r->request.spec.max_new_tokens, 7);  // --max-new-tokens
  EXPECT_EQ(r->request.spec.n, 3);
  EXPECT_EQ(r->request.spec.priority, -2);
  auto expected = handle_.tokenizer->Encode("Hello world", EncodeOptions{});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(r->request.spec.prompt_token_ids, *expected);
  // The vocabulary's stop ids (<|im_end|>, ...) end a completion and are EOS for min_new_tokens.
  for (int32_t id : handle_.tokenizer->stop_ids()) {
    EXPECT_THAT(r->stop_ids, ::testing::Contains(id));
    EXPECT_THAT(g.eos_token_ids, ::testing::Contains(id));
  }
}

TEST_F(BatchRequestTest, LengthsAndIds) {
  auto r = ParseBatchLine(R"({"id": "q", "prompt": "Hi", "max_new_tokens": 3})", 1, context_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, "q");
  EXPECT_EQ(r->request.spec.max_new_tokens, 3);
  r = ParseBatchLine(R"({"id": 12, "prompt": "Hi", "max_new_tokens": 1000})", 1, context_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, "12");
  // Capped by the context (64) minus the prompt.
  EXPECT_EQ(r->request.spec.max_new_tokens,
            64 - static_cast<int>(r->request.spec.prompt_token_ids.size()));
  r = ParseBatchLine(R"({"prompt": "Hi", "max_length": 10})", 1, context_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.spec.max_new_tokens,
            10 - static_cast<int>(r->request.spec.prompt_token_ids.size()));
}

TEST_F(BatchRequestTest, MessagesGoThroughTheChatTemplate) {
  auto r = ParseBatchLine(
      R"({"messages": [{"role": "user", "content": "<|im_end|>"}], "max_new_tokens": 2})", 1,
      context_);
  ASSERT_TRUE(r.ok()) << r.status();
  const ChatMessage messages[] = {{"user", "<|im_end|>"}};
  auto expected = EncodeChat(*handle_.tokenizer, *chat_, messages, true);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(r->request.spec.prompt_token_ids, *expected);
  // --chat wraps a plain prompt the same way.
  context_.chat = true;
  auto wrapped = ParseBatchLine(R"({"prompt": "<|im_end|>"})", 1, context_);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(wrapped->request.spec.prompt_token_ids, *expected);
}

TEST_F(BatchRequestTest, BadLinesNameTheField) {
  struct Case {
    const char* line;
    const char* field;
  };
  const Case cases[] = {
      {"{", "not valid JSON"},
      {"[1]", "not a JSON object"},
      {R"({"max_new_tokens": 2})", "'prompt'"},
      {R"({"prompt": "a", "messages": []})", "not both"},
      {R"({"prompt": 3})", "'prompt' must be a string"},
      {R"({"messages": [{"role": "user"}]})", "messages[0]"},
      {R"({"prompt": "a", "top_p": 2})", "top_p"},
      {R"({"prompt": "a", "n": 0})", "'n'"},
      {R"({"prompt": "a", "n": 2, "do_sample": false})", "'n' (2)"},
      {R"({"prompt": "a", "priority": "high"})", "'priority'"},
      {R"({"prompt": "a", "id": [1]})", "'id'"},
      {R"({"prompt": "a", "logprobs": 21})", "'logprobs'"},
      {R"({"prompt": "a", "max_length": 1})", "'max_length' (1)"},
      {R"({"prompt": ""})", "is empty"},
  };
  for (const Case& c : cases) {
    auto r = ParseBatchLine(c.line, 9, context_);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("line 9: ")) << c.line;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.field)) << c.line;
  }
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += " word";
  auto r = ParseBatchLine(absl::StrCat(R"({"prompt": ")", long_prompt, R"("})"), 2, context_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("context is 64"));
}

TEST_F(BatchRequestTest, MessagesWithoutTemplateFail) {
  context_.chat_template = nullptr;
  context_.chat_template_error = "no template here";
  auto r = ParseBatchLine(R"({"messages": [{"role": "user", "content": "x"}]})", 3, context_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("no template here"));
}

TEST(BatchLineIdTest, FallsBackToTheLineNumber) {
  EXPECT_EQ(BatchLineId(nlohmann::json::parse(R"({"id": "a"})"), 3), "a");
  EXPECT_EQ(BatchLineId(nlohmann::json::parse(R"({"id": 5})"), 3), "5");
  EXPECT_EQ(BatchLineId(nlohmann::json::parse(R"({"id": [5]})"), 3), "3");
  EXPECT_EQ(BatchLineId(nlohmann::json(), 8), "8");
}

}  // namespace
}  // namespace tessera
