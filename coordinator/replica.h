// The coordinator's view of one replica of a model: somewhere token-level requests run.
// In embedded mode it is the in-process engine (worker/engine_loop.h); a replica whose
// leader dialed in over tessera.cluster.v1 implements the same interface.
//
// Thread-safety: Submit, Cancel and Load may be called from any thread. Event sinks are
// called on the replica's own thread, one request's events in order; a sink must not block
// (it queues what it has to send) and must not call Submit.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/token_request.h"
#include "engine/step_plan.h"

namespace tessera {

struct ReplicaEvent {
  // Tokens generated since the previous event, per completion index. Requests whose
  // completions are known only at the end (beam and contrastive search, best_of) get all
  // their tokens in the last event.
  struct Delta {
    int index = 0;
    std::vector<int32_t> token_ids;
    // When the request asked for logprobs, one per token (as in RequestOutput::Completion);
    // else empty.
    std::vector<float> token_logprobs;
    std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;
  };
  std::vector<Delta> deltas;
  // In the last event of a request that ran: its completions (finish reasons, scores).
  // completions[i] is completion index i.
  std::optional<RequestOutput> output;
  // Not OK in the last event of a request that failed: refused at admission
  // (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ALREADY_EXISTS), or the replica stopped or
  // failed (UNAVAILABLE, INTERNAL).
  absl::Status status;

  bool last() const { return output.has_value() || !status.ok(); }
};

using ReplicaEventSink = std::function<void(ReplicaEvent)>;

// A snapshot for routing, health and the admin API.
struct ReplicaLoad {
  bool ready = false;  // admitting requests
  int running_requests = 0;
  int waiting_requests = 0;
  // Tokens still to compute for the requests it holds (prompts not yet prefilled plus
  // max_new_tokens not yet generated): the router's least-outstanding-tokens measure.
  int64_t outstanding_tokens = 0;
  int kv_blocks_used = 0;
  int kv_blocks_total = 0;
  // Prefix cache since the replica started: blocks looked up when requests were admitted,
  // and blocks found cached.
  int64_t prefix_queried_blocks = 0;
  int64_t prefix_hit_blocks = 0;
  // Where each rank's time went since the replica started, as that rank measured it
  // (empty when the replica does not report it): step = compute + communication + bubble,
  // the bubble being the time a pipeline stage waited for its input.
  struct RankTimes {
    int rank = 0;
    int64_t steps = 0;
    double step_seconds = 0;
    double compute_seconds = 0;
    double communication_seconds = 0;
    double bubble_seconds = 0;
  };
  std::vector<RankTimes> ranks;
};

// What a replica is, for the admin API.
struct ReplicaInfo {
  std::string id;  // unique among the model's replicas
  int tp = 1;
  int pp = 1;
  int block_size = 16;  // tokens per KV block
  bool remote = false;  // registered over tessera.cluster.v1
  struct Rank {
    std::string host;
    std::string device;
  };
  std::vector<Rank> ranks;  // tp * pp entries, as reported; empty when unknown
};

class Replica {
 public:
  virtual ~Replica() = default;
  // Queues a request whose spec.request_id is set. Every outcome, refusals included, comes
  // through `sink`; its last call has `output` or a non-OK status.
  virtual void Submit(TokenRequest request, ReplicaEventSink sink) = 0;
  // Ends the request with FinishReason::kCancelled and its partial output, within a step.
  // Unknown or finished ids are ignored.
  virtual void Cancel(std::string_view request_id) = 0;
  virtual ReplicaLoad Load() const = 0;
  virtual ReplicaInfo Info() const = 0;
};

}  // namespace tessera
