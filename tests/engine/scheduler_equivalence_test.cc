// End-to-end evidence with the fake paged model: batching, preemption, prefix caching and
// forks never change a request's tokens, which must equal an unbatched reference.
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/scheduler.h"
#include "gtest/gtest.h"
#include "tests/engine/fake_paged_model.h"
#include "tests/engine/scheduler_driver.h"

namespace tessera {
namespace {

using ::tessera::testing::Arrival;
using ::tessera::testing::RandomTokens;
using ::tessera::testing::ReferenceGenerate;
using ::tessera::testing::RunLog;
using ::tessera::testing::RunToCompletion;

std::vector<Arrival> SixtyFourRandomRequests() {
  std::mt19937 rng(2024);
  std::vector<Arrival> arrivals;
  for (int i = 0; i < 64; ++i) {
    Arrival a;
    a.step = std::uniform_int_distribution<int>(0, 60)(rng);
    a.spec.request_id = absl::StrCat("req", i);
    a.spec.prompt_token_ids = RandomTokens(rng, std::uniform_int_distribution<int>(1, 120)(rng));
    a.spec.max_new_tokens = std::uniform_int_distribution<int>(1, 48)(rng);
    a.spec.priority = static_cast<int>(rng() % 3);
    arrivals.push_back(a);
  }
  return arrivals;
}

struct Case {
  const char* name;
  int num_blocks;
  bool prefix_caching;
  SchedulingPolicy policy;
  bool expect_preemption;
  int steps_in_flight = 1;  // > 1: plans land later, as in a pipeline (scheduler_driver.h)
  friend void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }
};

class SixtyFourRequestsTest : public ::testing::TestWithParam<Case> {};

// Every request's tokens equal the unbatched reference and a run of that request alone,
// whatever else is in the batch, whether or not it was preempted; every fed token is the
// one at its position; no block leaks.
TEST_P(SixtyFourRequestsTest, EachGetsExactlyTheTokensItGetsAlone) {
  const Case& c = GetParam();
  const SchedulerConfig config{.block_size = 16,
                               .num_blocks = c.num_blocks,
                               .enable_prefix_caching = c.prefix_caching,
                               .max_model_len = 256,
                               .max_num_seqs = 16,
                               .max_num_batched_tokens = 128,
                               .policy = c.policy,
                               .max_steps_in_flight = c.steps_in_flight};
  const std::vector<Arrival> arrivals = SixtyFourRandomRequests();
  std::map<std::string, std::vector<int32_t>> full;  // prompt + reference output
  for (const Arrival& a : arrivals) {
    full[a.spec.request_id] = a.spec.prompt_token_ids;
    for (int32_t t : ReferenceGenerate(a.spec.prompt_token_ids, a.spec.max_new_tokens)) {
      full[a.spec.request_id].push_back(t);
    }
  }
  auto scheduler = Scheduler::Create(config);
  ASSERT_TRUE(scheduler.ok());
  // Rank of each request: (priority under the priority policy, arrival step, arrival order).
  std::map<std::string, std::tuple<int, int, int>> rank;
  for (int i = 0; i < 64; ++i) {
    const Arrival& a = arrivals[i];
    rank[a.spec.request_id] = {c.policy == SchedulingPolicy::kPriority ? a.spec.priority : 0,
                               a.step, i};
  }
  std::map<SequenceId, std::string> request_of;
  int max_running = 0;
  const RunLog log = RunToCompletion(**scheduler, arrivals, [&](const StepPlan& plan) {
    // Running sequences: this plan's and those of the plans still in flight.
    max_running = std::max<int>(max_running, (*scheduler)->num_running());
    // Victims are the lowest-ranked: everything that still runs outranks them.
    for (SequenceId victim : plan.preempted) {
      for (const ScheduledSequence& e : plan.sequences) {
        EXPECT_LT(rank.at(e.request_id), rank.at(request_of.at(victim)))
            << e.request_id << " runs while " << request_of.at(victim) << " is preempted";
      }
    }
    for (const ScheduledSequence& e : plan.sequences) request_of[e.seq_id] = e.request_id;
    for (const ScheduledSequence& e : plan.sequences) {
      const auto& want = full.at(e.request_id);
      ASSERT_LE(e.start_position + e.token_ids.size(), want.size());
      for (size_t k = 0; k < e.token_ids.size(); ++k) {
        ASSERT_EQ(e.token_ids[k], want[e.start_position + k])
            << e.request_id << " position " << e.start_position + k;
      }
    }
  });
  ASSERT_EQ(log.outputs.size(), 64u);
  for (const Arrival& a : arrivals) {
    const auto& out = log.outputs.at(a.spec.request_id);
    ASSERT_EQ(out.completions.size(), 1u);
    EXPECT_EQ(out.completions[0].generated_token_ids,
              ReferenceGenerate(a.spec.prompt_token_ids, a.spec.max_new_tokens))
        << a.spec.request_id;
    EXPECT_EQ(out.completions[0].finish_reason, FinishReason::kLength);
  }
  // The same requests one at a time through their own scheduler.
  for (int i = 0; i < 64; i += 7) {
    auto alone = Scheduler::Create(config);
    ASSERT_TRUE(alone.ok());
    Arrival a = arrivals[i];
    a.step = 0;
    const RunLog solo = RunToCompletion(**alone, {a});
    EXPECT_EQ(solo.outputs.at(a.spec.request_id).completions[0].generated_token_ids,
              log.outputs.at(a.spec.request_id).completions[0].generated_token_ids);
    EXPECT_EQ((*alone)->stats().preemptions, 0);
  }
  EXPECT_GT(max_running, 4) << "the workload should actually batch";
  if (c.expect_preemption) {
    EXPECT_GT((*scheduler)->stats().preemptions, 0);
  } else {
    EXPECT_EQ((*scheduler)->stats().preemptions, 0);
  }
  const BlockUsage u = (*scheduler)->block_manager().Usage();
  EXPECT_EQ(u.used, 0);
  EXPECT_EQ(u.free + u.evictable, c.num_blocks);
}

INSTANTIATE_TEST_SUITE_P(
    Caches, SixtyFourRequestsTest,
    ::testing::Values(Case{"ample", 1024, true, SchedulingPolicy::kFcfs, false},
                      Case{"tiny_fcfs", 24, true, SchedulingPolicy::kFcfs, true},
                      Case{"tiny_priority", 24, true, SchedulingPolicy::kPriority, true},
                      Case{"tiny_no_prefix_cache", 20, false, SchedulingPolicy::kFcfs, true},
                      Case{"ample_3_in_flight", 1024, true, SchedulingPolicy::kFcfs, false, 3},
                      Case{"tiny_fcfs_2_in_flight", 24, true, SchedulingPolicy::kFcfs, true, 2},
                      Case{"tiny_priority_3_in_flight", 24, true, SchedulingPolicy::kPriority,
                           true, 3}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(PrefixCacheTest, SharedSystemPromptHitsTheCacheWithIdenticalOutputs) {
  std::mt19937 rng(7);
  const std::vector<int32_t> system = RandomTokens(rng, 64);  // 4 full blocks
  std::vector<Arrival> arrivals;
  for (int i = 0; i < 16; ++i) {
    Arrival a;
    a.step = i == 0 ? 0 : 4 + i;  // the first one computes the system prompt
    a.spec.request_id = absl::StrCat("chat", i);
    a.spec.prompt_token_ids = system;
    for (int32_t t : RandomTokens(rng, 3 + i)) a.spec.prompt_token_ids.push_back(t);
    a.spec.max_new_tokens = 8;
    arrivals.push_back(a);
  }
  int64_t scheduled[2] = {0, 0};
  for (bool caching : {true, false}) {
    const SchedulerConfig config{.block_size = 16, .num_blocks = 128,
                                 .enable_prefix_caching = caching, .max_model_len = 256,
                                 .max_num_seqs = 16, .max_num_batched_tokens = 256};
    auto s = Scheduler::Create(config);
    ASSERT_TRUE(s.ok());
    const RunLog log = RunToCompletion(**s, arrivals);
    for (const Arrival& a : arrivals) {
      EXPECT_EQ(log.outputs.at(a.spec.request_id).completions[0].generated_token_ids,
                ReferenceGenerate(a.spec.prompt_token_ids, 8));
    }
    const SchedulerStats stats = (*s)->stats();
    scheduled[caching] = stats.scheduled_tokens;
    if (caching) {
      EXPECT_EQ(stats.prefix_hit_blocks, 15 * 4) << "each later request reuses 4 blocks";
      EXPECT_GE(stats.prefix_queried_blocks, stats.prefix_hit_blocks);
    } else {
      EXPECT_EQ(stats.prefix_hit_blocks, 0);
    }
  }
  EXPECT_EQ(scheduled[0] - scheduled[1], 15 * 64) << "the hits are tokens not recomputed";
}

TEST(ParallelSamplingTest, SamplesForkFromThePromptAndShareItsBlocks) {
  const SchedulerConfig config{.block_size = 16, .num_blocks = 64, .max_model_len = 256,
                               .max_num_seqs = 8, .max_num_batched_tokens = 64};
  auto s = Scheduler::Create(config);
  ASSERT_TRUE(s.ok());
  std::mt19937 rng(3);
  RequestSpec spec;
  spec.request_id = "n3";
  spec.prompt_token_ids = RandomTokens(rng, 37);
  spec.max_new_tokens = 10;
  spec.n = 3;
  int copies = 0, max_used = 0;
  const RunLog log = RunToCompletion(**s, {{0, spec}}, [&](const StepPlan& plan) {
    copies += static_cast<int>(plan.block_copies.size());
    max_used = std::max(max_used, (*s)->block_manager().Usage().used);
    for (const auto& e : plan.sequences) {
      if (e.needs_logits && e.start_position == 0) {
        EXPECT_EQ(e.num_samples, 3);
      } else {
        EXPECT_EQ(e.num_samples, 1);
      }
    }
  });
  const auto& out = log.outputs.at("n3");
  ASSERT_EQ(out.completions.size(), 3u);
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(out.completions[k].generated_token_ids,
              ReferenceGenerate(spec.prompt_token_ids, 10, /*first_sample=*/k))
        << "sample " << k;
  }
  // The prompt's last block is partial: the two later writers copy it.
  EXPECT_EQ(copies, 2);
  // 2 shared full prompt blocks + 3 private tails (46 tokens -> 3 blocks each).
  EXPECT_EQ(max_used, 2 + 3 * 1);
}

TEST(ParallelSamplingTest, UnforkedGroupReservesSlotsForItsSamples) {
  const SchedulerConfig config{.block_size = 16, .num_blocks = 64, .max_model_len = 256,
                               .max_num_seqs = 4, .max_num_batched_tokens = 16};
  auto s = Scheduler::Create(config);
  ASSERT_TRUE(s.ok());
  std::mt19937 rng(4);
  std::vector<Arrival> arrivals(4);
  for (int i = 0; i < 4; ++i) {
    arrivals[i].step = i == 0 ? 0 : 1;  // the others arrive while the prompt is prefilled
    arrivals[i].spec.request_id = absl::StrCat("r", i);
    arrivals[i].spec.prompt_token_ids = RandomTokens(rng, i == 0 ? 40 : 5);
    arrivals[i].spec.max_new_tokens = 6;
  }
  arrivals[0].spec.n = 3;
  const RunLog log = RunToCompletion(**s, arrivals, [&](const StepPlan& plan) {
    EXPECT_LE(plan.sequences.size(), 4u);
    EXPECT_LE((*s)->num_running(), 4);
  });
  ASSERT_EQ(log.outputs.at("r0").completions.size(), 3u);
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(log.outputs.at(absl::StrCat("r", i)).completions[0].generated_token_ids,
              ReferenceGenerate(arrivals[i].spec.prompt_token_ids, 6));
  }
}

TEST(ForkTest, ForkedSequenceContinuesFromTheSharedHistory) {
  const SchedulerConfig config{.block_size = 4, .num_blocks = 32, .max_model_len = 64,
                               .max_num_seqs = 4, .max_num_batched_tokens = 64};
  auto created = Scheduler::Create(config);
  ASSERT_TRUE(created.ok());
  Scheduler& s = **created;
  testing::FakePagedModel model(32, 4);
  std::mt19937 rng(9);
  const std::vector<int32_t> prompt = RandomTokens(rng, 6);
  RequestSpec spec;
  spec.request_id = "beam";
  spec.prompt_token_ids = prompt;
  spec.max_new_tokens = 12;
  ASSERT_TRUE(s.AddRequest(spec, testing::StepTime(0)).ok());
  auto run = [&](int step) {
    auto plan = s.Schedule(testing::StepTime(step));
    ASSERT_TRUE(plan.ok());
    ASSERT_TRUE(s.Update(model.Run(*plan)).ok());
  };
  for (int i = 0; i < 3; ++i) run(i);  // 3 tokens
  const SequenceId parent = s.FindRequest("beam")->sequences()[0]->id();
  auto child = s.ForkSequence(parent);
  ASSERT_TRUE(child.ok()) << child.status();
  for (int i = 3; i < 6; ++i) run(i);
  ASSERT_TRUE(s.FinishSequence(parent, FinishReason::kStop).ok());
  EXPECT_EQ(s.FinishSequence(parent, FinishReason::kStop).code(), absl::StatusCode::kNotFound);
  for (int i = 6; s.HasUnfinished(); ++i) run(i);
  auto done = s.TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  ASSERT_EQ(done[0].completions.size(), 2u);
  const auto reference = ReferenceGenerate(prompt, 12);
  EXPECT_EQ(done[0].completions[0].generated_token_ids,
            std::vector<int32_t>(reference.begin(), reference.begin() + 6));
  EXPECT_EQ(done[0].completions[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(done[0].completions[1].generated_token_ids, reference);
  EXPECT_EQ(s.block_manager().Usage().used, 0);
}

TEST(ForkTest, ForkBeyondMaxNumSeqsIsResourceExhausted) {
  const SchedulerConfig config{.block_size = 4, .num_blocks = 32, .max_model_len = 64,
                               .max_num_seqs = 2, .max_num_batched_tokens = 64};
  auto created = Scheduler::Create(config);
  ASSERT_TRUE(created.ok());
  Scheduler& s = **created;
  testing::FakePagedModel model(32, 4);
  RequestSpec spec;
  spec.request_id = "beam";
  spec.prompt_token_ids = {1, 2, 3};
  spec.max_new_tokens = 5;
  ASSERT_TRUE(s.AddRequest(spec, testing::StepTime(0)).ok());
  auto plan = s.Schedule(testing::StepTime(0));
  ASSERT_TRUE(plan.ok());
  const SequenceId parent = plan->sequences[0].seq_id;
  EXPECT_EQ(s.ForkSequence(parent).status().code(), absl::StatusCode::kFailedPrecondition)
      << "not while the step is in flight";
  ASSERT_TRUE(s.Update(model.Run(*plan)).ok());
  ASSERT_TRUE(s.ForkSequence(parent).ok());
  auto third = s.ForkSequence(parent);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("max_num_seqs 2"), std::string::npos);
  EXPECT_EQ(s.ForkSequence(999).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera
