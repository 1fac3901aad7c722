// The coordinator's HTTP side over real loopback HTTP (cpp-httplib's client) against
// scripted replicas: OpenAI completions and chat, streamed and whole, errors in OpenAI's
// shape, auth, models, readiness and the Prometheus metrics of both front ends.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "coordinator/model_registry.h"
#include "coordinator/server.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tessera/v1/inference.grpc.pb.h"
#include "tests/coordinator/fake_replica.h"
#include "tests/coordinator/model_text.h"

namespace tessera {
namespace {

using nlohmann::json;
using testing::FakeReplica;
using ::testing::HasSubstr;

constexpr char kAnswer[] = " Hello, world! A streamed answer.";

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& text = testing::DefaultModelText();
    ASSERT_NE(text.tokenizer, nullptr) << "the default model is needed (scripts/fetch_model.py)";
    script_ = testing::EncodePlain(kAnswer);
    script_.push_back(text.tokenizer->eos_id());
    ServedModelSpec spec;
    spec.name = "default";
    spec.config = text.config;
    spec.tokenizer = text.tokenizer;
    spec.chat_template = text.chat_template;
    spec.context_length = 2048;
    spec.default_max_new_tokens = 64;
    auto model = registry_.Add(std::move(spec));
    ASSERT_TRUE(model.ok());
    model_ = *model;
  }

  void Start(CoordinatorServerOptions options = {}) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.http_port = 0;
    auto server = CoordinatorServer::Start(&registry_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->http_port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->http_port());
    client_->set_read_timeout(60, 0);
  }

  std::shared_ptr<FakeReplica> AddReplica(bool hold = false) {
    auto replica = std::make_shared<FakeReplica>(script_, hold);
    model_->AddReplica(replica);
    return replica;
  }

  struct Reply {
    int status = 0;
    json body;
    std::string raw;
  };
  Reply Post(const std::string& path, const std::string& body, httplib::Headers headers = {}) {
    auto res = client_->Post(path.c_str(), headers, body, "application/json");
    Reply r;
    if (!res) return r;
    r.status = res->status;
    r.raw = res->body;
    r.body = json::parse(res->body, nullptr, false);
    return r;
  }
  // The data lines of a server-sent-event stream, [DONE] included.
  static std::vector<std::string> Events(const std::string& raw) {
    std::vector<std::string> events;
    for (absl::string_view line : absl::StrSplit(raw, '\n')) {
      if (absl::StartsWith(line, "data: ")) events.emplace_back(line.substr(6));
    }
    return events;
  }

  ModelRegistry registry_;
  ServedModel* model_ = nullptr;
  std::vector<int32_t> script_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpTest, CompletionWhole) {
  AddReplica();
  Start();
  Reply r = Post("/v1/completions", R"({"model": "default", "prompt": "Say hi", "max_tokens": 64,
                                        "temperature": 0})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "text_completion");
  EXPECT_THAT(r.body["id"].get<std::string>(), HasSubstr("cmpl-"));
  EXPECT_EQ(r.body["model"], "default");
  EXPECT_EQ(r.body["choices"][0]["text"], kAnswer);
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
  EXPECT_GT(r.body["usage"]["prompt_tokens"], 0);
  EXPECT_EQ(r.body["usage"]["completion_tokens"], static_cast<int>(script_.size()));
  EXPECT_EQ(r.body["usage"]["total_tokens"],
            r.body["usage"]["prompt_tokens"].get<int>() + static_cast<int>(script_.size()));
}

TEST_F(HttpTest, ChatStreamsEventsThatAddUpToTheAnswer) {
  AddReplica();
  Start();
  Reply r = Post("/v1/chat/completions",
                 R"({"messages": [{"role": "user", "content": "Hi"}], "stream": true,
                     "stream_options": {"include_usage": true}})");
  ASSERT_EQ(r.status, 200) << r.raw;
  std::vector<std::string> events = Events(r.raw);
  ASSERT_GE(events.size(), 4u) << r.raw;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  int roles = 0;
  std::string finish;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    json chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    const json& choice = chunk["choices"][0];
    if (choice["delta"].contains("role")) ++roles;
    if (choice["delta"].contains("content")) text += choice["delta"]["content"].get<std::string>();
    if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
  }
  EXPECT_EQ(roles, 1);
  EXPECT_EQ(text, kAnswer);
  EXPECT_EQ(finish, "stop");
  json usage = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], static_cast<int>(script_.size()));
}

