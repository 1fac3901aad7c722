#include "engine/scheduler.h"

#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/fake_paged_model.h"
#include "tests/engine/scheduler_driver.h"

namespace tessera {
namespace {

using ::tessera::testing::Arrival;
using ::tessera::testing::FakePagedModel;
using ::tessera::testing::RandomTokens;
using ::tessera::testing::Req;
using ::tessera::testing::ReferenceGenerate;
using ::tessera::testing::RunToCompletion;
using ::tessera::testing::StepTime;
using ::testing::AllOf;
using ::testing::HasSubstr;

SchedulerConfig SmallConfig() {
  return SchedulerConfig{.block_size = 16,
                         .num_blocks = 64,
                         .max_model_len = 1024,
                         .max_num_seqs = 8,
                         .max_num_batched_tokens = 64};
}

std::unique_ptr<Scheduler> Make(const SchedulerConfig& config) {
  auto s = Scheduler::Create(config);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

std::vector<int32_t> Tokens(int n, int32_t seed = 1) {
  std::mt19937 rng(seed);
  return RandomTokens(rng, n);
}

TEST(SchedulerConfigTest, RejectsBadSizesNamingTheField) {
  SchedulerConfig c = SmallConfig();
  c.num_blocks = 0;
  auto s = Scheduler::Create(c);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("num_blocks"));
  c = SmallConfig();
  c.max_num_batched_tokens = 4;
  s = Scheduler::Create(c);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()),
              AllOf(HasSubstr("max_num_batched_tokens"), HasSubstr("4"), HasSubstr("8")));
}

TEST(SchedulerAdmissionTest, OverContextLengthIsInvalidArgumentWithTheNumbers) {
  SchedulerConfig c = SmallConfig();
  c.max_model_len = 128;
  auto s = Make(c);
  absl::Status st = s->AddRequest(Req("a", Tokens(100), 50), StepTime(0));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("prompt_token_ids"), HasSubstr("100"), HasSubstr("max_new_tokens"),
                    HasSubstr("50"), HasSubstr("150"), HasSubstr("128")));
  EXPECT_EQ(s->num_waiting(), 0);
  EXPECT_TRUE(s->AddRequest(Req("b", Tokens(100), 28), StepTime(0)).ok());
}

TEST(SchedulerAdmissionTest, OverTheWholeCacheIsResourceExhaustedWithTheNumbers) {
  SchedulerConfig c = SmallConfig();
  c.num_blocks = 4;  // 64 tokens
  auto s = Make(c);
  absl::Status st = s->AddRequest(Req("a", Tokens(60), 10), StepTime(0));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("70 tokens need 5 KV blocks"), HasSubstr("16 tokens"),
                    HasSubstr("4 blocks"), HasSubstr("64 tokens")));
  EXPECT_TRUE(s->AddRequest(Req("b", Tokens(60), 4), StepTime(0)).ok());
}

TEST(SchedulerAdmissionTest, FullWaitingQueueIsResourceExhausted) {
  SchedulerConfig c = SmallConfig();
  c.max_waiting_requests = 2;
  auto s = Make(c);
  ASSERT_TRUE(s->AddRequest(Req("a", Tokens(4), 2), StepTime(0)).ok());
  ASSERT_TRUE(s->AddRequest(Req("b", Tokens(4), 2), StepTime(0)).ok());
  absl::Status st = s->AddRequest(Req("c", Tokens(4), 2), StepTime(0));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(st.message()), AllOf(HasSubstr("max_waiting_requests"), HasSubstr("2")));
  // Once they start running the queue has room again.
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->sequences.size(), 2u);
  EXPECT_TRUE(s->AddRequest(Req("c", Tokens(4), 2), StepTime(0)).ok());
}

