// The embedded replica: one engine thread runs a BatchRunner over the model while requests
// arrive from other threads (the gRPC coordinator's handlers). Each step the thread takes
// new requests and cancellations, runs BatchRunner::Step and reports every request's new
// tokens through its sink (coordinator/replica.h), so streams advance one step at a time.
//
// Thread-safety: Submit, Cancel, Load, Drain and WaitIdle from any thread; sinks are called
// on the engine thread. The model must outlive the loop; nothing else may use the runner.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/replica.h"
#include "tokenizer/tokenizer.h"
#include "worker/batch_runner.h"

namespace tessera {

class EngineLoop : public Replica {
 public:
  // Takes the runner and starts the engine thread. `tokenizer` (for text stop strings)
  // must outlive the loop.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EngineLoop>> Start(
      std::unique_ptr<BatchRunner> runner, const Tokenizer* tokenizer);
  // Stops the thread; requests still held end with UNAVAILABLE ("replica shut down").
  ~EngineLoop() override;

  void Submit(TokenRequest request, ReplicaEventSink sink) override;
  void Cancel(std::string_view request_id) override;
  ReplicaLoad Load() const override;
  ReplicaInfo Info() const override;

  // Stops admitting (later Submits end with UNAVAILABLE); what was accepted runs to the end.
  void Drain();
  // Blocks until no request is held or `timeout` passes; true when idle.
  bool WaitIdle(absl::Duration timeout);

  const BatchRunner& runner() const { return *runner_; }  // engine thread's; for tests when idle
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

 private:
  EngineLoop(std::unique_ptr<BatchRunner> runner, const Tokenizer* tokenizer);

  struct Pending {
    TokenRequest request;
    ReplicaEventSink sink;
  };
  // What the engine thread keeps per admitted request.
  struct Active {
    ReplicaEventSink sink;
    bool streams = true;  // false: completions known only at the end
    // Completion index and tokens reported so far, by sequence.
    absl::flat_hash_map<SequenceId, int> index_of;
    absl::flat_hash_map<SequenceId, size_t> reported;
  };

  void Run();
  void Admit(Pending pending);
  // New tokens of every streaming request after a step.
  void ReportProgress();
  void ReportFinished(RequestOutput output);
  // Ends every held and queued request with `status`.
  void FailAll(const absl::Status& status);
  // Ends the held requests the runner no longer knows (none, unless there is a bug).
  void FailLost();
  void PublishLoad();

  std::unique_ptr<BatchRunner> runner_;
  const Tokenizer* tokenizer_;

  mutable absl::Mutex mu_;
  std::vector<Pending> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancels_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool idle_ ABSL_GUARDED_BY(mu_) = true;
  ReplicaLoad load_ ABSL_GUARDED_BY(mu_);

  absl::flat_hash_map<std::string, Active> active_;  // engine thread only
  std::thread thread_;
};

}  // namespace tessera
