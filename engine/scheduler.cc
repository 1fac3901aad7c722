// Scheduler: building a step (Schedule) and applying its results (Update).
#include "engine/scheduler.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera {

void Scheduler::Preempt(Sequence* seq, StepPlan& plan) {
  std::erase(running_, seq);
  const size_t needed =
      static_cast<size_t>(blocks_.BlocksForTokens(seq->num_computed_tokens()));
  const std::vector<BlockId>& table = blocks_.BlockTable(seq->id());
  if (config_.num_host_blocks > 0 && !GroupOf(seq->id())->strategy_driven() && needed > 0 &&
      needed <= table.size() && needed <= host_free_.size()) {
    // Swap out: the computed blocks go to host memory; the sequence keeps its progress.
    std::vector<BlockId>& host = host_tables_[seq->id()];
    for (size_t i = 0; i < needed; ++i) {
      host.push_back(host_free_.back());
      host_free_.pop_back();
      plan.swap_out.push_back({table[i], host.back()});
    }
    blocks_.Free(seq->id());
    seq->set_status(SequenceStatus::kSwapped);
    ++stats_.swaps_out;
  } else {
    blocks_.Free(seq->id());
    seq->set_num_computed_tokens(0);
    seq->set_status(SequenceStatus::kPreempted);
  }
  seq->CountPreemption();
  InsertSorted(waiting_, seq);
  plan.preempted.push_back(seq->id());
  ++stats_.preemptions;
}

size_t Scheduler::PreemptForWaiting(StepPlan& plan) {
  if (config_.policy != SchedulingPolicy::kPriority || waiting_.empty()) return 0;
  Sequence* urgent = waiting_.front();
  const SequenceGroup* group = GroupOf(urgent->id());
  // A strategy-driven group's width is reserved at admission anyway; a group in flight is
  // scheduled once its step lands.
  if (group->strategy_driven() || InFlight(group)) return 0;
  const int need = blocks_.BlocksForTokens(std::min(
      urgent->num_tokens(), urgent->num_computed_tokens() + config_.max_num_batched_tokens));
  const int slots = group->ReservedSlots(RunningMembers(group) + 1) -
                    group->ReservedSlots(RunningMembers(group));
  while (need > blocks_.num_available_blocks() || SlotsInUse() + slots > config_.max_num_seqs) {
    // The lowest-ranked running sequence below `urgent`, skipping strategy-driven groups
    // (preempted whole or not at all, and only when the cache runs out) and those in flight.
    Sequence* victim = nullptr;
    for (auto it = running_.rbegin(); it != running_.rend() && RankLess(urgent, *it); ++it) {
      const SequenceGroup* g = GroupOf((*it)->id());
      if (!g->strategy_driven() && !InFlight(g)) {
        victim = *it;
        break;
      }
    }
    if (victim == nullptr) break;
    Preempt(victim, plan);
  }
  return plan.preempted.size();
}

bool Scheduler::SwapIn(Sequence* seq, int num_new, StepPlan& plan) {
  const int computed = seq->num_computed_tokens();
  if (!blocks_.AllocateSlots(seq->id(), 0, computed + num_new)) return false;
  const std::vector<BlockId>& table = blocks_.BlockTable(seq->id());
  auto host = host_tables_.find(seq->id());
  TESSERA_CHECK(host != host_tables_.end() && host->second.size() <= table.size());
  for (size_t i = 0; i < host->second.size(); ++i) {
    plan.swap_in.push_back({host->second[i], table[i]});
  }
  ReleaseHostBlocks(seq->id());
  ++stats_.swaps_in;
  return true;
}

void Scheduler::ReleaseHostBlocks(SequenceId seq) {
  auto host = host_tables_.find(seq);
  if (host == host_tables_.end()) return;
  for (BlockId b : host->second) host_free_.push_back(b);
  host_tables_.erase(host);
}

int Scheduler::SlotsInUse() const {
  absl::flat_hash_map<const SequenceGroup*, int> running_members;
  for (const Sequence* seq : running_) ++running_members[GroupOf(seq->id())];
  int slots = 0;
  for (const auto& [group, members] : running_members) slots += group->ReservedSlots(members);
  return slots;
}

