// The engine over a sharded model under real `mpirun --oversubscribe -np N` (N = 2, 3, 4,
// 6), in every tp x pp layout of the N ranks that the tiny model takes: rank 0 runs a
// BatchRunner whose steps go to the other ranks (worker/model_group.h), which run them on
// their shards; with pipeline stages the leader keeps pp disjoint batches in flight, each
// split into 2 x pp micro-batches that flow through the stages. A mixed batch (greedy, seeded sampling with n = 2, beam search,
// contrastive search, more requests than the cache holds at once, so that sequences are
// preempted) must give the same tokens as one rank with the whole model. On "cpu-reference"
// a shard's logits differ from the whole model's by float summation order only (~1e-6 on
// this tiny model), far below the gaps the decoding decides on here.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "parallel/mpi_communicator.h"
#include "parallel/shard_plan.h"
#include "parallel/timed_communicator.h"
#include "parallel/topology.h"
#include "tests/model/tiny_llama.h"
#include "tests/parallel/mpi_test_main.h"
#include "worker/batch_runner.h"
#include "worker/model_group.h"

namespace tessera {
namespace {

std::vector<WorkerRequest> Requests() {
  std::vector<WorkerRequest> out;
  for (int i = 0; i < 7; ++i) {
    WorkerRequest r;
    r.spec.request_id = absl::StrCat("r", i);
    for (int t = 0; t < 5 + 2 * i; ++t) r.spec.prompt_token_ids.push_back((7 * i + 3 * t) % 50);
    r.spec.max_new_tokens = 16;
    if (i % 3 == 1) {  // seeded sampling, two samples sharing the prompt
      r.generation.do_sample = true;
      r.generation.seed = 100 + i;
      r.spec.n = 2;
    } else if (i % 3 == 2) {  // beam search
      r.generation.num_beams = 2;
      r.generation.num_return_sequences = 2;
    }
    if (i == 6) {  // contrastive search: hidden states come back from the last stage too
      r.generation.penalty_alpha = 0.6;
      r.generation.top_k = 2;
      r.spec.max_new_tokens = 8;
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::map<std::string, std::vector<std::vector<int32_t>>> RunBatch(BatchRunner& runner) {
  for (WorkerRequest r : Requests()) {
    const absl::Status added = runner.AddRequest(std::move(r), absl::UnixEpoch());
    EXPECT_TRUE(added.ok()) << added;
  }
  auto out = runner.RunUntilIdle(absl::UnixEpoch());
  EXPECT_TRUE(out.ok()) << out.status();
  std::map<std::string, std::vector<std::vector<int32_t>>> tokens;
  if (!out.ok()) return tokens;
  for (const RequestOutput& o : *out) {
    for (const auto& c : o.completions) tokens[o.request_id].push_back(c.generated_token_ids);
  }
  return tokens;
}

// Every tp x pp layout of the world's ranks that the tiny model takes (above its 3 KV
// heads tp must be a multiple of them; pp at most its 4 layers).
std::vector<std::pair<int, int>> Layouts(int ranks) {
  std::vector<std::pair<int, int>> out;
  for (int tp = 1; tp <= ranks; ++tp) {
    if (ranks % tp != 0 || (tp > 3 && tp % 3 != 0) || ranks / tp > 4) continue;
    out.emplace_back(tp, ranks / tp);
  }
  return out;
}

TEST(ModelGroupTest, LeaderAndFollowersGiveOneRanksTokens) {
  testing::TinySpec spec;
  spec.vocab = 50;
  spec.hidden = 64;
  spec.ffn = 192;  // 6 blocks of 32: enough for tp 6
  spec.layers = 4;
  spec.heads = 6;
  spec.kv_heads = 3;
  spec.head_dim = 32;
  spec.rope_dim = 32;
  spec.context = 64;
  const std::string path = testing::TempGgufPath("model_group");
  ASSERT_TRUE(testing::WriteTinyModel(spec, path).ok());
  auto store = OpenWeightStore(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto backend = CreateBackend("cpu-reference", 1);
  ASSERT_TRUE(backend.ok());
  MpiCommunicator& world = testing::World();

  // 20 blocks of 4 tokens: every request fits alone (a beam request needs 2 x 8 blocks),
  // the batch does not, so sequences are preempted as they grow.
  BatchRunnerOptions options;
  options.scheduler.block_size = 4;
  options.scheduler.num_blocks = 20;
  options.scheduler.max_num_seqs = 6;
  options.scheduler.max_num_batched_tokens = 24;
  options.scheduler.max_model_len = 64;
  options.default_seed = 5;
  std::map<std::string, std::vector<std::vector<int32_t>>> want;
  if (world.rank() == 0) {
    auto whole = LlamaModel::Load(**store, backend->get());
    ASSERT_TRUE(whole.ok());
    auto alone = BatchRunner::Create(whole->get(), options);
    ASSERT_TRUE(alone.ok());
    want = RunBatch(**alone);
    ASSERT_EQ(want.size(), 7u);
  }

  const std::vector<std::pair<int, int>> layouts = Layouts(world.size());
  ASSERT_GE(layouts.size(), 2u);
  for (const auto& [tp, pp] : layouts) {
    SCOPED_TRACE(absl::StrCat("tp ", tp, " x pp ", pp));
    auto topology = Topology::Create(world.size(), world.rank(), tp, pp);
    ASSERT_TRUE(topology.ok()) << topology.status();
    auto tensor_group = world.Split(topology->stage(), topology->tp_rank());
    auto pipeline_group = world.Split(topology->tp_rank(), topology->stage());
    ASSERT_TRUE(tensor_group.ok() && pipeline_group.ok());
    PlannerInput in;
    in.model = (*store)->config();
    in.tp = tp;
    in.pp = pp;
    in.rank_memory_bytes.assign(static_cast<size_t>(world.size()), int64_t{1} << 30);
    auto plan = PlanShards(in);
    ASSERT_TRUE(plan.ok()) << plan.status();
    TimedCommunicator timed_tensor_group(tensor_group->get());
    TensorParallelShard shard{plan->tensor, &timed_tensor_group};
    const StageShard& stage = plan->stages[static_cast<size_t>(topology->stage())];
    auto model = LlamaModel::Load(**store, backend->get(), nullptr, &shard, &stage);
    ASSERT_TRUE(model.ok()) << model.status();
    const RankRole role{.pipeline = pipeline_group->get(),
                        .world = &world,
                        .last_stage_leader = topology->RankAt(pp - 1, 0),
                        .micro_batches = 2 * pp,
                        .tensor_timer = &timed_tensor_group};
    if (world.rank() != 0) {
      EXPECT_TRUE(RunModelGroupFollower(**model, world, role).ok());
      continue;
    }
    ModelGroupLeader leader(&world);
    options.model_group = &leader;
    options.role = role;
    auto runner = BatchRunner::Create(model->get(), options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    const auto sharded = RunBatch(**runner);
    EXPECT_GT((*runner)->scheduler().stats().preemptions, 0) << "the test wants preemption";
    // Up to one batch per stage at once (how many the small, cache-bound workload fills).
    EXPECT_LE((*runner)->stats().max_batches_in_flight, pp);
    if (pp > 1) {
      EXPECT_GE((*runner)->stats().max_batches_in_flight, 2);
    }
    // Every rank reports where its step time went.
    ASSERT_TRUE((*runner)->RefreshRankTimes().ok());
    const std::vector<RankStepTimes>& times = (*runner)->rank_times();
    ASSERT_EQ(times.size(), static_cast<size_t>(world.size()));
    for (int r = 0; r < world.size(); ++r) {
      SCOPED_TRACE(absl::StrCat("rank ", r));
      const RankStepTimes& t = times[static_cast<size_t>(r)];
      EXPECT_EQ(t.steps, times[0].steps);  // every rank ran every step
      EXPECT_GT(t.step_seconds, 0);
      EXPECT_LE(t.communication_seconds + t.bubble_seconds, t.step_seconds * (1 + 1e-9));
      if (tp > 1) {
        EXPECT_GT(t.communication_seconds, 0);  // the all-reduces
      }
      // Later stages wait for their input; the leader waits for the logits.
      if (pp > 1 && (r == 0 || r >= tp)) {
        EXPECT_GT(t.bubble_seconds, 0);
      }
    }
    ASSERT_TRUE(leader.SendShutdown().ok());
    EXPECT_EQ(leader.SendStep(StepWork{}).code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(sharded, want);
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tessera
