// Test driver: feeds requests into a Scheduler at given steps and runs every plan through
// the FakePagedModel until all requests finish, checking invariants after each step. With
// SchedulerConfig::max_steps_in_flight > 1 it acts as a pipeline does: each step schedules
// plans until that many are in flight, the model runs each at once (every rank runs plans
// in launch order), and only the oldest's result goes back to Update; it checks that the
// plans in flight never share a request.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <random>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/scheduler.h"
#include "gtest/gtest.h"
#include "tests/engine/fake_paged_model.h"

namespace tessera::testing {

inline absl::Time StepTime(int step) { return absl::UnixEpoch() + absl::Milliseconds(step); }

// A greedy request of `max_new` tokens after `prompt`.
inline RequestSpec Req(std::string id, std::vector<int32_t> prompt, int max_new) {
  RequestSpec spec;
  spec.request_id = std::move(id);
  spec.prompt_token_ids = std::move(prompt);
  spec.max_new_tokens = max_new;
  return spec;
}

struct Arrival {
  int step = 0;
  RequestSpec spec;
};

struct RunLog {
  std::map<std::string, RequestOutput> outputs;
  std::vector<std::string> finish_order;
  std::vector<StepPlan> plans;
  int steps = 0;
};

// `on_plan` (optional) sees each plan before the model runs it.
inline RunLog RunToCompletion(Scheduler& scheduler, std::vector<Arrival> arrivals,
                              const std::function<void(const StepPlan&)>& on_plan = nullptr,
                              int max_steps = 20000) {
  RunLog log;
  FakePagedModel model(scheduler.config().num_blocks, scheduler.config().block_size);
  std::stable_sort(arrivals.begin(), arrivals.end(),
                   [](const Arrival& a, const Arrival& b) { return a.step < b.step; });
  size_t next = 0;
  const size_t max_in_flight = static_cast<size_t>(scheduler.config().max_steps_in_flight);
  struct Landing {
    StepResult result;
    std::set<std::string> requests;
  };
  std::deque<Landing> in_flight;  // oldest first
  for (int step = 0; step < max_steps; ++step) {
    while (next < arrivals.size() && arrivals[next].step <= step) {
      const absl::Status s = scheduler.AddRequest(arrivals[next].spec, StepTime(step));
      EXPECT_TRUE(s.ok()) << s;
      ++next;
    }
    if (next == arrivals.size() && !scheduler.HasUnfinished()) break;
    while (in_flight.size() < max_in_flight) {
      absl::StatusOr<StepPlan> plan = scheduler.Schedule(StepTime(step));
      EXPECT_TRUE(plan.ok()) << plan.status();
      if (!plan.ok()) return log;
      if (on_plan) on_plan(*plan);
      const bool empty = plan->empty();
      if (!empty) {
        Landing landing{model.Run(*plan), {}};
        for (const ScheduledSequence& e : plan->sequences) {
          for (const Landing& other : in_flight) {
            EXPECT_FALSE(other.requests.contains(e.request_id))
                << "request " << e.request_id << " in two plans in flight";
          }
          landing.requests.insert(e.request_id);
        }
        in_flight.push_back(std::move(landing));
      }
      log.plans.push_back(std::move(*plan));
      if (empty) break;
    }
    if (!in_flight.empty()) {
      const absl::Status s = scheduler.Update(in_flight.front().result);
      EXPECT_TRUE(s.ok()) << s;
      in_flight.pop_front();
    }
    for (RequestOutput& out : scheduler.TakeFinished()) {
      log.finish_order.push_back(out.request_id);
      log.outputs[out.request_id] = out;
    }
    const absl::Status inv = scheduler.block_manager().CheckInvariants();
    EXPECT_TRUE(inv.ok()) << inv;
    log.steps = step + 1;
  }
  for (RequestOutput& out : scheduler.TakeFinished()) {
    log.finish_order.push_back(out.request_id);
    log.outputs[out.request_id] = out;
  }
  EXPECT_FALSE(scheduler.HasUnfinished()) << "requests left after " << max_steps << " steps";
  EXPECT_EQ(scheduler.block_manager().Usage().used, 0) << "blocks leaked";
  return log;
}

inline std::vector<int32_t> RandomTokens(std::mt19937& rng, int n) {
  std::vector<int32_t> v(n);
  for (int32_t& t : v) t = std::uniform_int_distribution<int32_t>(0, kFakeVocab - 1)(rng);
  return v;
}

}  // namespace tessera::testing