TEST_F(HttpTest, StopStringAndLength) {
  AddReplica();
  Start();
  Reply r = Post("/v1/completions", R"({"prompt": "x", "max_tokens": 64, "stop": ["world"]})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["text"], " Hello, ");
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
}

TEST_F(HttpTest, BadRequestsGetOpenAiErrors) {
  AddReplica();
  Start();
  struct Case {
    const char* path;
    const char* body;
    int status;
    const char* param;
  };
  for (const Case& c : {
           Case{"/v1/completions", "{not json", 400, nullptr},
           Case{"/v1/completions", R"({"prompt": "x", "temperature": 9})", 400, "temperature"},
           Case{"/v1/completions", R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens"},
           Case{"/v1/completions", R"({"prompt": "x", "max_tokens": 100000})", 400, "max_tokens"},
           Case{"/v1/completions", R"({"prompt": "x", "model": "nope"})", 404, "model"},
           Case{"/v1/completions", R"({"prompt": "x", "n": 0})", 400, "n"},
           Case{"/v1/chat/completions", R"({"messages": []})", 400, "messages"},
           Case{"/v1/chat/completions",
                R"({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})", 400, "tools"},
       }) {
    Reply r = Post(c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.raw;
    ASSERT_TRUE(r.body.contains("error")) << r.raw;
    EXPECT_FALSE(r.body["error"]["message"].get<std::string>().empty());
    if (c.param != nullptr) {
      EXPECT_EQ(r.body["error"]["param"], c.param) << r.raw;
    }
  }
  auto missing = client_->Get("/v1/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_THAT(missing->body, HasSubstr("\"error\""));
}

TEST_F(HttpTest, TokenIsRequiredWhenConfigured) {
  AddReplica();
  CoordinatorServerOptions options;
  options.auth_token = "s3cret";
  Start(options);
  EXPECT_EQ(Post("/v1/completions", R"({"prompt": "x"})").status, 401);
  EXPECT_EQ(
      Post("/v1/completions", R"({"prompt": "x"})", {{"Authorization", "Bearer nope"}}).status,
      401);
  EXPECT_EQ(
      Post("/v1/completions", R"({"prompt": "x"})", {{"Authorization", "Bearer s3cret"}}).status,
      200);
  auto models = client_->Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 401);
  auto metrics = client_->Get("/metrics");  // scrapers need no token
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
}

TEST_F(HttpTest, ModelsAndReadiness) {
  Start();
  auto ready = client_->Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);  // no replica yet
  Reply none = Post("/v1/completions", R"({"prompt": "x"})");
  EXPECT_EQ(none.status, 503) << none.raw;
  AddReplica();
  ready = client_->Get("/ready");
  EXPECT_EQ(ready->status, 200);
  auto models = client_->Get("/v1/models");
  ASSERT_TRUE(models);
  json list = json::parse(models->body);
  EXPECT_EQ(list["object"], "list");
  EXPECT_EQ(list["data"][0]["id"], "default");
  EXPECT_EQ(list["data"][0]["max_model_len"], 2048);
  auto one = client_->Get("/v1/models/default");
  EXPECT_EQ(one->status, 200);
  EXPECT_EQ(client_->Get("/v1/models/other")->status, 404);
  EXPECT_EQ(client_->Get("/health")->status, 200);
}

TEST_F(HttpTest, ClientThatLeavesMidStreamCancelsItsRequest) {
  auto replica = AddReplica(/*hold=*/true);
  Start();
  std::thread client([&] {
    httplib::Client c("127.0.0.1", server_->http_port());
    c.set_read_timeout(2, 0);  // gives up while the replica holds the request
    c.Post("/v1/completions", R"({"prompt": "x", "stream": true})", "application/json");
  });
  replica->WaitSubmitted(1);
  client.join();
  // The stream notices the closed connection at its next write or keep-alive.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (replica->cancelled().empty() && absl::Now() < deadline) {
    replica->Release();
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(replica->cancelled().size(), 1u);  // once, not once per path that noticed
}

TEST_F(HttpTest, MetricsCountBothFrontEnds) {
  AddReplica();
  Start();
  ASSERT_EQ(Post("/v1/completions", R"({"prompt": "x"})").status, 200);
  ASSERT_EQ(Post("/v1/completions", R"({"prompt": "x", "n": 0})").status, 400);
  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->get_header_value("Content-Type"), HasSubstr("text/plain"));
  const std::string& text = metrics->body;
  EXPECT_THAT(text,
              HasSubstr("tessera_requests_total{api=\"http\",model=\"default\",code=\"OK\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tessera_requests_total{api=\"http\",model=\"default\",code="
                              "\"INVALID_ARGUMENT\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tessera_time_to_first_token_seconds_count{model=\"default\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("tessera_time_per_output_token_seconds_count{model=\"default\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tessera_request_duration_seconds_count{model=\"default\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tessera_replica_ready{model=\"default\",replica=\"fake\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tessera_requests_waiting{model=\"default\",replica=\"fake\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE tessera_kv_blocks_total gauge\n"));
  EXPECT_THAT(text, HasSubstr("tessera_calls_in_flight 0\n"));
}

TEST_F(HttpTest, MetricsCountGrpcToo) {
  AddReplica();
  Start();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = tessera::v1::Inference::NewStub(channel);
  grpc::ClientContext context;
  tessera::v1::GenerateRequest request;
  request.set_prompt("x");
  tessera::v1::CompleteResponse response;
  ASSERT_TRUE(stub->Complete(&context, request, &response).ok());
  grpc::ClientContext bad_context;
  request.mutable_decoding()->set_num_return_sequences(0);
  EXPECT_FALSE(stub->Complete(&bad_context, request, &response).ok());
  const std::string text = server_->metrics().Render();
  EXPECT_THAT(text,
              HasSubstr("tessera_requests_total{api=\"grpc\",model=\"default\",code=\"OK\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tessera_requests_total{api=\"grpc\",model=\"default\",code="
                              "\"INVALID_ARGUMENT\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tessera_request_duration_seconds_count{model=\"default\"} 1\n"));
}

}  // namespace
}  // namespace tessera