int Scheduler::RunningMembers(const SequenceGroup* group) const {
  int members = 0;
  for (const auto& seq : group->sequences()) members += seq->status() == SequenceStatus::kRunning;
  return members;
}

Sequence* Scheduler::PreemptionVictim(const Sequence* keep) const {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (*it == keep) return nullptr;
    if (!InFlight(GroupOf((*it)->id()))) return *it;
  }
  return nullptr;
}

int Scheduler::SequencesPerPlan() const {
  const int live = static_cast<int>(running_.size() + waiting_.size());
  const int share = config_.max_steps_in_flight;
  return std::max(1, (live + share - 1) / share);
}

void Scheduler::ScheduleEntry(Sequence* seq, int num_computed, int num_new, StepPlan& plan) {
  const SequenceGroup* group = GroupOf(seq->id());
  ScheduledSequence entry;
  entry.seq_id = seq->id();
  entry.request_id = group->request_id();
  auto tokens = seq->token_ids().subspan(num_computed, num_new);
  entry.token_ids.assign(tokens.begin(), tokens.end());
  entry.start_position = num_computed;
  entry.is_prefill = seq->num_tokens() - num_computed > 1;
  entry.needs_logits = num_computed + num_new == seq->num_tokens();
  entry.num_samples = entry.needs_logits && !group->forked() ? group->spec().n : 1;
  entry.num_generated = seq->num_generated();
  entry.wants_hidden_states = group->spec().wants_hidden_states;
  plan.num_batched_tokens += num_new;
  plan.sequences.push_back(std::move(entry));
}

