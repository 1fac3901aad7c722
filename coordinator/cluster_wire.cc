#include "coordinator/cluster_wire.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "decoding/generation_config.h"

namespace tessera {

namespace cv1 = ::tessera::cluster::v1;

cv1::RunRequest ToRunRequest(const TokenRequest& r) {
  cv1::RunRequest run;
  run.set_request_id(r.spec.request_id);
  run.mutable_prompt_token_ids()->Add(r.spec.prompt_token_ids.begin(),
                                      r.spec.prompt_token_ids.end());
  run.set_max_new_tokens(r.spec.max_new_tokens);
  run.set_n(r.spec.n);
  run.set_priority(r.spec.priority);
  if (r.spec.deadline != absl::InfiniteFuture()) {
    run.set_deadline_unix_micros(absl::ToUnixMicros(r.spec.deadline));
  }
  run.set_generation_config_json(GenerationConfigToJson(r.generation).dump());
  run.mutable_stop_ids()->Add(r.stop_ids.begin(), r.stop_ids.end());
  for (const std::string& s : r.stop_strings) run.add_stop_strings(s);
  return run;
}

absl::StatusOr<TokenRequest> FromRunRequest(const cv1::RunRequest& run) {
  TokenRequest r;
  r.spec.request_id = run.request_id();
  r.spec.prompt_token_ids.assign(run.prompt_token_ids().begin(), run.prompt_token_ids().end());
  r.spec.max_new_tokens = run.max_new_tokens();
  r.spec.n = run.n();
  r.spec.priority = run.priority();
  if (run.deadline_unix_micros() != 0) {
    r.spec.deadline = absl::FromUnixMicros(run.deadline_unix_micros());
  }
  const nlohmann::json j =
      nlohmann::json::parse(run.generation_config_json(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", run.request_id(), ": generation_config_json is not JSON"));
  }
  auto config = GenerationConfigFromJson(j, "generation_config_json");
  if (!config.ok()) return config.status();
  r.generation = *std::move(config);
  r.stop_ids.assign(run.stop_ids().begin(), run.stop_ids().end());
  r.stop_strings.assign(run.stop_strings().begin(), run.stop_strings().end());
  return r;
}

cv1::TokenEvent ToTokenEvent(const std::string& request_id, const ReplicaEvent& event) {
  cv1::TokenEvent e;
  e.set_request_id(request_id);
  for (const ReplicaEvent::Delta& d : event.deltas) {
    cv1::Delta* delta = e.add_deltas();
    delta->set_index(d.index);
    delta->mutable_token_ids()->Add(d.token_ids.begin(), d.token_ids.end());
    delta->mutable_token_logprobs()->Add(d.token_logprobs.begin(), d.token_logprobs.end());
    for (const auto& top : d.top_logprobs) {
      cv1::TokenLogprobs* alternatives = delta->add_top_logprobs();
      for (const auto& [token, logprob] : top) {
        cv1::TopLogprob* t = alternatives->add_top();
        t->set_token_id(token);
        t->set_logprob(logprob);
      }
    }
  }
  if (event.output.has_value()) {
    cv1::Output* output = e.mutable_output();
    for (const RequestOutput::Completion& c : event.output->completions) {
      cv1::Completion* completion = output->add_completions();
      completion->set_finish_reason(static_cast<int32_t>(c.finish_reason));
      completion->mutable_generated_token_ids()->Add(c.generated_token_ids.begin(),
                                                     c.generated_token_ids.end());
      if (c.score.has_value()) completion->set_score(*c.score);
    }
  }
  if (!event.status.ok()) {
    e.set_status_code(static_cast<int32_t>(event.status.code()));
    e.set_status_message(std::string(event.status.message()));
  }
  return e;
}

ReplicaEvent FromTokenEvent(const cv1::TokenEvent& e) {
  ReplicaEvent event;
  for (const cv1::Delta& d : e.deltas()) {
    ReplicaEvent::Delta delta;
    delta.index = d.index();
    delta.token_ids.assign(d.token_ids().begin(), d.token_ids().end());
    delta.token_logprobs.assign(d.token_logprobs().begin(), d.token_logprobs().end());
    for (const cv1::TokenLogprobs& top : d.top_logprobs()) {
      std::vector<std::pair<int32_t, float>> alternatives;
      for (const cv1::TopLogprob& t : top.top())
        alternatives.emplace_back(t.token_id(), t.logprob());
      delta.top_logprobs.push_back(std::move(alternatives));
    }
    event.deltas.push_back(std::move(delta));
  }
  if (e.has_output()) {
    RequestOutput out;
    out.request_id = e.request_id();
    for (const cv1::Completion& c : e.output().completions()) {
      RequestOutput::Completion completion;
      completion.finish_reason = static_cast<FinishReason>(c.finish_reason());
      completion.generated_token_ids.assign(c.generated_token_ids().begin(),
                                            c.generated_token_ids().end());
      if (c.has_score()) completion.score = c.score();
      out.completions.push_back(std::move(completion));
    }
    event.output = std::move(out);
  }
  if (e.status_code() != 0) {
    event.status = absl::Status(static_cast<absl::StatusCode>(e.status_code()), e.status_message());
  }
  return event;
}

namespace {

void SetRange(const ShardRange& r, cv1::Range* out) {
  out->set_begin(r.begin);
  out->set_end(r.end);
}

ShardRange GetRange(const cv1::Range& r) { return {r.begin(), r.end()}; }

}  // namespace

cv1::ShardPlan ToShardPlanProto(const ShardPlan& plan) {
  cv1::ShardPlan p;
  p.set_tp(plan.tp);
  p.set_pp(plan.pp);
  p.set_sequence_parallel(plan.sequence_parallel);
  p.set_block_size(plan.block_size);
  for (const StageShard& s : plan.stages) {
    cv1::StageRange* stage = p.add_stages();
    stage->set_first_layer(s.layers.begin);
    stage->set_end_layer(s.layers.end);
    stage->set_has_embedding(s.has_embedding);
    stage->set_has_lm_head(s.has_lm_head);
  }
  for (const TensorShard& t : plan.tensor) {
    cv1::TensorSlice* slice = p.add_tensor();
    SetRange(t.q_heads, slice->mutable_q_heads());
    SetRange(t.kv_heads, slice->mutable_kv_heads());
    SetRange(t.ffn, slice->mutable_ffn());
    SetRange(t.vocab, slice->mutable_vocab());
  }
  p.set_num_kv_blocks(plan.num_kv_blocks);
  p.set_summary(plan.ToString());
  return p;
}

absl::StatusOr<ShardPlan> FromShardPlanProto(const cv1::ShardPlan& p) {
  if (p.tp() < 1 || p.pp() < 1 || p.stages_size() != p.pp() || p.tensor_size() != p.tp()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the coordinator's shard plan has ", p.stages_size(), " stages and ",
                     p.tensor_size(), " tensor slices for tp ", p.tp(), " x pp ", p.pp()));
  }
  ShardPlan plan;
  plan.tp = p.tp();
  plan.pp = p.pp();
  plan.sequence_parallel = p.sequence_parallel();
  plan.block_size = p.block_size();
  for (const cv1::StageRange& s : p.stages()) {
    plan.stages.push_back({.layers = {s.first_layer(), s.end_layer()},
                           .has_embedding = s.has_embedding(),
                           .has_lm_head = s.has_lm_head()});
  }
  for (const cv1::TensorSlice& t : p.tensor()) {
    plan.tensor.push_back({.q_heads = GetRange(t.q_heads()),
                           .kv_heads = GetRange(t.kv_heads()),
                           .ffn = GetRange(t.ffn()),
                           .vocab = GetRange(t.vocab())});
  }
  plan.num_kv_blocks = p.num_kv_blocks();
  return plan;
}

