// Several plans in flight (SchedulerConfig::max_steps_in_flight, what a pipeline of pp
// stages uses): plans are disjoint, land in order, share the live sequences, and never
// preempt, end or fork a request whose step is still in flight.
#include <deque>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "engine/scheduler.h"
#include "tests/engine/fake_paged_model.h"
#include "tests/engine/scheduler_driver.h"

namespace tessera {
namespace {

using ::tessera::testing::FakePagedModel;
using ::tessera::testing::RandomTokens;
using ::tessera::testing::Req;
using ::tessera::testing::ReferenceGenerate;
using ::tessera::testing::StepTime;
using ::testing::HasSubstr;

std::set<std::string> Requests(const StepPlan& plan) {
  std::set<std::string> ids;
  for (const ScheduledSequence& e : plan.sequences) ids.insert(e.request_id);
  return ids;
}

// Lands the plans in flight and runs the rest to the end, one plan at a time.
void Drain(Scheduler& s, FakePagedModel& model, std::deque<StepResult>& in_flight) {
  for (int step = 0; step < 1000 && (s.HasUnfinished() || !in_flight.empty()); ++step) {
    if (in_flight.empty()) {
      absl::StatusOr<StepPlan> plan = s.Schedule(StepTime(100 + step));
      ASSERT_TRUE(plan.ok()) << plan.status();
      if (!plan->empty()) in_flight.push_back(model.Run(*plan));
      continue;
    }
    ASSERT_TRUE(s.Update(in_flight.front()).ok());
    in_flight.pop_front();
  }
  EXPECT_FALSE(s.HasUnfinished());
}

class SchedulerInFlightTest : public ::testing::Test {
 protected:
  void Start(int num_blocks, int block_size, int requests, int prompt, int max_new) {
    auto s = Scheduler::Create({.block_size = block_size,
                                .num_blocks = num_blocks,
                                .max_model_len = 256,
                                .max_num_seqs = 8,
                                .max_num_batched_tokens = 64,
                                .max_steps_in_flight = 2});
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(s).value();
    model_ = std::make_unique<FakePagedModel>(num_blocks, block_size);
    std::mt19937 rng(5);
    for (int i = 0; i < requests; ++i) {
      prompts_.push_back(RandomTokens(rng, prompt));
      ASSERT_TRUE(
          scheduler_->AddRequest(Req(absl::StrCat("r", i), prompts_.back(), max_new), StepTime(i))
              .ok());
    }
  }
  // The finished requests are `count` of those added, each with the reference's tokens.
  void ExpectReferenceOutputs(size_t count, int max_new) {
    std::vector<RequestOutput> done = scheduler_->TakeFinished();
    ASSERT_EQ(done.size(), count);
    for (const RequestOutput& out : done) {
      const int i = std::stoi(out.request_id.substr(1));
      EXPECT_EQ(out.completions[0].generated_token_ids, ReferenceGenerate(prompts_[i], max_new))
          << out.request_id;
    }
  }
  StepPlan Schedule(int step) {
    absl::StatusOr<StepPlan> plan = scheduler_->Schedule(StepTime(step));
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() ? *plan : StepPlan{};
  }

  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<FakePagedModel> model_;
  std::vector<std::vector<int32_t>> prompts_;
};

TEST_F(SchedulerInFlightTest, PlansAreDisjointShareTheSequencesAndLandInOrder) {
  Start(/*num_blocks=*/64, /*block_size=*/16, /*requests=*/8, /*prompt=*/5, /*max_new=*/3);
  const StepPlan a = Schedule(10);
  const StepPlan b = Schedule(10);
  EXPECT_EQ(a.sequences.size(), 4u) << "8 live sequences, 2 plans in flight: 4 each";
  EXPECT_EQ(b.sequences.size(), 4u);
  EXPECT_EQ(Requests(a), (std::set<std::string>{"r0", "r1", "r2", "r3"}));
  EXPECT_EQ(Requests(b), (std::set<std::string>{"r4", "r5", "r6", "r7"}));
  EXPECT_EQ(scheduler_->steps_in_flight(), 2);
  const absl::StatusOr<StepPlan> third = scheduler_->Schedule(StepTime(10));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("max_steps_in_flight"));

