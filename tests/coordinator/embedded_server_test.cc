// Embedded mode end to end: the gRPC server over the real default model, one in-process
// replica (worker/engine_loop.h) on the batch-invariant CPU backend, so a request's tokens
// must not depend on what else runs. Concurrent streams equal the same requests one at a
// time; cancellation, deadlines and draining free every KV block.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/model_registry.h"
#include "coordinator/server.h"
#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tessera/v1/inference.grpc.pb.h"
#include "tests/coordinator/loaded_model.h"
#include "tokenizer/chat_prompt.h"
#include "worker/batch_runner.h"
#include "worker/engine_loop.h"

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;
using ::testing::HasSubstr;

class EmbeddedServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::DefaultModel();
    ASSERT_NE(model_, nullptr);
    engine_ = model_->StartEngine();
    ASSERT_NE(engine_, nullptr);
    auto served = registry_.Add(model_->Spec());
    ASSERT_TRUE(served.ok());
    (*served)->AddReplica(engine_);
    CoordinatorServerOptions server_options;
    server_options.host = "127.0.0.1";
    auto server = CoordinatorServer::Start(&registry_, server_options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::Inference::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                       grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
    // No block may stay in use once every request has ended.
    if (engine_ != nullptr) ExpectAllBlocksFree();
  }

  void ExpectAllBlocksFree() {
    ASSERT_TRUE(engine_->WaitIdle(absl::Seconds(30)));
    ReplicaLoad load = engine_->Load();
    for (int i = 0; i < 100 && load.kv_blocks_used != 0; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      load = engine_->Load();
    }
    EXPECT_EQ(load.kv_blocks_used, 0);
    EXPECT_EQ(load.running_requests + load.waiting_requests, 0);
  }

  // A request that runs for a long time: no stop token before 1400 tokens.
  static v1::GenerateRequest Endless() {
    v1::GenerateRequest r = Chat("Count from one to one thousand.", 1500);
    r.mutable_decoding()->set_min_new_tokens(1400);
    return r;
  }

  static v1::GenerateRequest Chat(const std::string& question, int max_new_tokens) {
    v1::GenerateRequest r;
    auto* m = r.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(question);
    r.mutable_decoding()->set_max_new_tokens(max_new_tokens);
    return r;
  }

  struct Result {
    grpc::Status status;
    std::string text;
    std::vector<int32_t> tokens;
    int responses = 0;
    v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  };
  Result Stream(const v1::GenerateRequest& request) {
    Result result;
    grpc::ClientContext context;
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      ++result.responses;
      for (const auto& d : response.deltas()) {
        if (d.index() != 0) continue;  // completion 0's, as Complete reports
        result.text += d.text();
        for (const auto& t : d.tokens()) result.tokens.push_back(t.token_id());
        if (d.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) result.finish = d.finish_reason();
      }
    }
    result.status = reader->Finish();
    return result;
  }
  Result Complete(const v1::GenerateRequest& request, v1::CompleteResponse* out = nullptr) {
    Result result;
    grpc::ClientContext context;
    v1::CompleteResponse response;
    result.status = stub_->Complete(&context, request, &response);
    if (result.status.ok() && response.completions_size() > 0) {
      result.text = response.completions(0).text();
      for (const auto& t : response.completions(0).tokens()) result.tokens.push_back(t.token_id());
      result.finish = response.completions(0).finish_reason();
    }
    if (out != nullptr) *out = response;
    return result;
  }

  const testing::LoadedModel* model_ = nullptr;
  std::shared_ptr<EngineLoop> engine_;
  ModelRegistry registry_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(EmbeddedServerTest, ConcurrentStreamsGiveWhatEachGivesAlone) {
  const std::vector<std::string> questions = {"What is the capital of France?",
                                              "Name three primary colors.",
                                              "Write a haiku about the sea.",
                                              "How many legs does a spider have?",
                                              "What is 2 + 2?",
                                              "Say hello in Spanish.",
                                              "Why is the sky blue?",
                                              "Name a famous painter."};
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < 24; ++i) {
    requests.push_back(Chat(questions[i % questions.size()], 6 + (i * 5) % 19));
    if (i >= 16) requests.back().set_prompt(absl::StrCat("Once upon a time, number ", i));
  }
  std::vector<Result> alone;
  for (const auto& r : requests) {
    alone.push_back(Complete(r));
    ASSERT_TRUE(alone.back().status.ok()) << alone.back().status.error_message();
    ASSERT_FALSE(alone.back().tokens.empty());
  }
  std::vector<Result> together(requests.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < requests.size(); ++i) {
    clients.emplace_back([&, i] { together[i] = Stream(requests[i]); });
  }
  for (auto& c : clients) c.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(together[i].status.ok()) << i << ": " << together[i].status.error_message();
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(together[i].text, alone[i].text) << "request " << i;
    EXPECT_EQ(together[i].finish, alone[i].finish) << "request " << i;
  }
}

