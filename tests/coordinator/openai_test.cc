// The OpenAI request and response shapes (coordinator/openai_request.h, openai_response.h)
// and the Prometheus text format (coordinator/metrics_registry.h), without a server.
#include <string>

#include "coordinator/metrics_registry.h"
#include "coordinator/openai_request.h"
#include "coordinator/openai_response.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/model_text.h"

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;
using nlohmann::json;
using ::testing::HasSubstr;

absl::StatusOr<OpenAiRequest> Completions(const char* body) {
  return ParseOpenAiRequest(json::parse(body), OpenAiEndpoint::kCompletions);
}
absl::StatusOr<OpenAiRequest> Chat(const char* body) {
  return ParseOpenAiRequest(json::parse(body), OpenAiEndpoint::kChatCompletions);
}

TEST(OpenAiRequestTest, CompletionsFollowOpenAiDefaults) {
  auto r = Completions(R"({"model": "m", "prompt": "Hi"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->body["prompt"], "Hi");
  EXPECT_EQ(r->body["max_new_tokens"], 16);  // OpenAI's default for /v1/completions
  EXPECT_EQ(r->body["do_sample"], true);     // temperature 1
  EXPECT_EQ(r->body["temperature"], 1.0);
  EXPECT_EQ(r->body["top_k"], 0);  // OpenAI has no top-k
  EXPECT_FALSE(r->stream);
  EXPECT_FALSE(r->logprobs.has_value());
}

TEST(OpenAiRequestTest, SettingsMapToGenerationConfigNames) {
  auto r = Completions(R"({"prompt": ["Hi"], "max_tokens": 5, "temperature": 0, "stop": "\n",
      "n": 2, "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5, "top_p": 0.9,
      "logit_bias": {"42": -100}, "logprobs": 3, "best_of": 3, "min_tokens": 2,
      "top_k": 5, "stream": true, "stream_options": {"include_usage": true}, "user": "u"})");
  ASSERT_TRUE(r.ok()) << r.status();
  const json& b = r->body;
  EXPECT_EQ(b["prompt"], "Hi");
  EXPECT_EQ(b["max_new_tokens"], 5);
  EXPECT_EQ(b["do_sample"], false);  // temperature 0 is greedy
  EXPECT_FALSE(b.contains("temperature"));
  EXPECT_EQ(b["stop_strings"], json::array({"\n"}));
  EXPECT_EQ(b["n"], 2);
  EXPECT_EQ(b["seed"], 7);
  EXPECT_EQ(b["presence_penalty"], 0.5);
  EXPECT_EQ(b["frequency_penalty"], -0.5);
  EXPECT_EQ(b["top_p"], 0.9);
  EXPECT_EQ(b["logit_bias"]["42"], -100);
  EXPECT_EQ(b["logprobs"], 3);
  EXPECT_EQ(b["best_of"], 3);
  EXPECT_EQ(b["min_new_tokens"], 2);
  EXPECT_EQ(b["top_k"], 5);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->logprobs, 3);
}

TEST(OpenAiRequestTest, ChatMessagesAndLogprobs) {
  auto r = Chat(R"({"messages": [{"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hello "},
                                   {"type": "text", "text": "there"}]}],
      "max_completion_tokens": 9, "max_tokens": 100, "logprobs": true, "top_logprobs": 2,
      "response_format": {"type": "text"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body["messages"][0]["role"], "system");
  EXPECT_EQ(r->body["messages"][1]["content"], "Hello there");
  EXPECT_EQ(r->body["max_new_tokens"], 9);  // max_completion_tokens wins
  EXPECT_EQ(r->logprobs, 2);
  auto no_length = Chat(R"({"messages": [{"role": "user", "content": "x"}]})");
  ASSERT_TRUE(no_length.ok());
  EXPECT_FALSE(no_length->body.contains("max_new_tokens"));  // the server's default
}

TEST(OpenAiRequestTest, BadInputNamesTheField) {
  struct Case {
    const char* body;
    bool chat;
    const char* field;
  };
  for (const Case& c : {
           Case{R"({"prompt": 5})", false, "'prompt'"},
           Case{R"({"prompt": ["a", "b"]})", false, "'prompt'"},
           Case{R"({"prompt": [1, 2, 3]})", false, "'prompt'"},
           Case{R"({})", false, "'prompt'"},
           Case{R"({"prompt": "x", "temperature": 3})", false, "'temperature'"},
           Case{R"({"prompt": "x", "temperature": "hot"})", false, "'temperature'"},
           Case{R"({"prompt": "x", "stop": [1]})", false, "'stop'"},
           Case{R"({"prompt": "x", "echo": true})", false, "'echo'"},
           Case{R"({"prompt": "x", "suffix": "s"})", false, "'suffix'"},
           Case{R"({"prompt": "x", "logprobs": -1})", false, "'logprobs'"},
           Case{R"({"prompt": "x", "stream_options": {"include_usage": true}})", false,
                "'stream_options'"},
           Case{R"({"prompt": "x", "functions": []})", false, "'functions'"},
           Case{R"({"prompt": "x", "messages": []})", false, "'messages'"},
           Case{R"({"prompt": "x", "model": 3})", false, "'model'"},
           Case{R"({"messages": "hi"})", true, "'messages'"},
           Case{R"({"messages": [{"role": "user"}]})", true, "'messages[0].content'"},
           Case{R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true,
                "'messages[0].content[0]'"},
           Case{R"({"messages": [{"role": "user", "content": "x", "tool_calls": []}]})", true,
                "'messages[0].tool_calls'"},
           Case{R"({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})", true,
                "'tools'"},
           Case{R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", true,
                "'top_logprobs'"},
           Case{R"({"messages": [{"role": "user", "content": "x"}],
                   "response_format": {"type": "json_object"}})",
                true, "'response_format'"},
           Case{R"({"messages": [{"role": "user", "content": "x"}], "prompt": "y"})", true,
                "'prompt'"},
       }) {
    auto r = c.chat ? Chat(c.body) : Completions(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.field)) << c.body;
  }
  EXPECT_FALSE(ParseOpenAiRequest(json::array(), OpenAiEndpoint::kCompletions).ok());
}

