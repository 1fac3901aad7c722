#include "coordinator/serving_metrics.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/time/clock.h"

namespace tessera {
namespace {

using Type = MetricSnapshot::Type;

std::vector<double> Buckets(std::initializer_list<double> bounds) { return bounds; }

}  // namespace

ServingMetrics::ServingMetrics(const ModelRegistry* registry, const RequestGate* gate)
    : models_(registry), gate_(gate) {
  requests_ = metrics_.AddCounter("tessera_requests_total",
                                  "Generation calls by front end, model and outcome (gRPC code).",
                                  {"api", "model", "code"});
  prompt_tokens_ = metrics_.AddCounter("tessera_prompt_tokens_total",
                                       "Prompt tokens of admitted requests.", {"model"});
  generation_tokens_ = metrics_.AddCounter(
      "tessera_generation_tokens_total", "Tokens generated, every completion counted.", {"model"});
  time_to_first_token_ = metrics_.AddHistogram(
      "tessera_time_to_first_token_seconds",
      "From admission to the first generated token, at the coordinator.", {"model"},
      Buckets({0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20,
               40, 80}));
  time_per_output_token_ = metrics_.AddHistogram(
      "tessera_time_per_output_token_seconds",
      "Mean time between generated tokens after the first, per request.", {"model"},
      Buckets({0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
               0.075, 0.1,    0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1,    2.5}));
  request_duration_ =
      metrics_.AddHistogram("tessera_request_duration_seconds",
                            "From admission to the last token, per request.", {"model"},
                            Buckets({0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 40, 50,
                                     60, 120, 240, 480, 960}));
  metrics_.AddCollector([this] { return CollectReplicas(); });
}

std::string ServingMetrics::CodeName(absl::StatusCode code) {
  return absl::StatusCodeToString(code);
}

void ServingMetrics::CountRequest(std::string_view api, std::string_view model,
                                  absl::StatusCode code) {
  requests_->Add({std::string(api), std::string(model), CodeName(code)});
}

ReplicaEventSink ServingMetrics::Observe(std::string model, int64_t prompt_tokens,
                                         ReplicaEventSink sink) {
  prompt_tokens_->Add({model}, static_cast<double>(prompt_tokens));
  struct Timing {
    absl::Time start = absl::Now();
    std::optional<absl::Time> first_token;
    int64_t tokens = 0;  // over every completion
    int64_t first_completion_tokens = 0;
  };
  return [this, model = std::move(model), timing = std::make_shared<Timing>(),
          sink = std::move(sink)](ReplicaEvent event) {
    const absl::Time now = absl::Now();
    for (const ReplicaEvent::Delta& d : event.deltas) {
      timing->tokens += static_cast<int64_t>(d.token_ids.size());
      if (d.index == 0) timing->first_completion_tokens += static_cast<int64_t>(d.token_ids.size());
    }
    if (!timing->first_token.has_value() && timing->tokens > 0) {
      timing->first_token = now;
      time_to_first_token_->Observe({model}, absl::ToDoubleSeconds(now - timing->start));
    }
    if (event.last()) {
      generation_tokens_->Add({model}, static_cast<double>(timing->tokens));
      if (event.status.ok()) {
        request_duration_->Observe({model}, absl::ToDoubleSeconds(now - timing->start));
        // Per completion (they run side by side): the first one's pace.
        if (timing->first_completion_tokens > 1) {
          time_per_output_token_->Observe(
              {model}, absl::ToDoubleSeconds(now - *timing->first_token) /
                           static_cast<double>(timing->first_completion_tokens - 1));
        }
      }
    }
    sink(std::move(event));
  };
}

std::vector<MetricSnapshot> ServingMetrics::CollectReplicas() const {
  auto family = [](std::string name, std::string help, Type type, std::vector<std::string> labels) {
    MetricSnapshot m;
    m.name = std::move(name);
    m.help = std::move(help);
    m.type = type;
    m.label_names = std::move(labels);
    return m;
  };
  const std::vector<std::string> replica_labels = {"model", "replica"};
  MetricSnapshot ready = family("tessera_replica_ready", "1 while the replica admits requests.",
                                Type::kGauge, replica_labels);
  MetricSnapshot running =
      family("tessera_requests_running", "Requests with a sequence in the running batch.",
             Type::kGauge, replica_labels);
  MetricSnapshot waiting =
      family("tessera_requests_waiting", "Requests queued at the replica (queue depth).",
             Type::kGauge, replica_labels);
  MetricSnapshot outstanding =
      family("tessera_outstanding_tokens", "Tokens still to compute for the requests held.",
             Type::kGauge, replica_labels);
  MetricSnapshot used =
      family("tessera_kv_blocks_used", "KV cache blocks in use.", Type::kGauge, replica_labels);
  MetricSnapshot total = family("tessera_kv_blocks_total", "KV cache blocks in the pool.",
                                Type::kGauge, replica_labels);
  MetricSnapshot queried =
      family("tessera_prefix_cache_queried_blocks_total",
             "Prompt blocks looked up in the prefix cache.", Type::kCounter, replica_labels);
  MetricSnapshot hits =
      family("tessera_prefix_cache_hit_blocks_total", "Prompt blocks found in the prefix cache.",
             Type::kCounter, replica_labels);
  MetricSnapshot hit_ratio =
      family("tessera_prefix_cache_hit_ratio",
             "Prefix-cache hits over lookups since the replica started (0 before any lookup).",
             Type::kGauge, replica_labels);
  const std::vector<std::string> rank_labels = {"model", "replica", "rank"};
  MetricSnapshot steps =
      family("tessera_rank_steps_total", "Engine steps the rank ran.", Type::kCounter, rank_labels);
  MetricSnapshot step_seconds =
      family("tessera_rank_step_seconds_total", "Wall time of the rank's steps.", Type::kCounter,
             rank_labels);
  MetricSnapshot compute = family("tessera_rank_compute_seconds_total",
                                  "Step time spent computing.", Type::kCounter, rank_labels);
  MetricSnapshot communication =
      family("tessera_rank_communication_seconds_total",
             "Step time spent in collectives and stage transfers.", Type::kCounter, rank_labels);
  MetricSnapshot bubble =
      family("tessera_rank_pipeline_bubble_seconds_total",
             "Step time a pipeline stage waited for its input.", Type::kCounter, rank_labels);

  for (const ServedModel* model : models_->models()) {
    for (const std::shared_ptr<Replica>& replica : model->replicas()) {
      const ReplicaLoad load = replica->Load();
      const std::string id = replica->Info().id;
      const std::vector<std::string> labels = {model->name(), id};
      ready.samples.push_back({labels, load.ready ? 1.0 : 0.0});
      running.samples.push_back({labels, static_cast<double>(load.running_requests)});
      waiting.samples.push_back({labels, static_cast<double>(load.waiting_requests)});
      outstanding.samples.push_back({labels, static_cast<double>(load.outstanding_tokens)});
      used.samples.push_back({labels, static_cast<double>(load.kv_blocks_used)});
      total.samples.push_back({labels, static_cast<double>(load.kv_blocks_total)});
      queried.samples.push_back({labels, static_cast<double>(load.prefix_queried_blocks)});
      hits.samples.push_back({labels, static_cast<double>(load.prefix_hit_blocks)});
      hit_ratio.samples.push_back({labels, load.prefix_queried_blocks > 0
                                               ? static_cast<double>(load.prefix_hit_blocks) /
                                                     static_cast<double>(load.prefix_queried_blocks)
                                               : 0.0});
      for (const ReplicaLoad::RankTimes& r : load.ranks) {
        const std::vector<std::string> rl = {model->name(), id, std::to_string(r.rank)};
        steps.samples.push_back({rl, static_cast<double>(r.steps)});
        step_seconds.samples.push_back({rl, r.step_seconds});
        compute.samples.push_back({rl, r.compute_seconds});
        communication.samples.push_back({rl, r.communication_seconds});
        bubble.samples.push_back({rl, r.bubble_seconds});
      }
    }
  }
  MetricSnapshot in_flight =
      family("tessera_calls_in_flight", "Generation calls admitted and not yet answered in full.",
             Type::kGauge, {});
  in_flight.samples.push_back({{}, static_cast<double>(gate_->calls_in_flight())});
  MetricSnapshot draining =
      family("tessera_draining", "1 once the server stopped admitting.", Type::kGauge, {});
  draining.samples.push_back({{}, gate_->draining() ? 1.0 : 0.0});
  return {
      std::move(ready),         std::move(running), std::move(waiting),      std::move(outstanding),
      std::move(used),          std::move(total),   std::move(queried),      std::move(hits),
      std::move(hit_ratio),     std::move(steps),   std::move(step_seconds), std::move(compute),
      std::move(communication), std::move(bubble),  std::move(in_flight),    std::move(draining)};
}

}  // namespace tessera