TEST_F(EmbeddedServerTest, AStreamArrivesTokenByToken) {
  const Result r = Stream(Chat("Tell me a story about a dragon.", 12));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_GT(r.responses, 3);  // not one message at the end
  EXPECT_FALSE(r.text.empty());
}

TEST_F(EmbeddedServerTest, ACancelledStreamFreesItsBlocks) {
  grpc::ClientContext context;
  v1::GenerateRequest request = Endless();
  auto reader = stub_->Generate(&context, request);
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));  // it runs
  for (int i = 0; i < 200 && engine_->Load().kv_blocks_used == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));  // the load is published after the step's events
  }
  EXPECT_GT(engine_->Load().kv_blocks_used, 0);
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ExpectAllBlocksFree();
}

TEST_F(EmbeddedServerTest, AnExpiredDeadlineEndsTheRequest) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(400));
  v1::CompleteResponse response;
  grpc::Status s = stub_->Complete(&context, Endless(), &response);
  // The engine ends the request at the call's deadline with its partial output; whether
  // that answer or gRPC's DEADLINE_EXCEEDED reaches the client first is a race.
  if (s.ok()) {
    ASSERT_EQ(response.completions_size(), 1);
    EXPECT_EQ(response.completions(0).finish_reason(), v1::FINISH_REASON_DEADLINE);
    EXPECT_LT(response.completions(0).tokens_size(), 1500);
  } else {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  }
  ExpectAllBlocksFree();
}

TEST_F(EmbeddedServerTest, SeededSamplingAndLogprobs) {
  v1::GenerateRequest request = Chat("Name an animal.", 8);
  auto* d = request.mutable_decoding();
  d->set_do_sample(true);
  d->set_temperature(0.8);
  d->set_seed(1234);
  d->set_num_return_sequences(2);
  d->set_logprobs(2);
  v1::CompleteResponse first;
  v1::CompleteResponse second;
  ASSERT_TRUE(Complete(request, &first).status.ok());
  ASSERT_TRUE(Complete(request, &second).status.ok());
  ASSERT_EQ(first.completions_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(first.completions(i).index(), i);
    EXPECT_EQ(first.completions(i).text(), second.completions(i).text());
    for (const auto& t : first.completions(i).tokens()) {
      EXPECT_LE(t.logprob(), 0.0f);
      EXPECT_EQ(t.top_logprobs_size(), 2);
    }
    EXPECT_TRUE(first.completions(i).has_cumulative_logprob());
  }
  EXPECT_EQ(first.usage().completion_tokens(),
            first.completions(0).tokens_size() + first.completions(1).tokens_size() +
                (first.completions(0).has_stop_token_id() ? 1 : 0) +
                (first.completions(1).has_stop_token_id() ? 1 : 0));
  // The stream carries the same samples.
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, request);
  v1::GenerateResponse response;
  std::string texts[2];
  while (reader->Read(&response)) {
    for (const auto& delta : response.deltas()) {
      ASSERT_LT(delta.index(), 2);
      texts[delta.index()] += delta.text();
      for (const auto& t : delta.tokens()) EXPECT_EQ(t.top_logprobs_size(), 2);
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(texts[0], first.completions(0).text());
  EXPECT_EQ(texts[1], first.completions(1).text());
}

TEST_F(EmbeddedServerTest, BeamSearchReturnsScoredHypotheses) {
  v1::GenerateRequest request;
  request.set_prompt("The best thing about summer is");
  request.mutable_decoding()->set_max_new_tokens(6);
  request.mutable_decoding()->set_num_beams(3);
  request.mutable_decoding()->set_num_return_sequences(2);
  v1::CompleteResponse response;
  ASSERT_TRUE(Complete(request, &response).status.ok());
  ASSERT_EQ(response.completions_size(), 2);
  EXPECT_TRUE(response.completions(0).has_score());
  EXPECT_GE(response.completions(0).score(), response.completions(1).score());
  const Result streamed = Stream(request);
  ASSERT_TRUE(streamed.status.ok());
  EXPECT_EQ(streamed.text, response.completions(0).text());
}

TEST_F(EmbeddedServerTest, DrainFinishesWhatRunsAndRefusesTheRest) {
  std::thread client([&] {
    const Result r = Stream(Chat("Tell me a story.", 24));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_NE(r.finish, v1::FINISH_REASON_UNSPECIFIED);
  });
  for (int i = 0; i < 500 && engine_->Load().running_requests == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  engine_->Drain();
  const Result refused = Complete(Chat("Hello?", 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  client.join();
  EXPECT_TRUE(engine_->WaitIdle(absl::Seconds(10)));
}

}  // namespace
}  // namespace tessera