TEST(OpenAiRequestTest, ErrorTextUsesOpenAiNames) {
  OpenAiErrorText t = ToOpenAiErrorText(
      "request: field 'max_new_tokens' is 5000; prompt + max_new_tokens exceed the context");
  EXPECT_EQ(t.param, "max_tokens");
  EXPECT_THAT(t.message, HasSubstr("field 'max_tokens' is 5000"));
  EXPECT_EQ(ToOpenAiErrorText("field 'stop_strings' has 17 strings").param, "stop");
  EXPECT_EQ(ToOpenAiErrorText("no ready replica").param, "");
}

TEST(OpenAiResponseTest, ErrorBodyAndHttpStatus) {
  json body = OpenAiErrorBody(absl::InvalidArgumentError("request: field 'n' must be >= 1"));
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "n");
  EXPECT_EQ(body["error"]["code"], "invalid_argument");
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(OpenAiErrorBody(absl::UnavailableError("x"))["error"]["param"], nullptr);
}

TEST(OpenAiResponseTest, ChatChunksCarryTheRoleOnceAndLogprobs) {
  const auto& text = testing::DefaultModelText();
  ASSERT_NE(text.tokenizer, nullptr) << "the default model is needed (scripts/fetch_model.py)";
  auto request = Chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true,
                          "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(request.ok());
  OpenAiResponder responder(*request, "chatcmpl-1", "m", 1700000000, text.tokenizer.get());
  const int32_t hello = testing::EncodePlain("Hello")[0];
  v1::GenerateResponse first;
  v1::CompletionDelta* d = first.add_deltas();
  d->set_text("Hello");
  v1::TokenInfo* t = d->add_tokens();
  t->set_token_id(hello);
  t->set_logprob(-0.5f);
  std::vector<json> chunks = responder.Chunks(first);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["content"], "Hello");
  EXPECT_EQ(chunks[0]["choices"][0]["logprobs"]["content"][0]["token"], "Hello");
  EXPECT_EQ(chunks[0]["choices"][0]["logprobs"]["content"][0]["logprob"], -0.5);
  EXPECT_EQ(chunks[0]["usage"], nullptr);

  v1::GenerateResponse last;
  last.add_deltas()->set_finish_reason(v1::FINISH_REASON_STOP);
  last.mutable_usage()->set_prompt_tokens(3);
  last.mutable_usage()->set_completion_tokens(1);
  chunks = responder.Chunks(last);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_FALSE(chunks[0]["choices"][0]["delta"].contains("role"));
  EXPECT_EQ(chunks[0]["choices"][0]["finish_reason"], "stop");
  json usage = responder.UsageChunk(last.usage());
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 4);
}

TEST(OpenAiResponseTest, WholeCompletionAndInvalidUtf8) {
  const auto& text = testing::DefaultModelText();
  ASSERT_NE(text.tokenizer, nullptr);
  auto request = Completions(R"({"prompt": "x"})");
  ASSERT_TRUE(request.ok());
  OpenAiResponder responder(*request, "cmpl-1", "m", 1, text.tokenizer.get());
  v1::CompleteResponse whole;
  v1::Completion* c = whole.add_completions();
  c->set_text("abc");
  c->set_finish_reason(v1::FINISH_REASON_LENGTH);
  json out = responder.Whole(whole);
  EXPECT_EQ(out["object"], "text_completion");
  EXPECT_EQ(out["choices"][0]["text"], "abc");
  EXPECT_EQ(out["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(out["choices"][0]["logprobs"], nullptr);
  // A token that is half a UTF-8 character still serializes.
  EXPECT_EQ(DumpJson(json("\xe2\x82")), "\"\xef\xbf\xbd\"");
}

TEST(MetricsRegistryTest, RendersTheTextFormat) {
  MetricsRegistry registry;
  CounterFamily* counter = registry.AddCounter("t_requests_total", "Requests.\nAll.", {"code"});
  HistogramFamily* histogram = registry.AddHistogram("t_seconds", "Latency.", {}, {0.1, 1});
  counter->Add({"OK"});
  counter->Add({"OK"}, 2);
  counter->Add({"a\"b\\c\nd"});
  histogram->Observe({}, 0.05);
  histogram->Observe({}, 0.1);  // on a bound: that bucket
  histogram->Observe({}, 5);
  registry.AddCollector([] {
    MetricSnapshot m;
    m.name = "t_gauge";
    m.help = "A gauge.";
    m.label_names = {"replica"};
    m.samples.push_back({{"r0"}, 1.5});
    return std::vector<MetricSnapshot>{m};
  });
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# HELP t_requests_total Requests.\\nAll.\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE t_requests_total counter\n"));
  EXPECT_THAT(text, HasSubstr("t_requests_total{code=\"OK\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("t_requests_total{code=\"a\\\"b\\\\c\\nd\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE t_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("t_seconds_bucket{le=\"0.1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("t_seconds_bucket{le=\"1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("t_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("t_seconds_count 3\n"));
  EXPECT_THAT(text, HasSubstr("t_seconds_sum 5.15"));
  EXPECT_THAT(text, HasSubstr("# TYPE t_gauge gauge\nt_gauge{replica=\"r0\"} 1.5\n"));
  EXPECT_EQ(counter->Value({"OK"}), 3);
  EXPECT_EQ(histogram->Count({}), 3);
}

}  // namespace
}  // namespace tessera
