// Scheduler: config validation, admission, cancellation, forks and lookups.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "engine/scheduler.h"

namespace tessera {

absl::Status ValidateSchedulerConfig(const SchedulerConfig& c) {
  auto positive = [](const char* field, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("SchedulerConfig.", field, " must be positive, got ", v));
  };
  for (auto [field, v] : {std::pair<const char*, int>{"block_size", c.block_size},
                          {"num_blocks", c.num_blocks},
                          {"max_model_len", c.max_model_len},
                          {"max_num_seqs", c.max_num_seqs},
                          {"max_num_batched_tokens", c.max_num_batched_tokens},
                          {"max_waiting_requests", c.max_waiting_requests},
                          {"max_steps_in_flight", c.max_steps_in_flight}}) {
    if (absl::Status s = positive(field, v); !s.ok()) return s;
  }
  if (c.num_host_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SchedulerConfig.num_host_blocks must be >= 0, got ", c.num_host_blocks));
  }
  if (c.max_num_batched_tokens < c.max_num_seqs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SchedulerConfig.max_num_batched_tokens (", c.max_num_batched_tokens,
        ") must be at least max_num_seqs (", c.max_num_seqs, ") so that every decode fits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(SchedulerConfig config) {
  if (absl::Status s = ValidateSchedulerConfig(config); !s.ok()) return s;
  return std::unique_ptr<Scheduler>(new Scheduler(config));
}

Scheduler::Scheduler(SchedulerConfig config)
    : config_(config),
      blocks_(config.num_blocks, config.block_size, config.enable_prefix_caching) {
  for (int b = config.num_host_blocks - 1; b >= 0; --b) host_free_.push_back(b);
}

Scheduler::~Scheduler() {
  if (groups_.empty() && in_flight_.empty()) {
    TESSERA_CHECK_MSG(blocks_.Usage().used == 0,
                      "KV blocks leaked: referenced after every request finished");
    TESSERA_CHECK_MSG(static_cast<int>(host_free_.size()) == config_.num_host_blocks,
                      "host swap blocks leaked after every request finished");
  }
}

absl::Status Scheduler::AddRequest(RequestSpec spec, absl::Time now) {
  const std::string id = spec.request_id;  // a copy: spec is moved below
  if (id.empty()) return absl::InvalidArgumentError("request.request_id is empty");
  const int64_t prompt = static_cast<int64_t>(spec.prompt_token_ids.size());
  if (prompt == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", id, ": prompt_token_ids is empty"));
  }
  if (spec.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", id, ": max_new_tokens must be at least 1, got ", spec.max_new_tokens));
  }
  if (spec.n < 1 || spec.n > config_.max_num_seqs) {
    return absl::InvalidArgumentError(absl::StrCat("request ", id, ": n = ", spec.n,
                                                   " must be in [1, max_num_seqs = ",
                                                   config_.max_num_seqs, "]"));
  }
  if (spec.decoding_width < 0 || spec.decoding_width > config_.max_num_seqs ||
      (spec.decoding_width > 0 && spec.n != 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", id, ": decoding_width = ", spec.decoding_width,
        " must be in [0, max_num_seqs = ", config_.max_num_seqs, "], with n = 1 (n is ", spec.n,
        ")"));
  }
  const int64_t total = prompt + spec.max_new_tokens;
  if (total > config_.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", id, ": prompt_token_ids (", prompt, " tokens) + max_new_tokens (",
        spec.max_new_tokens, ") = ", total, " exceeds the model's context length of ",
        config_.max_model_len, " tokens"));
  }
  if (!config_.enable_chunked_prefill && total > config_.max_num_batched_tokens) {
    // A recompute after preemption feeds prompt + generated tokens in one step.
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", id, ": prompt_token_ids (", prompt, " tokens) + max_new_tokens (",
        spec.max_new_tokens, ") = ", total, " exceeds max_num_batched_tokens (",
        config_.max_num_batched_tokens, ") and chunked prefill is off"));
  }
  // A sequence alone must fit: then the most urgent one can always preempt its way through.
  // A strategy-driven group must fit with all its sequences unshared (their rows are only
  // decided on together).
  const int64_t per_seq = (total + config_.block_size - 1) / config_.block_size;
  const int64_t need = per_seq * std::max(1, spec.decoding_width);
  if (need > config_.num_blocks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", id, ": prompt_token_ids (", prompt, " tokens) + max_new_tokens (",
        spec.max_new_tokens, ") = ", total, " tokens",
        spec.decoding_width > 0 ? absl::StrCat(" x ", spec.decoding_width, " sequences") : "",
        " need ", need, " KV blocks of ", config_.block_size,
        " tokens but the whole cache has ", config_.num_blocks, " blocks (",
        static_cast<int64_t>(config_.num_blocks) * config_.block_size, " tokens)"));
  }
  if (num_waiting() >= config_.max_waiting_requests) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", id, ": waiting queue is full (", num_waiting(), " of max_waiting_requests ",
        config_.max_waiting_requests, ")"));
  }
  if (groups_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("request_id ", id, " is already in use"));
  }
  std::vector<int32_t> prompt_ids = spec.prompt_token_ids;
  auto group = std::make_unique<SequenceGroup>(std::move(spec), now, next_arrival_index_++);
  Sequence* seq =
      group->AddSequence(std::make_unique<Sequence>(next_seq_id_++, std::move(prompt_ids)));
  group_of_[seq->id()] = group.get();
  InsertSorted(waiting_, seq);
  groups_[id] = std::move(group);
  return absl::OkStatus();
}

