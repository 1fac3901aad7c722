#include "tests/coordinator/fake_replica.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"

namespace tessera::testing {
namespace {

RequestOutput::Completion Completion(std::vector<int32_t> tokens, FinishReason reason) {
  RequestOutput::Completion c;
  c.seq_id = 0;
  c.generated_token_ids = std::move(tokens);
  c.finish_reason = reason;
  return c;
}

}  // namespace

FakeReplica::FakeReplica(std::vector<int32_t> script, bool hold)
    : script_(std::move(script)), hold_(hold), thread_([this] { Run(); }) {}

FakeReplica::~FakeReplica() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void FakeReplica::Submit(TokenRequest request, ReplicaEventSink sink) {
  std::lock_guard<std::mutex> lock(mu_);
  submitted_.push_back(request);
  jobs_.push_back({std::move(request), std::move(sink)});
  cv_.notify_all();
}

void FakeReplica::Cancel(std::string_view request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_.emplace_back(request_id);
  pending_cancels_.emplace_back(request_id);
  cv_.notify_all();
}

ReplicaLoad FakeReplica::Load() const {
  std::lock_guard<std::mutex> lock(mu_);
  ReplicaLoad load;
  load.ready = ready_ && !lost_;
  load.running_requests = static_cast<int>(jobs_.size());
  load.outstanding_tokens = outstanding_tokens_;
  return load;
}

void FakeReplica::set_ready(bool ready) {
  std::lock_guard<std::mutex> lock(mu_);
  ready_ = ready;
}

void FakeReplica::set_outstanding_tokens(int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  outstanding_tokens_ = tokens;
}

void FakeReplica::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  hold_ = false;
  cv_.notify_all();
}

void FakeReplica::Lose() {
  std::lock_guard<std::mutex> lock(mu_);
  lost_ = true;
  cv_.notify_all();
}

void FakeReplica::WaitSubmitted(int n) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return static_cast<int>(submitted_.size()) >= n; });
}

std::vector<std::string> FakeReplica::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

std::vector<TokenRequest> FakeReplica::submitted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return submitted_;
}

void FakeReplica::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] {
      return stop_ || lost_ || (!jobs_.empty() && !hold_) || !pending_cancels_.empty();
    });
    if (stop_) return;
    if (lost_) {
      std::deque<Job> jobs;
      jobs.swap(jobs_);
      lock.unlock();
      for (Job& job : jobs) {
        ReplicaEvent event;
        event.status = absl::UnavailableError("replica lost: its leader disconnected");
        job.sink(std::move(event));
      }
      lock.lock();
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      continue;
    }
    // Cancelled jobs end with their partial output.
    std::vector<std::string> cancels;
    cancels.swap(pending_cancels_);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      const bool cancelled =
          std::find(cancels.begin(), cancels.end(), it->request.spec.request_id) != cancels.end();
      if (!cancelled) {
        ++it;
        continue;
      }
      Job job = std::move(*it);
      it = jobs_.erase(it);
      lock.unlock();
      ReplicaEvent event;
      RequestOutput out;
      out.request_id = job.request.spec.request_id;
      out.completions.push_back(Completion(
          {script_.begin(), script_.begin() + static_cast<std::ptrdiff_t>(job.next)},
          FinishReason::kCancelled));
      event.output = std::move(out);
      job.sink(std::move(event));
      lock.lock();
    }
    if (hold_ || jobs_.empty()) continue;
    // One token of the first job per round.
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    ReplicaEvent event;
    const size_t limit = std::min<size_t>(script_.size(), job.request.spec.max_new_tokens);
    if (job.next < limit) {
      ReplicaEvent::Delta delta;
      delta.token_ids = {script_[job.next]};
      event.deltas.push_back(std::move(delta));
      ++job.next;
    }
    const bool done = job.next >= limit;
    if (done) {
      RequestOutput out;
      out.request_id = job.request.spec.request_id;
      out.completions.push_back(
          Completion({script_.begin(), script_.begin() + static_cast<std::ptrdiff_t>(limit)},
                     limit < script_.size() ? FinishReason::kLength : FinishReason::kStop));
      event.output = std::move(out);
    }
    job.sink(std::move(event));
    lock.lock();
    if (!done) jobs_.push_back(std::move(job));
  }
}

}  // namespace tessera::testing
