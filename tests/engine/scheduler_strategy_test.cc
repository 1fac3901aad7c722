// Strategy-driven groups (RequestSpec::decoding_width): held sequences, forks and appended
// tokens between steps, pruning, slot reservation and admission, and no block leaks.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/scheduler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/scheduler_driver.h"

namespace tessera {
namespace {

using ::tessera::testing::StepTime;
using ::testing::HasSubstr;

SchedulerConfig Config() {
  return SchedulerConfig{.block_size = 4,
                         .num_blocks = 64,
                         .max_model_len = 256,
                         .max_num_seqs = 8,
                         .max_num_batched_tokens = 64};
}

RequestSpec BeamReq(std::string id, int width, int prompt_len = 6, int max_new = 8) {
  RequestSpec spec;
  spec.request_id = std::move(id);
  for (int i = 0; i < prompt_len; ++i) spec.prompt_token_ids.push_back(10 + i);
  spec.max_new_tokens = max_new;
  spec.decoding_width = width;
  return spec;
}

// Answers every entry that needs logits with "held" (no token).
StepResult HoldAll(const StepPlan& plan) {
  StepResult r;
  r.step_index = plan.step_index;
  for (const ScheduledSequence& e : plan.sequences) {
    if (e.needs_logits) r.outputs.push_back({e.seq_id, {}, FinishReason::kNone});
  }
  return r;
}

TEST(SchedulerStrategyTest, HeldSequencesWaitForTheirStrategy) {
  auto s = std::move(Scheduler::Create(Config())).value();
  ASSERT_TRUE(s->AddRequest(BeamReq("b", 3), StepTime(0)).ok());
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->sequences.size(), 1u);
  const SequenceId first = plan->sequences[0].seq_id;
  ASSERT_TRUE(s->Update(HoldAll(*plan)).ok());
  // Held: nothing to schedule until the strategy appends.
  auto idle = s->Schedule(StepTime(1));
  ASSERT_TRUE(idle.ok());
  EXPECT_TRUE(idle->empty());

  // Two forks and the parent continue with three different tokens.
  auto c1 = s->ForkSequence(first);
  auto c2 = s->ForkSequence(first);
  ASSERT_TRUE(c1.ok() && c2.ok());
  EXPECT_EQ(s->ForkSequence(first).status().code(), absl::StatusCode::kResourceExhausted)
      << "a group may not exceed its decoding_width";
  ASSERT_TRUE(s->AppendToken(*c1, 101).ok());
  ASSERT_TRUE(s->AppendToken(*c2, 102).ok());
  ASSERT_TRUE(s->AppendToken(first, 100).ok());
  auto step = s->Schedule(StepTime(2));
  ASSERT_TRUE(step.ok());
  ASSERT_EQ(step->sequences.size(), 3u);
  for (const ScheduledSequence& e : step->sequences) {
    EXPECT_EQ(e.start_position, 6);
    ASSERT_EQ(e.token_ids.size(), 1u);
    EXPECT_EQ(e.token_ids[0], e.seq_id == first ? 100 : e.seq_id == *c1 ? 101 : 102);
    // Position 6 sits in the shared, partly filled block 1: each writer got its own copy.
    EXPECT_EQ(e.block_table[0], step->sequences[0].block_table[0]);
  }
  EXPECT_EQ(step->block_copies.size(), 2u);
  ASSERT_TRUE(s->Update(HoldAll(*step)).ok());