absl::Status Scheduler::Cancel(std::string_view request_id) {
  auto it = groups_.find(std::string(request_id));
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrFormat("Cancel: no unfinished request with request_id %s", request_id));
  }
  SequenceGroup* group = it->second.get();
  group->RequestCancel();
  // With its step in flight its blocks may be being written: a later Schedule frees them.
  if (!InFlight(group)) FinishGroup(group, FinishReason::kCancelled);
  return absl::OkStatus();
}

absl::StatusOr<SequenceId> Scheduler::ForkSequence(SequenceId parent) {
  RETURN_IF_ERROR(CheckNotInFlight(parent, "ForkSequence"));
  SequenceGroup* group = GroupOf(parent);
  Sequence* seq = group == nullptr ? nullptr : group->FindSequence(parent);
  if (seq == nullptr || seq->is_finished()) {
    return absl::NotFoundError(absl::StrCat("ForkSequence: no unfinished sequence ", parent));
  }
  if (seq->status() == SequenceStatus::kSwapped) {
    return absl::FailedPreconditionError(
        absl::StrCat("ForkSequence: sequence ", parent, " is swapped out"));
  }
  if (group->strategy_driven()) {
    int live = 0;
    for (const auto& s : group->sequences()) live += !s->is_finished();
    if (live >= group->spec().decoding_width) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "ForkSequence: request ", group->request_id(), " already has ", live,
          " live sequences (decoding_width ", group->spec().decoding_width, ")"));
    }
  } else if (seq->status() == SequenceStatus::kRunning &&
             SlotsInUse() >= config_.max_num_seqs) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "ForkSequence: ", SlotsInUse(), " sequence slots already in use (max_num_seqs ",
        config_.max_num_seqs, ")"));
  }
  Sequence* child = group->AddSequence(seq->Fork(next_seq_id_++));
  group_of_[child->id()] = group;
  blocks_.Fork(parent, child->id());
  InsertSorted(child->status() == SequenceStatus::kRunning ? running_ : waiting_, child);
  return child->id();
}

absl::Status Scheduler::FinishSequence(SequenceId seq_id, FinishReason reason) {
  RETURN_IF_ERROR(CheckNotInFlight(seq_id, "FinishSequence"));
  SequenceGroup* group = GroupOf(seq_id);
  Sequence* seq = group == nullptr ? nullptr : group->FindSequence(seq_id);
  if (seq == nullptr || seq->is_finished()) {
    return absl::NotFoundError(absl::StrCat("FinishSequence: no unfinished sequence ", seq_id));
  }
  FinishOne(seq, reason);
  RetireIfFinished(group);
  return absl::OkStatus();
}