absl::StatusOr<StepPlan> Scheduler::Schedule(absl::Time now) {
  if (static_cast<int>(in_flight_.size()) >= config_.max_steps_in_flight) {
    return absl::FailedPreconditionError(
        absl::StrCat("Schedule called with ", in_flight_.size(),
                     " steps awaiting Update (max_steps_in_flight ", config_.max_steps_in_flight,
                     ")"));
  }
  // Cancellations and deadlines, in arrival order (a request in flight ends once it lands).
  std::vector<SequenceGroup*> ending;
  for (const auto& [id, group] : groups_) {
    if ((group->cancel_requested() || group->deadline() <= now) && !InFlight(group.get())) {
      ending.push_back(group.get());
    }
  }
  std::sort(ending.begin(), ending.end(), [](const SequenceGroup* a, const SequenceGroup* b) {
    return a->arrival_index() < b->arrival_index();
  });
  for (SequenceGroup* group : ending) {
    FinishGroup(group, group->cancel_requested() ? FinishReason::kCancelled
                                                 : FinishReason::kDeadline);
  }

  StepPlan plan;
  plan.step_index = next_step_;
  plan.block_size = config_.block_size;
  // Under the priority policy a waiting request that outranks running ones takes their
  // room: they are preempted (their outputs unchanged) until it fits.
  const size_t preempted_for_priority = PreemptForWaiting(plan);
  int budget = config_.max_num_batched_tokens;
  // With several plans in flight each takes a share of the sequences; a group once in this
  // plan stays whole.
  const size_t per_plan = static_cast<size_t>(SequencesPerPlan());
  absl::flat_hash_set<const SequenceGroup*> in_plan;
  auto plan_full = [&](const SequenceGroup* group) {
    return plan.sequences.size() >= per_plan && !in_plan.contains(group);
  };
  // Decodes not yet scheduled: prefill chunks leave room for them.
  int pending_decodes = 0;
  for (const Sequence* seq : running_) {
    pending_decodes += seq->num_uncomputed_tokens() == 1 && !InFlight(GroupOf(seq->id()));
  }

  // Running sequences in rank order; victims come from the back (not yet visited).
  for (size_t i = 0; i < running_.size();) {
    Sequence* seq = running_[i];
    const SequenceGroup* group = GroupOf(seq->id());
    if (InFlight(group) || plan_full(group)) {
      pending_decodes -= seq->num_uncomputed_tokens() == 1 && !InFlight(group);
      ++i;
      continue;
    }
    const int remaining = seq->num_uncomputed_tokens();
    if (remaining == 0) {  // held: its strategy has not decided its next token yet
      TESSERA_CHECK(group->strategy_driven());
      ++i;
      continue;
    }
    const bool decode = remaining == 1;
    if (decode) --pending_decodes;
    const int num_new = decode ? 1 : std::min(remaining, budget - pending_decodes);
    if (num_new <= 0 || num_new > budget) {
      ++i;
      continue;
    }
    bool allocated = false;
    while (!(allocated = blocks_.AllocateSlots(seq->id(), seq->num_computed_tokens(), num_new))) {
      Sequence* victim = PreemptionVictim(seq);
      if (victim == nullptr) break;
      if (victim->num_uncomputed_tokens() == 1) --pending_decodes;
      Preempt(victim, plan);
    }
    if (!allocated) {
      Preempt(seq, plan);  // the lowest-ranked one left; it waits for room
      continue;
    }
    ScheduleEntry(seq, seq->num_computed_tokens(), num_new, plan);
    in_plan.insert(group);
    budget -= num_new;
    ++i;
  }

  // Waiting sequences in rank order, unless running ones had to be preempted for room this
  // step (there is none to spare).
  int slots_in_use = SlotsInUse();
  size_t w = 0;  // waiting_[w] is next; those before it are in flight
  while (plan.preempted.size() == preempted_for_priority && w < waiting_.size() && budget > 0) {
    Sequence* seq = waiting_[w];
    const SequenceGroup* group = GroupOf(seq->id());
    if (InFlight(group)) {
      ++w;
      continue;
    }
    if (plan_full(group)) break;
    const int members = RunningMembers(group);
    const int slots = group->ReservedSlots(members + 1) - group->ReservedSlots(members);
    if (slots_in_use + slots > config_.max_num_seqs) break;
    if (seq->status() == SequenceStatus::kSwapped) {
      const int remaining = seq->num_uncomputed_tokens();
      const int num_new = std::min(remaining, budget);
      if (num_new < remaining && !config_.enable_chunked_prefill) break;
      if (!SwapIn(seq, num_new, plan)) break;
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(w));
      seq->set_status(SequenceStatus::kRunning);
      InsertSorted(running_, seq);
      ScheduleEntry(seq, seq->num_computed_tokens(), num_new, plan);
      in_plan.insert(group);
      budget -= num_new;
      slots_in_use += slots;
      continue;
    }
    // A request that needs every prompt position's hidden state (contrastive search) must
    // compute them all: cached KV blocks would skip those positions.
    const PrefixMatch match = group->spec().wants_hidden_states
                                  ? PrefixMatch{}
                                  : blocks_.MatchPrefix(seq->token_ids());
    const int computed = static_cast<int>(match.blocks.size()) * config_.block_size;
    const int remaining = seq->num_tokens() - computed;
    const int num_new = std::min(remaining, budget);
    if (num_new < remaining && !config_.enable_chunked_prefill) break;
    if (!blocks_.AllocateSlots(seq->id(), computed, num_new, &match)) break;
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(w));
    seq->set_num_computed_tokens(computed);
    seq->set_status(SequenceStatus::kRunning);
    InsertSorted(running_, seq);
    ScheduleEntry(seq, computed, num_new, plan);
    in_plan.insert(group);
    budget -= num_new;
    slots_in_use += slots;
  }

  // Tables are final only now (copy-on-write may have moved blocks).
  for (ScheduledSequence& entry : plan.sequences) entry.block_table = blocks_.BlockTable(entry.seq_id);
  plan.block_copies = blocks_.TakePendingCopies();
  ++stats_.steps;
  stats_.scheduled_tokens += plan.num_batched_tokens;
  ++next_step_;
  if (!plan.empty()) {
    for (const SequenceGroup* group : in_plan) groups_in_flight_.insert(group);
    in_flight_.push_back(plan);
  }
  return plan;
}

