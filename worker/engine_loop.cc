#include "worker/engine_loop.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/stop_text.h"
#include "decoding/decoding_strategy.h"

namespace tessera {

absl::StatusOr<std::unique_ptr<EngineLoop>> EngineLoop::Start(std::unique_ptr<BatchRunner> runner,
                                                              const Tokenizer* tokenizer) {
  if (runner == nullptr || tokenizer == nullptr) {
    return absl::InvalidArgumentError("EngineLoop needs a runner and a tokenizer");
  }
  std::unique_ptr<EngineLoop> loop(new EngineLoop(std::move(runner), tokenizer));
  loop->PublishLoad();
  loop->thread_ = std::thread([raw = loop.get()] { raw->Run(); });
  return loop;
}

EngineLoop::EngineLoop(std::unique_ptr<BatchRunner> runner, const Tokenizer* tokenizer)
    : runner_(std::move(runner)), tokenizer_(tokenizer) {}

EngineLoop::~EngineLoop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void EngineLoop::Submit(TokenRequest request, ReplicaEventSink sink) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || draining_ || failed_) {
      refused =
          absl::UnavailableError(failed_ ? "the replica failed and serves no more requests"
                                         : "the replica is draining and admits no new requests");
    } else {
      inbox_.push_back({std::move(request), std::move(sink)});
      idle_ = false;
      return;
    }
  }
  ReplicaEvent event;
  event.status = refused;
  sink(std::move(event));
}

void EngineLoop::Cancel(std::string_view request_id) {
  absl::MutexLock lock(&mu_);
  cancels_.emplace_back(request_id);
}

ReplicaLoad EngineLoop::Load() const {
  absl::MutexLock lock(&mu_);
  return load_;
}

ReplicaInfo EngineLoop::Info() const {
  ReplicaInfo info;
  info.id = "embedded";
  info.block_size = runner_->scheduler().config().block_size;  // fixed after Create
  info.ranks = {{.host = "", .device = "this process"}};
  return info;
}

void EngineLoop::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  load_.ready = false;
}

bool EngineLoop::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&idle_), timeout);
}

void EngineLoop::Run() {
  while (true) {
    std::vector<Pending> arrived;
    std::vector<std::string> cancels;
    {
      absl::MutexLock lock(&mu_);
      // With nothing held, sleep until a request, a cancel or the stop arrives. (The
      // condition may run on other threads, so it reads guarded state only.)
      auto has_news = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !inbox_.empty() || !cancels_.empty();
      };
      if (active_.empty()) mu_.Await(absl::Condition(&has_news));
      if (stopping_) break;
      arrived.swap(inbox_);
      cancels.swap(cancels_);
    }
    for (Pending& p : arrived) Admit(std::move(p));
    for (const std::string& id : cancels) {
      if (active_.contains(id)) runner_->Cancel(id).IgnoreError();  // finished: nothing to do
    }
    // A cancelled request leaves the scheduler at once; its output still comes from Step.
    if (runner_->HasUnfinished() || !active_.empty()) {
      const int64_t steps_before = runner_->stats().steps;
      absl::StatusOr<std::vector<RequestOutput>> finished = runner_->Step(absl::Now());
      if (!finished.ok()) {
        FailAll(absl::InternalError(
            absl::StrCat("the replica's engine failed: ", finished.status().message())));
        absl::MutexLock lock(&mu_);
        failed_ = true;
        load_.ready = false;
        break;
      }
      ReportProgress();
      for (RequestOutput& out : *finished) ReportFinished(std::move(out));
      if (!runner_->HasUnfinished()) FailLost();
      // Nothing could run (every request waits on something outside the step): do not spin.
      if (runner_->stats().steps == steps_before && finished->empty()) {
        absl::SleepFor(absl::Milliseconds(1));
      }
    }
    PublishLoad();
  }
  FailAll(absl::UnavailableError("the replica shut down before the request finished"));
  PublishLoad();
}

void EngineLoop::Admit(Pending p) {
  const std::string id = p.request.spec.request_id;
  WorkerRequest request;
  request.spec = std::move(p.request.spec);
  const bool streams =
      !NeedsDecodingStrategy(p.request.generation) && !p.request.generation.best_of.has_value();
  request.generation = std::move(p.request.generation);
  if (!p.request.stop_strings.empty()) {
    request.stops_at = StopsAtText(tokenizer_, std::move(p.request.stop_strings));
  }
  if (absl::Status s = runner_->AddRequest(std::move(request), absl::Now()); !s.ok()) {
    ReplicaEvent event;
    event.status = s;
    p.sink(std::move(event));
    return;
  }
  Active& a = active_[id];
  a.sink = std::move(p.sink);
  a.streams = streams;
}