TEST(SchedulerAdmissionTest, BadFieldsAreInvalidArgumentNamingTheField) {
  auto s = Make(SmallConfig());
  struct Case {
    RequestSpec spec;
    absl::StatusCode code;
    std::string field;
  };
  RequestSpec n0 = Req("n0", Tokens(4), 2);
  n0.n = 0;
  RequestSpec n9 = Req("n9", Tokens(4), 2);
  n9.n = 9;
  const std::vector<Case> cases = {
      {Req("", Tokens(4), 2), absl::StatusCode::kInvalidArgument, "request_id"},
      {Req("e", {}, 2), absl::StatusCode::kInvalidArgument, "prompt_token_ids"},
      {Req("m", Tokens(4), 0), absl::StatusCode::kInvalidArgument, "max_new_tokens"},
      {n0, absl::StatusCode::kInvalidArgument, "n = 0"},
      {n9, absl::StatusCode::kInvalidArgument, "max_num_seqs = 8"},
  };
  for (const Case& c : cases) {
    absl::Status st = s->AddRequest(c.spec, StepTime(0));
    EXPECT_EQ(st.code(), c.code) << c.field << ": " << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.field));
  }
  EXPECT_EQ(s->num_waiting(), 0);
  ASSERT_TRUE(s->AddRequest(Req("dup", Tokens(4), 2), StepTime(0)).ok());
  EXPECT_EQ(s->AddRequest(Req("dup", Tokens(4), 2), StepTime(0)).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(SchedulerAdmissionTest, WithoutChunkedPrefillAPromptOverTheStepBudgetIsRefused) {
  SchedulerConfig c = SmallConfig();
  c.enable_chunked_prefill = false;
  auto s = Make(c);
  absl::Status st = s->AddRequest(Req("a", Tokens(60), 10), StepTime(0));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), AllOf(HasSubstr("max_num_batched_tokens (64)"),
                                               HasSubstr("chunked prefill is off")));
}

TEST(SchedulerTest, RespectsTokenBudgetAndSequenceCap) {
  SchedulerConfig c = SmallConfig();
  c.max_num_seqs = 4;
  c.max_num_batched_tokens = 40;
  auto s = Make(c);
  std::mt19937 rng(5);
  std::vector<Arrival> arrivals;
  for (int i = 0; i < 20; ++i) {
    arrivals.push_back({i % 5, Req(absl::StrCat("r", i),
                                   RandomTokens(rng, 1 + static_cast<int>(rng() % 90)),
                                   1 + static_cast<int>(rng() % 20))});
  }
  auto log = RunToCompletion(*s, arrivals, [&](const StepPlan& plan) {
    int tokens = 0;
    std::set<SequenceId> ids;
    for (const auto& e : plan.sequences) {
      tokens += static_cast<int>(e.token_ids.size());
      EXPECT_GE(e.token_ids.size(), 1u);
      EXPECT_TRUE(ids.insert(e.seq_id).second) << "sequence twice in one step";
    }
    EXPECT_LE(plan.sequences.size(), 4u);
    EXPECT_LE(tokens, 40);
    EXPECT_EQ(tokens, plan.num_batched_tokens);
  });
  ASSERT_EQ(log.outputs.size(), 20u);
  for (const Arrival& a : arrivals) {
    const auto& out = log.outputs.at(a.spec.request_id);
    EXPECT_EQ(out.completions[0].generated_token_ids,
              ReferenceGenerate(a.spec.prompt_token_ids, a.spec.max_new_tokens));
    EXPECT_EQ(out.completions[0].finish_reason, FinishReason::kLength);
  }
}

TEST(SchedulerTest, ChunkedPrefillSplitsALongPromptOverSteps) {
  SchedulerConfig c = SmallConfig();
  c.max_num_batched_tokens = 32;
  auto s = Make(c);
  const auto prompt = Tokens(100);
  auto log = RunToCompletion(*s, {{0, Req("a", prompt, 3)}});
  ASSERT_EQ(log.plans.size(), 6u);  // 4 prefill chunks, then 2 decodes
  const int starts[] = {0, 32, 64, 96, 100, 101};
  const int lens[] = {32, 32, 32, 4, 1, 1};
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(log.plans[i].sequences.size(), 1u);
    const ScheduledSequence& e = log.plans[i].sequences[0];
    EXPECT_EQ(e.start_position, starts[i]) << i;
    EXPECT_EQ(static_cast<int>(e.token_ids.size()), lens[i]) << i;
    EXPECT_EQ(e.needs_logits, i >= 3) << i;
    EXPECT_EQ(e.is_prefill, i < 4) << i;
    EXPECT_EQ(static_cast<int>(e.block_table.size()), (starts[i] + lens[i] + 15) / 16) << i;
  }
  EXPECT_EQ(log.outputs.at("a").completions[0].generated_token_ids, ReferenceGenerate(prompt, 3));
}

