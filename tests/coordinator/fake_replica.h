// Test double for coordinator/replica.h: a replica whose tokens the test scripts. Each
// submitted request gets `script` as its tokens, one per event, from the replica's own
// thread (as a real replica's sink calls come), then a final output; `hold` keeps a
// request waiting until Release, so tests can cancel it or lose the replica mid-stream.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/replica.h"

namespace tessera::testing {

class FakeReplica : public Replica {
 public:
  explicit FakeReplica(std::vector<int32_t> script, bool hold = false);
  ~FakeReplica() override;

  void Submit(TokenRequest request, ReplicaEventSink sink) override;
  void Cancel(std::string_view request_id) override;
  ReplicaLoad Load() const override;
  ReplicaInfo Info() const override { return {.id = id_, .block_size = 16, .ranks = {}}; }

  void set_ready(bool ready);
  void set_id(std::string id) { id_ = std::move(id); }  // before it is shared
  void set_outstanding_tokens(int64_t tokens);
  // Lets held requests finish.
  void Release();
  // Ends every request with UNAVAILABLE and stops being ready (a lost replica).
  void Lose();
  // Blocks until `n` requests were submitted.
  void WaitSubmitted(int n);

  std::vector<std::string> cancelled() const;
  std::vector<TokenRequest> submitted() const;

 private:
  void Run();

  struct Job {
    TokenRequest request;
    ReplicaEventSink sink;
    size_t next = 0;
  };
  std::vector<int32_t> script_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<TokenRequest> submitted_;
  std::vector<std::string> cancelled_;        // every Cancel, for the test
  std::vector<std::string> pending_cancels_;  // not yet applied
  bool ready_ = true;
  std::string id_ = "fake";
  int64_t outstanding_tokens_ = 0;
  bool hold_;
  bool lost_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tessera::testing
