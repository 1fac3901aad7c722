#include "engine/sequence.h"

#include <utility>

namespace tessera {

std::string_view SequenceStatusName(SequenceStatus status) {
  switch (status) {
    case SequenceStatus::kWaiting: return "waiting";
    case SequenceStatus::kRunning: return "running";
    case SequenceStatus::kPreempted: return "preempted";
    case SequenceStatus::kSwapped: return "swapped";
    case SequenceStatus::kFinished: return "finished";
  }
  return "unknown";
}

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kDeadline: return "deadline";
    case FinishReason::kAborted: return "aborted";
    case FinishReason::kPruned: return "pruned";
  }
  return "unknown";
}

Sequence::Sequence(SequenceId id, std::vector<int32_t> prompt_token_ids)
    : id_(id),
      token_ids_(std::move(prompt_token_ids)),
      prompt_len_(static_cast<int>(token_ids_.size())) {}

std::unique_ptr<Sequence> Sequence::Fork(SequenceId child_id) const {
  auto child = std::make_unique<Sequence>(*this);
  child->id_ = child_id;
  return child;
}

SequenceGroup::SequenceGroup(RequestSpec spec, absl::Time arrival_time, int64_t arrival_index)
    : spec_(std::move(spec)),
      arrival_time_(arrival_time),
      arrival_index_(arrival_index),
      forked_(spec_.n <= 1) {}

Sequence* SequenceGroup::AddSequence(std::unique_ptr<Sequence> seq) {
  sequences_.push_back(std::move(seq));
  return sequences_.back().get();
}

Sequence* SequenceGroup::FindSequence(SequenceId id) const {
  for (const auto& seq : sequences_) {
    if (seq->id() == id) return seq.get();
  }
  return nullptr;
}

int SequenceGroup::ReservedSlots(int running_members) const {
  if (running_members == 0) return 0;
  if (strategy_driven()) return spec_.decoding_width;
  return forked_ ? running_members : spec_.n;
}

bool SequenceGroup::IsFinished() const {
  for (const auto& seq : sequences_) {
    if (!seq->is_finished()) return false;
  }
  return true;
}

}  // namespace tessera