TEST(SchedulerTest, WithoutChunkedPrefillAPromptWaitsForRoomForAllOfIt) {
  SchedulerConfig c = SmallConfig();
  c.enable_chunked_prefill = false;
  auto s = Make(c);
  auto log = RunToCompletion(*s, {{0, Req("a", Tokens(40, 1), 2)}, {0, Req("b", Tokens(40, 2), 2)}});
  ASSERT_GE(log.plans.size(), 2u);
  ASSERT_EQ(log.plans[0].sequences.size(), 1u);
  EXPECT_EQ(log.plans[0].sequences[0].token_ids.size(), 40u);
  ASSERT_EQ(log.plans[1].sequences.size(), 2u);
  EXPECT_EQ(log.plans[1].sequences[0].token_ids.size(), 1u);   // a decodes
  EXPECT_EQ(log.plans[1].sequences[1].token_ids.size(), 40u);  // b whole
}

TEST(SchedulerTest, DecodesAreNeverStarvedByALongPrefill) {
  // Under the priority policy the long prompt outranks the decodes: its chunks still leave
  // them their token.
  for (SchedulingPolicy policy : {SchedulingPolicy::kFcfs, SchedulingPolicy::kPriority}) {
    SchedulerConfig c = SmallConfig();  // 64 tokens a step
    c.policy = policy;
    auto s = Make(c);
    RequestSpec long_prompt = Req("long", Tokens(600, 4), 2);
    long_prompt.priority = -1;
    std::vector<Arrival> arrivals = {{0, Req("d0", Tokens(5, 1), 40)},
                                     {0, Req("d1", Tokens(5, 2), 40)},
                                     {0, Req("d2", Tokens(5, 3), 40)},
                                     {3, long_prompt}};
    int checked = 0;
    auto log = RunToCompletion(*s, arrivals, [&](const StepPlan& plan) {
      // Steps 3..11 carry the 9 full chunks of the prompt.
      if (plan.step_index < 3 || plan.step_index > 11) return;
      int decodes = 0, prefill = 0;
      for (const auto& e : plan.sequences) {
        if (e.request_id == "long") {
          prefill = static_cast<int>(e.token_ids.size());
        } else if (e.token_ids.size() == 1) {
          ++decodes;
        }
      }
      EXPECT_EQ(decodes, 3) << "step " << plan.step_index;
      EXPECT_EQ(prefill, 61) << "the prefill takes what the decodes leave";
      ++checked;
    });
    EXPECT_EQ(checked, 9);
    EXPECT_EQ(log.outputs.at("long").completions[0].generated_token_ids,
              ReferenceGenerate(Tokens(600, 4), 2));
  }
}

TEST(SchedulerTest, PriorityPolicyAdmitsTheMostUrgentFirst) {
  for (SchedulingPolicy policy : {SchedulingPolicy::kFcfs, SchedulingPolicy::kPriority}) {
    SchedulerConfig c = SmallConfig();
    c.max_num_seqs = 1;
    c.policy = policy;
    auto s = Make(c);
    RequestSpec low = Req("low", Tokens(4, 1), 3);
    low.priority = 5;
    RequestSpec high = Req("high", Tokens(4, 2), 3);
    high.priority = 0;
    std::vector<std::string> order;
    RunToCompletion(*s, {{0, low}, {0, high}}, [&](const StepPlan& plan) {
      for (const auto& e : plan.sequences) {
        if (order.empty() || order.back() != e.request_id) order.push_back(e.request_id);
      }
    });
    const std::vector<std::string> want = policy == SchedulingPolicy::kPriority
                                              ? std::vector<std::string>{"high", "low"}
                                              : std::vector<std::string>{"low", "high"};
    EXPECT_EQ(order, want);
  }
}

