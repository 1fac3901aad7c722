// 256 concurrent Generate streams against the embedded server on the default model (more
// than the engine runs at once, so most wait in its queue): every stream finishes, each
// greedy output equals the same request run alone, every KV block is free afterwards, and
// the process's memory stays bounded.
#include <sys/resource.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/server.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tessera/v1/inference.grpc.pb.h"
#include "tests/coordinator/loaded_model.h"

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;

int64_t PeakRssKiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(LoadTest, TwoHundredFiftySixStreamsGiveWhatEachGivesAlone) {
  const testing::LoadedModel* model = testing::DefaultModel();
  ASSERT_NE(model, nullptr);
  std::shared_ptr<EngineLoop> engine = model->StartEngine(/*num_blocks=*/512);
  ASSERT_NE(engine, nullptr);
  ModelRegistry registry;
  auto served = registry.Add(model->Spec());
  ASSERT_TRUE(served.ok());
  (*served)->AddReplica(engine);
  CoordinatorServerOptions options;
  options.host = "127.0.0.1";
  auto server = CoordinatorServer::Start(&registry, options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials()));

  constexpr int kStreams = 256;
  std::vector<v1::GenerateRequest> requests(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    requests[i].set_prompt(absl::StrCat("Request ", i, ": the number after ", i * 7, " is"));
    requests[i].mutable_decoding()->set_max_new_tokens(2 + i % 3);
  }
  std::vector<std::vector<int32_t>> alone(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    grpc::ClientContext context;
    v1::CompleteResponse response;
    ASSERT_TRUE(stub->Complete(&context, requests[i], &response).ok()) << i;
    for (const auto& t : response.completions(0).tokens()) alone[i].push_back(t.token_id());
  }
  const int64_t rss_before = PeakRssKiB();

  std::vector<std::vector<int32_t>> together(kStreams);
  std::vector<grpc::Status> status(kStreams);
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      grpc::ClientContext context;
      auto reader = stub->Generate(&context, requests[i]);
      v1::GenerateResponse response;
      while (reader->Read(&response)) {
        for (const auto& d : response.deltas()) {
          for (const auto& t : d.tokens()) together[i].push_back(t.token_id());
        }
      }
      status[i] = reader->Finish();
    });
  }
  for (auto& c : clients) c.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(status[i].ok()) << i << ": " << status[i].error_message();
    EXPECT_EQ(together[i], alone[i]) << "request " << i;
  }
  ASSERT_TRUE(engine->WaitIdle(absl::Seconds(30)));
  ReplicaLoad load = engine->Load();
  for (int i = 0; i < 100 && load.kv_blocks_used != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    load = engine->Load();
  }
  EXPECT_EQ(load.kv_blocks_used, 0);
  // 256 streams and their threads (8 MiB stacks are mostly untouched) cost far less than
  // the model and its KV cache already mapped: bounded at 256 MiB more.
  EXPECT_LT(PeakRssKiB() - rss_before, 256 * 1024) << "peak RSS grew too much";
  (*server)->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace tessera