absl::Status Scheduler::AppendToken(SequenceId seq_id, int32_t token) {
  RETURN_IF_ERROR(CheckNotInFlight(seq_id, "AppendToken"));
  SequenceGroup* group = GroupOf(seq_id);
  Sequence* seq = group == nullptr ? nullptr : group->FindSequence(seq_id);
  if (seq == nullptr || seq->is_finished()) {
    return absl::NotFoundError(absl::StrCat("AppendToken: no unfinished sequence ", seq_id));
  }
  if (!group->strategy_driven()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "AppendToken: request ", group->request_id(), " is not driven by a decoding strategy"));
  }
  if (seq->num_tokens() >= config_.max_model_len ||
      seq->num_generated() >= group->max_new_tokens()) {
    return absl::OutOfRangeError(absl::StrCat(
        "AppendToken: sequence ", seq_id, " already has ", seq->num_generated(),
        " generated tokens (max_new_tokens ", group->max_new_tokens(), ") and ",
        seq->num_tokens(), " in all (max_model_len ", config_.max_model_len, ")"));
  }
  if (seq->num_computed_tokens() < seq->num_tokens()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "AppendToken: sequence ", seq_id, " is not held (", seq->num_tokens() -
        seq->num_computed_tokens(), " of its tokens are not computed yet)"));
  }
  seq->AppendToken(token);
  return absl::OkStatus();
}

std::vector<RequestOutput> Scheduler::TakeFinished() {
  std::vector<RequestOutput> out;
  out.swap(finished_);
  return out;
}

const SequenceGroup* Scheduler::FindRequest(std::string_view request_id) const {
  auto it = groups_.find(std::string(request_id));
  return it == groups_.end() ? nullptr : it->second.get();
}

const Sequence* Scheduler::FindSequence(SequenceId seq) const {
  SequenceGroup* group = GroupOf(seq);
  return group == nullptr ? nullptr : group->FindSequence(seq);
}

absl::Status Scheduler::CheckNotInFlight(SequenceId seq, const char* what) const {
  const SequenceGroup* group = GroupOf(seq);
  if (group == nullptr || !InFlight(group)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      what, ": request ", group->request_id(), " (sequence ", seq, ") has a step in flight"));
}

SequenceGroup* Scheduler::GroupOf(SequenceId seq) const {
  auto it = group_of_.find(seq);
  return it == group_of_.end() ? nullptr : it->second;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s = stats_;
  s.prefix_queried_blocks = blocks_.prefix_queried_blocks();
  s.prefix_hit_blocks = blocks_.prefix_hit_blocks();
  return s;
}

bool Scheduler::RankLess(const Sequence* a, const Sequence* b) const {
  const SequenceGroup* ga = GroupOf(a->id());
  const SequenceGroup* gb = GroupOf(b->id());
  if (config_.policy == SchedulingPolicy::kPriority && ga->priority() != gb->priority()) {
    return ga->priority() < gb->priority();
  }
  if (ga->arrival_time() != gb->arrival_time()) return ga->arrival_time() < gb->arrival_time();
  if (ga->arrival_index() != gb->arrival_index()) return ga->arrival_index() < gb->arrival_index();
  return a->id() < b->id();
}

void Scheduler::InsertSorted(std::vector<Sequence*>& queue, Sequence* seq) {
  auto pos = std::upper_bound(queue.begin(), queue.end(), seq,
                              [this](const Sequence* a, const Sequence* b) { return RankLess(a, b); });
  queue.insert(pos, seq);
}

void Scheduler::FinishOne(Sequence* seq, FinishReason reason) {
  std::erase(waiting_, seq);
  std::erase(running_, seq);
  blocks_.Free(seq->id());
  ReleaseHostBlocks(seq->id());
  seq->Finish(reason);
}

void Scheduler::FinishGroup(SequenceGroup* group, FinishReason reason) {
  for (const auto& seq : group->sequences()) {
    if (!seq->is_finished()) FinishOne(seq.get(), reason);
  }
  RetireIfFinished(group);
}

void Scheduler::RetireIfFinished(SequenceGroup* group) {
  if (!group->IsFinished()) return;
  RequestOutput out;
  out.request_id = group->request_id();
  for (const auto& seq : group->sequences()) {
    group_of_.erase(seq->id());
    if (seq->finish_reason() == FinishReason::kPruned) continue;
    auto gen = seq->generated_token_ids();
    out.completions.push_back({.seq_id = seq->id(),
                               .generated_token_ids = std::vector<int32_t>(gen.begin(), gen.end()),
                               .finish_reason = seq->finish_reason()});
  }
  const std::string id = group->request_id();
  finished_.push_back(std::move(out));
  groups_.erase(id);  // destroys `group`
}

}  // namespace tessera