cv1::Load ToLoadProto(const ReplicaLoad& load) {
  cv1::Load l;
  l.set_ready(load.ready);
  l.set_running_requests(load.running_requests);
  l.set_waiting_requests(load.waiting_requests);
  l.set_outstanding_tokens(load.outstanding_tokens);
  l.set_kv_blocks_used(load.kv_blocks_used);
  l.set_kv_blocks_total(load.kv_blocks_total);
  l.set_prefix_queried_blocks(load.prefix_queried_blocks);
  l.set_prefix_hit_blocks(load.prefix_hit_blocks);
  for (const ReplicaLoad::RankTimes& r : load.ranks) {
    cv1::RankTimes* t = l.add_ranks();
    t->set_rank(r.rank);
    t->set_steps(r.steps);
    t->set_step_seconds(r.step_seconds);
    t->set_compute_seconds(r.compute_seconds);
    t->set_communication_seconds(r.communication_seconds);
    t->set_bubble_seconds(r.bubble_seconds);
  }
  return l;
}

ReplicaLoad FromLoadProto(const cv1::Load& l) {
  ReplicaLoad load;
  load.ready = l.ready();
  load.running_requests = l.running_requests();
  load.waiting_requests = l.waiting_requests();
  load.outstanding_tokens = l.outstanding_tokens();
  load.kv_blocks_used = l.kv_blocks_used();
  load.kv_blocks_total = l.kv_blocks_total();
  load.prefix_queried_blocks = l.prefix_queried_blocks();
  load.prefix_hit_blocks = l.prefix_hit_blocks();
  for (const cv1::RankTimes& t : l.ranks()) {
    load.ranks.push_back({.rank = t.rank(),
                          .steps = t.steps(),
                          .step_seconds = t.step_seconds(),
                          .compute_seconds = t.compute_seconds(),
                          .communication_seconds = t.communication_seconds(),
                          .bubble_seconds = t.bubble_seconds()});
  }
  return load;
}

}  // namespace tessera