  std::deque<StepResult> in_flight = {model_->Run(a), model_->Run(b)};
  const absl::Status out_of_order = scheduler_->Update(in_flight.back());
  EXPECT_EQ(out_of_order.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out_of_order.message()), HasSubstr("oldest step in flight"));
  ASSERT_TRUE(scheduler_->Update(in_flight.front()).ok());
  in_flight.pop_front();
  // a's requests decode next, while b's are still in flight.
  const StepPlan c = Schedule(11);
  EXPECT_EQ(Requests(c), Requests(a));
  for (const ScheduledSequence& e : c.sequences) EXPECT_EQ(e.token_ids.size(), 1u);
  in_flight.push_back(model_->Run(c));
  Drain(*scheduler_, *model_, in_flight);
  ExpectReferenceOutputs(8, 3);
  EXPECT_EQ(scheduler_->block_manager().Usage().used, 0);
}

TEST_F(SchedulerInFlightTest, CancelOfARequestInFlightWaitsForItsStepToLand) {
  Start(64, 16, 2, 20, 8);
  const int used_before = scheduler_->block_manager().Usage().used;
  const StepPlan a = Schedule(10);  // r0
  ASSERT_EQ(Requests(a), std::set<std::string>{"r0"});
  ASSERT_TRUE(scheduler_->Cancel("r0").ok());
  const StepPlan b = Schedule(10);  // r1; r0 is in flight and stays until it lands
  EXPECT_EQ(Requests(b), std::set<std::string>{"r1"});
  EXPECT_TRUE(scheduler_->TakeFinished().empty());
  EXPECT_GT(scheduler_->block_manager().Usage().used, used_before);
  std::deque<StepResult> in_flight = {model_->Run(a), model_->Run(b)};
  ASSERT_TRUE(scheduler_->Update(in_flight.front()).ok());
  in_flight.pop_front();
  const StepPlan c = Schedule(11);  // ends r0 now; r1 is still in flight
  EXPECT_TRUE(c.empty());
  std::vector<RequestOutput> done = scheduler_->TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].request_id, "r0");
  EXPECT_EQ(done[0].completions[0].finish_reason, FinishReason::kCancelled);
  Drain(*scheduler_, *model_, in_flight);
  EXPECT_EQ(scheduler_->block_manager().Usage().used, used_before);
}

TEST_F(SchedulerInFlightTest, ForkFinishAndAppendAreRefusedForARequestInFlight) {
  Start(64, 16, 2, 20, 8);
  const StepPlan a = Schedule(10);
  const SequenceId flying = a.sequences.at(0).seq_id;
  for (const absl::Status& s :
       {scheduler_->ForkSequence(flying).status(),
        scheduler_->FinishSequence(flying, FinishReason::kStop), scheduler_->AppendToken(flying, 1)}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(s.message()), HasSubstr("in flight"));
  }
  // The other request is not in flight: it may be forked.
  const SequenceId waiting = scheduler_->FindRequest("r1")->sequences().front()->id();
  EXPECT_TRUE(scheduler_->ForkSequence(waiting).ok());
  std::deque<StepResult> in_flight = {model_->Run(a)};
  Drain(*scheduler_, *model_, in_flight);
}

TEST_F(SchedulerInFlightTest, PreemptionNeverTakesBlocksFromAPlanInFlight) {
  // 4 blocks of 4 tokens: r0 and r1 take 2 each for their 8-token prompts.
  Start(/*num_blocks=*/4, /*block_size=*/4, /*requests=*/2, /*prompt=*/8, /*max_new=*/8);
  const StepPlan a = Schedule(10);
  const StepPlan b = Schedule(10);
  ASSERT_EQ(Requests(a), std::set<std::string>{"r0"});
  ASSERT_EQ(Requests(b), std::set<std::string>{"r1"});
  std::deque<StepResult> in_flight = {model_->Run(a), model_->Run(b)};
  ASSERT_TRUE(scheduler_->Update(in_flight.front()).ok());
  in_flight.pop_front();
  // r0's first decode needs a third block; the only other holder, r1, is in flight, so r0
  // itself waits.
  const StepPlan c = Schedule(11);
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c.preempted, std::vector<SequenceId>{a.sequences[0].seq_id});
  Drain(*scheduler_, *model_, in_flight);
  ExpectReferenceOutputs(2, 8);
}

TEST(SchedulerConfigInFlightTest, MaxStepsInFlightMustBePositive) {
  const absl::StatusOr<std::unique_ptr<Scheduler>> s =
      Scheduler::Create({.num_blocks = 8, .max_steps_in_flight = 0});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("max_steps_in_flight"));
}

}  // namespace
}  // namespace tessera