TEST(SchedulerTest, PreemptionPicksTheLowestRankedAndKeepsOutputs) {
  // 8 blocks of 4 tokens: each request alone needs all of them, together they must preempt.
  for (SchedulingPolicy policy : {SchedulingPolicy::kFcfs, SchedulingPolicy::kPriority}) {
    SchedulerConfig c{.block_size = 4, .num_blocks = 8, .enable_prefix_caching = false,
                      .max_model_len = 64, .max_num_seqs = 4, .max_num_batched_tokens = 64,
                      .policy = policy};
    auto s = Make(c);
    RequestSpec first = Req("first", Tokens(10, 1), 20);
    first.priority = 9;
    RequestSpec urgent = Req("urgent", Tokens(10, 2), 20);
    urgent.priority = 0;
    std::set<std::string> victims;
    auto log = RunToCompletion(*s, {{0, first}, {1, urgent}}, [&](const StepPlan& plan) {
      for (SequenceId id : plan.preempted) {
        for (const auto& name : {"first", "urgent"}) {
          const SequenceGroup* g = s->FindRequest(name);
          if (g != nullptr && g->FindSequence(id) != nullptr) victims.insert(name);
        }
      }
    });
    EXPECT_EQ(victims, (std::set<std::string>{policy == SchedulingPolicy::kPriority ? "first"
                                                                                   : "urgent"}));
    EXPECT_GT(s->stats().preemptions, 0);
    for (const RequestSpec& r : {first, urgent}) {
      EXPECT_EQ(log.outputs.at(r.request_id).completions[0].generated_token_ids,
                ReferenceGenerate(r.prompt_token_ids, r.max_new_tokens));
    }
  }
}

// Under the priority policy an urgent request that cannot fit takes the room of a running
// lower-priority one at once (preempting it); under FCFS it waits. Outputs never change.
TEST(SchedulerTest, UrgentWaitingRequestPreemptsUnderPriorityOnly) {
  for (SchedulingPolicy policy : {SchedulingPolicy::kFcfs, SchedulingPolicy::kPriority}) {
    SchedulerConfig c = SmallConfig();
    c.max_num_seqs = 1;
    c.policy = policy;
    auto s = Make(c);
    RequestSpec low = Req("low", Tokens(6, 1), 12);
    low.priority = 5;
    RequestSpec urgent = Req("urgent", Tokens(6, 2), 4);
    urgent.priority = 0;
    std::vector<std::string> finished;
    auto log = RunToCompletion(*s, {{0, low}, {3, urgent}}, [&](const StepPlan&) {});
    for (const auto& name : log.finish_order) finished.push_back(name);
    EXPECT_EQ(finished, (policy == SchedulingPolicy::kPriority
                             ? std::vector<std::string>{"urgent", "low"}
                             : std::vector<std::string>{"low", "urgent"}));
    EXPECT_EQ(s->stats().preemptions, policy == SchedulingPolicy::kPriority ? 1 : 0);
    for (const RequestSpec& r : {low, urgent}) {
      EXPECT_EQ(log.outputs.at(r.request_id).completions[0].generated_token_ids,
                ReferenceGenerate(r.prompt_token_ids, r.max_new_tokens));
    }
  }
}

// Runs one step through the fake model.
void Step(Scheduler& s, FakePagedModel& model, int step) {
  auto plan = s.Schedule(StepTime(step));
  ASSERT_TRUE(plan.ok()) << plan.status();
  if (!plan->empty()) {
    ASSERT_TRUE(s.Update(model.Run(*plan)).ok());
  }
}

TEST(SchedulerTest, CancellationFreesBlocksAndReturnsThePartialOutput) {
  auto s = Make(SmallConfig());
  FakePagedModel model(64, 16);
  const BlockUsage start = s->block_manager().Usage();
  const auto prompt = Tokens(40);
  ASSERT_TRUE(s->AddRequest(Req("a", prompt, 100), StepTime(0)).ok());
  for (int i = 0; i < 5; ++i) Step(*s, model, i);  // prefill + 4 decodes
  EXPECT_EQ(s->block_manager().Usage().used, 3);
  ASSERT_TRUE(s->Cancel("a").ok());
  EXPECT_EQ(s->block_manager().Usage().used, start.used) << "freed at once between steps";
  EXPECT_EQ(s->block_manager().Usage().free + s->block_manager().Usage().evictable, start.free);
  auto done = s->TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].completions[0].finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(done[0].completions[0].generated_token_ids, ReferenceGenerate(prompt, 5));
  EXPECT_EQ(s->Cancel("a").code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(s->HasUnfinished());
}