void EngineLoop::ReportProgress() {
  for (auto& [id, a] : active_) {
    if (!a.streams) continue;
    const SequenceGroup* group = runner_->scheduler().FindRequest(id);
    if (group == nullptr) continue;  // finished in this step: ReportFinished has it
    ReplicaEvent event;
    for (const auto& seq : group->sequences()) {
      // Completion index: the order the samples were forked in.
      auto [index, inserted] = a.index_of.try_emplace(seq->id(), a.index_of.size());
      const auto generated = seq->generated_token_ids();
      size_t& reported = a.reported[seq->id()];
      if (generated.size() <= reported) continue;
      ReplicaEvent::Delta delta;
      delta.index = index->second;
      delta.token_ids.assign(generated.begin() + reported, generated.end());
      const std::span<const SampleResult> drawn = runner_->DrawnLogprobs(seq->id());
      for (size_t t = reported; t < generated.size() && t < drawn.size(); ++t) {
        delta.token_logprobs.push_back(drawn[t].logprob);
        std::vector<std::pair<int32_t, float>> top;
        for (const TokenLogprob& alt : drawn[t].top) top.emplace_back(alt.token, alt.logprob);
        delta.top_logprobs.push_back(std::move(top));
      }
      reported = generated.size();
      event.deltas.push_back(std::move(delta));
    }
    if (!event.deltas.empty()) a.sink(std::move(event));
  }
}

void EngineLoop::ReportFinished(RequestOutput out) {
  auto it = active_.find(out.request_id);
  if (it == active_.end()) return;
  Active a = std::move(it->second);
  active_.erase(it);
  // Order the completions by index: streamed sequences keep theirs, the rest (forks made in
  // the last step, strategy hypotheses) take the next free ones in the runner's order.
  std::vector<std::pair<int, RequestOutput::Completion>> ordered;
  int next = static_cast<int>(a.index_of.size());
  for (RequestOutput::Completion& c : out.completions) {
    auto known = a.streams ? a.index_of.find(c.seq_id) : a.index_of.end();
    ordered.emplace_back(known != a.index_of.end() ? known->second : next++, std::move(c));
  }
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  ReplicaEvent event;
  out.completions.clear();
  for (auto& [index, c] : ordered) {
    const size_t from = a.streams ? a.reported[c.seq_id] : 0;
    if (c.generated_token_ids.size() > from) {
      ReplicaEvent::Delta delta;
      delta.index = static_cast<int>(out.completions.size());
      delta.token_ids.assign(c.generated_token_ids.begin() + from, c.generated_token_ids.end());
      // (A strategy's hypotheses carry logprobs without alternatives.)
      if (c.token_logprobs.size() >= c.generated_token_ids.size() &&
          c.top_logprobs.size() >= c.generated_token_ids.size()) {
        delta.token_logprobs.assign(c.token_logprobs.begin() + from,
                                    c.token_logprobs.begin() + c.generated_token_ids.size());
        delta.top_logprobs.assign(c.top_logprobs.begin() + from,
                                  c.top_logprobs.begin() + c.generated_token_ids.size());
      }
      event.deltas.push_back(std::move(delta));
    }
    out.completions.push_back(std::move(c));
  }
  event.output = std::move(out);
  a.sink(std::move(event));
}

void EngineLoop::FailLost() {
  // Every admitted request ends with an output from Step; one that did not is a bug, and
  // its client gets an error rather than a stream that never ends.
  for (auto& [id, a] : active_) {
    ReplicaEvent event;
    event.status = absl::InternalError(absl::StrCat("request ", id, " was lost by the engine"));
    a.sink(std::move(event));
  }
  active_.clear();
}

void EngineLoop::FailAll(const absl::Status& status) {
  for (auto& [id, a] : active_) {
    runner_->Cancel(id).IgnoreError();
    ReplicaEvent event;
    event.status = status;
    a.sink(std::move(event));
  }
  active_.clear();
  std::vector<Pending> waiting;
  {
    absl::MutexLock lock(&mu_);
    waiting.swap(inbox_);
  }
  for (Pending& p : waiting) {
    ReplicaEvent event;
    event.status = status;
    p.sink(std::move(event));
  }
}

void EngineLoop::PublishLoad() {
  ReplicaLoad load;
  const Scheduler& s = runner_->scheduler();
  load.running_requests = 0;
  for (const auto& [id, a] : active_) {
    const SequenceGroup* group = s.FindRequest(id);
    if (group == nullptr) continue;
    bool running = false;
    for (const auto& seq : group->sequences()) {
      if (seq->is_finished()) continue;
      running = running || seq->status() == SequenceStatus::kRunning;
      load.outstanding_tokens += seq->num_uncomputed_tokens() +
                                 std::max(0, group->max_new_tokens() - seq->num_generated());
    }
    running ? ++load.running_requests : ++load.waiting_requests;
  }
  const SchedulerStats stats = s.stats();
  load.prefix_queried_blocks = stats.prefix_queried_blocks;
  load.prefix_hit_blocks = stats.prefix_hit_blocks;
  const std::vector<RankStepTimes>& times = runner_->rank_times();
  for (size_t r = 0; r < times.size(); ++r) {
    load.ranks.push_back({.rank = static_cast<int>(r),
                          .steps = times[r].steps,
                          .step_seconds = times[r].step_seconds,
                          .compute_seconds = times[r].compute_seconds(),
                          .communication_seconds = times[r].communication_seconds,
                          .bubble_seconds = times[r].bubble_seconds});
  }
  load.kv_blocks_total = s.block_manager().num_blocks();
  load.kv_blocks_used = load.kv_blocks_total - s.block_manager().num_available_blocks();
  absl::MutexLock lock(&mu_);
  load.ready = !stopping_ && !draining_ && !failed_;
  load.waiting_requests += static_cast<int>(inbox_.size());
  load_ = load;
  idle_ = active_.empty() && inbox_.empty();
}

}  // namespace tessera
