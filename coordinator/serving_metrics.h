// The coordinator's Prometheus metrics (served at /metrics by coordinator/http_server.h):
//   tessera_requests_total{api,model,code}      calls by outcome (gRPC code name)
//   tessera_time_to_first_token_seconds{model}  histograms, measured at the coordinator
//   tessera_time_per_output_token_seconds{model}
//   tessera_request_duration_seconds{model}
//   tessera_prompt_tokens_total / tessera_generation_tokens_total{model}
// and, read from the replicas at scrape time (coordinator/replica.h's ReplicaLoad):
// readiness, running and waiting requests (queue depth), KV blocks used and total, the
// prefix cache's lookups, hits and hit ratio, and per rank the step, compute, communication
// and pipeline-bubble seconds; plus the calls in flight and the drain switch.
//
// Thread-safety: every method from any thread.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "coordinator/metrics_registry.h"
#include "coordinator/model_registry.h"
#include "coordinator/replica.h"
#include "coordinator/request_gate.h"

namespace tessera {

class ServingMetrics {
 public:
  // Both must outlive the metrics.
  ServingMetrics(const ModelRegistry* registry, const RequestGate* gate);

  // One call's outcome; `api` is "grpc" or "http", `model` empty when it was not found.
  void CountRequest(std::string_view api, std::string_view model, absl::StatusCode code);
  // `sink`, timing the request from now: the first event with a token gives the time to
  // first token, the last one the duration and the time per output token after the first.
  ReplicaEventSink Observe(std::string model, int64_t prompt_tokens, ReplicaEventSink sink);

  std::string Render() const { return metrics_.Render(); }
  const MetricsRegistry& registry() const { return metrics_; }

  // "OK", "INVALID_ARGUMENT", ... as gRPC names them.
  static std::string CodeName(absl::StatusCode code);

 private:
  std::vector<MetricSnapshot> CollectReplicas() const;

  const ModelRegistry* models_;
  const RequestGate* gate_;
  MetricsRegistry metrics_;
  CounterFamily* requests_;
  CounterFamily* prompt_tokens_;
  CounterFamily* generation_tokens_;
  HistogramFamily* time_to_first_token_;
  HistogramFamily* time_per_output_token_;
  HistogramFamily* request_duration_;
};

}  // namespace tessera