absl::Status Scheduler::Update(const StepResult& result, std::vector<SampleFork>* forks) {
  if (in_flight_.empty()) {
    return absl::FailedPreconditionError("Update called with no step in flight");
  }
  const StepPlan& plan = in_flight_.front();
  if (result.step_index != plan.step_index) {
    return absl::InvalidArgumentError(
        absl::StrCat("StepResult.step_index is ", result.step_index,
                     ", the oldest step in flight is ", plan.step_index));
  }
  absl::flat_hash_map<SequenceId, const ScheduledSequence*> entries;
  for (const ScheduledSequence& e : plan.sequences) entries[e.seq_id] = &e;
  absl::flat_hash_map<SequenceId, const SequenceOutput*> outputs;
  for (size_t i = 0; i < result.outputs.size(); ++i) {
    const SequenceOutput& out = result.outputs[i];
    auto it = entries.find(out.seq_id);
    const std::string field = absl::StrCat("StepResult.outputs[", i, "]");
    if (it == entries.end() || !it->second->needs_logits) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".seq_id ", out.seq_id, " did not need logits in step ", plan.step_index));
    }
    if (!outputs.emplace(out.seq_id, &out).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".seq_id ", out.seq_id, " repeated"));
    }
    const size_t want = it->second->num_samples;
    const bool held = out.tokens.empty() && GroupOf(out.seq_id)->strategy_driven();
    const bool ok = out.tokens.size() == want ||
                    (out.tokens.empty() && out.finish != FinishReason::kNone) || held;
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".tokens has ", out.tokens.size(),
                                                     " tokens, expected ", want));
    }
  }
  for (const ScheduledSequence& e : plan.sequences) {
    if (e.needs_logits && !outputs.contains(e.seq_id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("StepResult.outputs lacks sequence ", e.seq_id, " which needed logits"));
    }
  }
  // The plan's groups land first: applying outputs may retire (destroy) them.
  for (const ScheduledSequence& e : plan.sequences) {
    if (const SequenceGroup* group = GroupOf(e.seq_id); group != nullptr) {
      groups_in_flight_.erase(group);
    }
  }
  for (const ScheduledSequence& e : plan.sequences) {
    auto it = outputs.find(e.seq_id);
    ApplyOutput(e, it == outputs.end() ? nullptr : it->second, forks);
  }
  in_flight_.pop_front();
  return absl::OkStatus();
}

void Scheduler::ApplyOutput(const ScheduledSequence& entry, const SequenceOutput* output,
                            std::vector<SampleFork>* forks) {
  SequenceGroup* group = GroupOf(entry.seq_id);
  Sequence* seq = group == nullptr ? nullptr : group->FindSequence(entry.seq_id);
  // Finished meanwhile (FinishSequence); a cancelled group ends at the next Schedule.
  if (seq == nullptr || seq->is_finished()) return;
  const int computed = entry.start_position + static_cast<int>(entry.token_ids.size());
  seq->set_num_computed_tokens(computed);
  blocks_.CacheComputedBlocks(seq->id(), seq->token_ids(), computed);
  if (output == nullptr) return;
  std::vector<Sequence*> touched = {seq};
  if (entry.num_samples > 1 && !output->tokens.empty()) {
    for (int k = 1; k < entry.num_samples; ++k) {
      Sequence* child = group->AddSequence(seq->Fork(next_seq_id_++));
      group_of_[child->id()] = group;
      blocks_.Fork(seq->id(), child->id());
      InsertSorted(running_, child);
      child->AppendToken(output->tokens[k]);
      touched.push_back(child);
      if (forks != nullptr) forks->push_back({.parent = seq->id(), .sample = k, .child = child->id()});
    }
  }
  if (entry.num_samples > 1) group->set_forked();
  if (!output->tokens.empty()) seq->AppendToken(output->tokens[0]);
  if (output->finish != FinishReason::kNone) FinishOne(seq, output->finish);
  for (Sequence* s : touched) CheckLength(s);
  RetireIfFinished(group);
}

void Scheduler::CheckLength(Sequence* seq) {
  if (seq->is_finished()) return;
  const SequenceGroup* group = GroupOf(seq->id());
  if (group->strategy_driven()) return;  // the strategy decides when its sequences end
  const auto& stops = group->spec().stop_token_ids;
  if (seq->num_generated() > 0 &&
      std::find(stops.begin(), stops.end(), seq->last_token()) != stops.end()) {
    FinishOne(seq, FinishReason::kStop);
  } else if (seq->num_generated() >= group->max_new_tokens() ||
             seq->num_tokens() >= config_.max_model_len) {
    FinishOne(seq, FinishReason::kLength);
  }
}

}  // namespace tessera