  // Prune one, finish the others: the group retires without the pruned sequence.
  ASSERT_TRUE(s->FinishSequence(*c2, FinishReason::kPruned).ok());
  ASSERT_TRUE(s->FinishSequence(*c1, FinishReason::kLength).ok());
  EXPECT_TRUE(s->TakeFinished().empty());
  ASSERT_TRUE(s->FinishSequence(first, FinishReason::kStop).ok());
  const std::vector<RequestOutput> done = s->TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  ASSERT_EQ(done[0].completions.size(), 2u);
  EXPECT_EQ(done[0].completions[0].generated_token_ids, std::vector<int32_t>{100});
  EXPECT_EQ(done[0].completions[1].generated_token_ids, std::vector<int32_t>{101});
  EXPECT_EQ(s->block_manager().Usage().used, 0) << "blocks leaked";
}

TEST(SchedulerStrategyTest, NoStopOrLengthChecksForStrategyGroups) {
  auto s = std::move(Scheduler::Create(Config())).value();
  RequestSpec spec = BeamReq("b", 2, 4, 1);
  spec.stop_token_ids = {7};
  ASSERT_TRUE(s->AddRequest(spec, StepTime(0)).ok());
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  ASSERT_TRUE(s->Update(HoldAll(*plan)).ok());
  const SequenceId first = plan->sequences[0].seq_id;
  ASSERT_TRUE(s->AppendToken(first, 7).ok());  // a stop id: the strategy decides, not us
  EXPECT_FALSE(s->FindSequence(first)->is_finished());
  // max_new_tokens is a hard limit on what a strategy may append.
  EXPECT_EQ(s->AppendToken(first, 8).code(), absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(s->Cancel("b").ok());
  EXPECT_EQ(s->TakeFinished().size(), 1u);
  EXPECT_EQ(s->block_manager().Usage().used, 0);
}

TEST(SchedulerStrategyTest, AppendTokenOnlyForStrategyGroups) {
  auto s = std::move(Scheduler::Create(Config())).value();
  RequestSpec plain = BeamReq("p", 0);
  ASSERT_TRUE(s->AddRequest(plain, StepTime(0)).ok());
  const SequenceId id = s->FindRequest("p")->sequences()[0]->id();
  EXPECT_EQ(s->AppendToken(id, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->AppendToken(12345, 1).code(), absl::StatusCode::kNotFound);
  // A strategy group's sequence takes a token only once held (its logits delivered).
  ASSERT_TRUE(s->AddRequest(BeamReq("b", 2), StepTime(0)).ok());
  const SequenceId beam = s->FindRequest("b")->sequences()[0]->id();
  EXPECT_EQ(s->AppendToken(beam, 1).code(), absl::StatusCode::kFailedPrecondition);
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  StepResult r = HoldAll(*plan);
  for (SequenceOutput& o : r.outputs) {
    if (o.seq_id == id) o.tokens = {3};  // the plain request samples as usual
  }
  ASSERT_TRUE(s->Update(r).ok());
  ASSERT_TRUE(s->AppendToken(beam, 1).ok());
  EXPECT_EQ(s->AppendToken(beam, 2).code(), absl::StatusCode::kFailedPrecondition)
      << "the token appended last is not computed yet";
}

TEST(SchedulerStrategyTest, AdmissionCountsEveryLiveSequence) {
  SchedulerConfig c = Config();
  c.num_blocks = 8;  // 32 tokens
  auto s = std::move(Scheduler::Create(c)).value();
  // 6 + 8 = 14 tokens = 4 blocks per sequence: 2 fit, 3 do not.
  EXPECT_TRUE(s->AddRequest(BeamReq("two", 2), StepTime(0)).ok());
  const absl::Status three = s->AddRequest(BeamReq("three", 3), StepTime(0));
  EXPECT_EQ(three.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(three.message()), HasSubstr("x 3 sequences"));
  RequestSpec bad = BeamReq("bad", 2);
  bad.n = 2;
  EXPECT_EQ(s->AddRequest(bad, StepTime(0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s->AddRequest(BeamReq("wide", 9), StepTime(0)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SchedulerStrategyTest, ReservesItsWidthInSequenceSlots) {
  SchedulerConfig c = Config();
  c.max_num_seqs = 4;
  auto s = std::move(Scheduler::Create(c)).value();
  ASSERT_TRUE(s->AddRequest(BeamReq("beam", 3), StepTime(0)).ok());
  RequestSpec a = BeamReq("a", 0);
  RequestSpec b = BeamReq("b", 0);
  b.prompt_token_ids[0] = 99;
  ASSERT_TRUE(s->AddRequest(a, StepTime(0)).ok());
  ASSERT_TRUE(s->AddRequest(b, StepTime(0)).ok());
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  // The beam group holds 3 of the 4 slots from its first step: only "a" joins it.
  std::vector<std::string> ids;
  for (const ScheduledSequence& e : plan->sequences) ids.push_back(e.request_id);
  EXPECT_THAT(ids, ::testing::ElementsAre("beam", "a"));
}

// Under the priority policy an urgent request preempts the lowest-ranked plain sequence
// even when a strategy-driven group ranks lower still (that group is skipped, not a wall).
TEST(SchedulerStrategyTest, PriorityPreemptionSkipsStrategyGroups) {
  SchedulerConfig c = Config();
  c.max_num_seqs = 3;
  c.policy = SchedulingPolicy::kPriority;
  auto s = std::move(Scheduler::Create(c)).value();
  RequestSpec plain = BeamReq("plain", 0);
  plain.priority = 5;
  RequestSpec beam = BeamReq("beam", 2);
  beam.priority = 9;
  ASSERT_TRUE(s->AddRequest(plain, StepTime(0)).ok());
  ASSERT_TRUE(s->AddRequest(beam, StepTime(0)).ok());
  auto plan = s->Schedule(StepTime(0));
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->sequences.size(), 2u);  // 1 + 2 reserved slots: all 3 in use
  StepResult r = HoldAll(*plan);
  const SequenceId plain_seq = s->FindRequest("plain")->sequences()[0]->id();
  for (SequenceOutput& o : r.outputs) {
    if (o.seq_id == plain_seq) o.tokens = {1};
  }
  ASSERT_TRUE(s->Update(r).ok());
  RequestSpec urgent = BeamReq("urgent", 0);
  urgent.priority = 0;
  ASSERT_TRUE(s->AddRequest(urgent, StepTime(1)).ok());
  auto next = s->Schedule(StepTime(1));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->preempted, std::vector<SequenceId>{plain_seq});
  bool urgent_runs = false;
  for (const ScheduledSequence& e : next->sequences) urgent_runs |= e.request_id == "urgent";
  EXPECT_TRUE(urgent_runs);
}

}  // namespace
}  // namespace tessera