TEST(SchedulerTest, CancellationDuringAStepFreesBlocksAtTheNextStep) {
  auto s = Make(SmallConfig());
  FakePagedModel model(64, 16);
  ASSERT_TRUE(s->AddRequest(Req("a", Tokens(40), 100), StepTime(0)).ok());
  Step(*s, model, 0);
  auto plan = s->Schedule(StepTime(1));
  ASSERT_TRUE(plan.ok());
  ASSERT_TRUE(s->Cancel("a").ok());
  EXPECT_GT(s->block_manager().Usage().used, 0) << "the step in flight still writes them";
  ASSERT_TRUE(s->Update(model.Run(*plan)).ok());
  auto next = s->Schedule(StepTime(2));
  ASSERT_TRUE(next.ok());
  EXPECT_TRUE(next->empty());
  EXPECT_EQ(s->block_manager().Usage().used, 0);
  auto done = s->TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].completions[0].finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(done[0].completions[0].generated_token_ids.size(), 2u);
}

TEST(SchedulerTest, ExpiredDeadlineEndsWithThePartialOutput) {
  auto s = Make(SmallConfig());
  const auto prompt = Tokens(10);
  RequestSpec r = Req("a", prompt, 100);
  r.deadline = StepTime(6);  // steps 0..5 run, step 6 sees it expired
  RequestSpec other = Req("b", Tokens(10, 2), 8);
  auto log = RunToCompletion(*s, {{0, r}, {0, other}});
  const auto& out = log.outputs.at("a").completions[0];
  EXPECT_EQ(out.finish_reason, FinishReason::kDeadline);
  EXPECT_EQ(out.generated_token_ids, ReferenceGenerate(prompt, 6));
  EXPECT_EQ(log.outputs.at("b").completions[0].finish_reason, FinishReason::kLength);
}

TEST(SchedulerTest, StopTokenEndsTheSequenceKeepingTheToken) {
  auto s = Make(SmallConfig());
  const auto prompt = Tokens(10);
  const auto full = ReferenceGenerate(prompt, 10);
  RequestSpec r = Req("a", prompt, 10);
  r.stop_token_ids = {full[3]};
  auto log = RunToCompletion(*s, {{0, r}});
  const auto& out = log.outputs.at("a").completions[0];
  EXPECT_EQ(out.finish_reason, FinishReason::kStop);
  EXPECT_EQ(out.generated_token_ids, ReferenceGenerate(prompt, 10, 0, {full[3]}));
  EXPECT_EQ(out.generated_token_ids.back(), full[3]);
}

TEST(SchedulerTest, FinishReportedByDecodingEndsTheSequence) {
  auto s = Make(SmallConfig());
  FakePagedModel model(64, 16);
  ASSERT_TRUE(s->AddRequest(Req("a", Tokens(10), 10), StepTime(0)).ok());
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  StepResult r = model.Run(*plan);
  r.outputs[0].finish = FinishReason::kStop;
  ASSERT_TRUE(s->Update(r).ok());
  auto done = s->TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].completions[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(done[0].completions[0].generated_token_ids.size(), 1u);
  EXPECT_EQ(s->block_manager().Usage().used, 0);
}

TEST(SchedulerTest, StepProtocolErrors) {
  auto s = Make(SmallConfig());
  FakePagedModel model(64, 16);
  EXPECT_EQ(s->Update(StepResult{}).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(s->AddRequest(Req("a", Tokens(10), 10), StepTime(0)).ok());
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(s->Schedule(StepTime(0)).status().code(), absl::StatusCode::kFailedPrecondition);
  const StepResult good = model.Run(*plan);

  StepResult bad = good;
  bad.step_index = 7;
  absl::Status st = s->Update(bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("step_index"));

  bad = good;
  bad.outputs.clear();
  st = s->Update(bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("StepResult.outputs lacks sequence"));

  bad = good;
  bad.outputs[0].tokens.push_back(1);
  st = s->Update(bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("outputs[0].tokens has 2 tokens, expected 1"));

  bad = good;
  bad.outputs[0].seq_id = 12345;
  st = s->Update(bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("outputs[0].seq_id 12345"));

  // Nothing changed by the refusals: the good result still applies.
  ASSERT_TRUE(s->Update(good).ok());
  EXPECT_EQ(s->FindRequest("a")->sequences()[0]->num_generated(), 1);
}

}  // namespace
}  // namespace tessera
