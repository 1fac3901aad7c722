// Deterministic (batch-invariant) mode on the fast "cpu" backend: requests arriving into a
// busy engine (chunked prefill, decodes of other requests, prefix-cache hits, preemption)
// get bit-identical logits to running alone. Checked through the raw logprob of every
// generated token, which is a function of the whole logits row, and the sampled tokens.
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/model/tiny_llama.h"
#include "worker/batch_runner.h"

namespace tessera {
namespace {

class DeterministicModeTest : public ::testing::TestWithParam<DType> {
 protected:
  std::map<std::string, RequestOutput> Run(LlamaModel* model,
                                           const std::vector<WorkerRequest>& requests,
                                           bool together) {
    std::map<std::string, RequestOutput> out;
    auto make = [&] {
      BatchRunnerOptions o;
      o.scheduler.block_size = 4;
      o.scheduler.num_blocks = together ? 24 : 64;
      o.scheduler.max_num_batched_tokens = together ? 20 : 256;
      o.scheduler.max_num_seqs = 16;
      o.scheduler.max_model_len = 128;
      return std::move(BatchRunner::Create(model, o)).value();
    };
    if (together) {
      auto runner = make();
      std::mt19937 rng(8);
      std::uniform_int_distribution<int> arrival(0, 4);
      std::multimap<int, size_t> arrivals;
      for (size_t i = 0; i < requests.size(); ++i) arrivals.emplace(arrival(rng), i);
      for (int step = 0; runner->HasUnfinished() || !arrivals.empty(); ++step) {
        while (!arrivals.empty() && arrivals.begin()->first <= step) {
          EXPECT_TRUE(runner->AddRequest(requests[arrivals.begin()->second], absl::UnixEpoch()).ok());
          arrivals.erase(arrivals.begin());
        }
        auto done = runner->Step(absl::UnixEpoch());
        EXPECT_TRUE(done.ok()) << done.status();
        if (!done.ok()) break;
        for (RequestOutput& r : *done) out[r.request_id] = std::move(r);
      }
      preemptions_ = runner->scheduler().stats().preemptions;
      return out;
    }
    for (const WorkerRequest& r : requests) {
      auto runner = make();
      EXPECT_TRUE(runner->AddRequest(r, absl::UnixEpoch()).ok());
      auto done = runner->RunUntilIdle(absl::UnixEpoch());
      EXPECT_TRUE(done.ok() && done->size() == 1u);
      if (done.ok() && done->size() == 1u) out[r.spec.request_id] = (*done)[0];
    }
    return out;
  }
  int64_t preemptions_ = 0;
};

TEST_P(DeterministicModeTest, BatchedEqualsAloneBitForBit) {
  testing::TinySpec spec;
  spec.vocab = 64;
  spec.context = 128;
  spec.dtype = GetParam();
  const std::string path = testing::TempGgufPath("deterministic");
  auto tiny = testing::LoadTinyModel(spec, path, "cpu", 2, {.batch_invariant = true});
  ASSERT_TRUE(tiny.ok()) << tiny.status();

  std::mt19937 rng(13);
  std::uniform_int_distribution<int32_t> token(0, 63);
  std::uniform_int_distribution<int> len(1, 30), max_new(2, 10);
  const std::vector<int32_t> shared = {5, 9, 12, 40, 33, 2, 7, 21};  // a prefix-cache hit
  std::vector<WorkerRequest> requests;
  for (int i = 0; i < 24; ++i) {
    WorkerRequest r;
    r.spec.request_id = absl::StrCat("r", i);
    if (i % 3 == 0) r.spec.prompt_token_ids = shared;
    for (int t = len(rng); t > 0; --t) r.spec.prompt_token_ids.push_back(token(rng));
    r.spec.max_new_tokens = max_new(rng);
    r.generation.do_sample = i % 2 == 0;
    r.generation.seed = static_cast<uint64_t>(i);
    r.generation.logprobs = 0;
    requests.push_back(std::move(r));
  }
  const auto alone = Run(tiny->model.get(), requests, false);
  const auto together = Run(tiny->model.get(), requests, true);
  EXPECT_GT(preemptions_, 0) << "meant to preempt";
  ASSERT_EQ(together.size(), requests.size());
  for (const auto& [id, want] : alone) {
    const RequestOutput::Completion& a = want.completions.at(0);
    const RequestOutput::Completion& b = together.at(id).completions.at(0);
    EXPECT_EQ(b.generated_token_ids, a.generated_token_ids) << id;
    ASSERT_EQ(b.token_logprobs.size(), a.token_logprobs.size()) << id;
    for (size_t t = 0; t < a.token_logprobs.size(); ++t) {
      EXPECT_EQ(b.token_logprobs[t], a.token_logprobs[t]) << id << " token " << t;
    }
  }
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DeterministicModeTest,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_0, DType::kF32),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace tessera
