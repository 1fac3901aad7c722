#include "worker/stage_runner.h"

#include <algorithm>
#include <memory>
#include <span>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "parallel/stage_link.h"

namespace tessera {
namespace {

constexpr int kLogitsTag = 201;
constexpr int kHiddenTag = 202;

}  // namespace

StepWork SliceSequences(const StepWork& work, size_t begin, size_t end) {
  StepWork out;
  const int64_t first_row = work.sequences[begin].query_start;
  const int64_t last_row =
      work.sequences[end - 1].query_start + work.sequences[end - 1].num_queries;
  out.token_ids.assign(work.token_ids.begin() + first_row, work.token_ids.begin() + last_row);
  out.positions.assign(work.positions.begin() + first_row, work.positions.begin() + last_row);
  for (size_t s = begin; s < end; ++s) {
    StepWork::Sequence seq = work.sequences[s];
    seq.query_start -= first_row;
    out.sequences.push_back(std::move(seq));
  }
  for (int64_t r : work.logits_rows) {
    if (r >= first_row && r < last_row) out.logits_rows.push_back(r - first_row);
  }
  for (int64_t r : work.hidden_rows) {
    if (r >= first_row && r < last_row) out.hidden_rows.push_back(r - first_row);
  }
  return out;
}

std::vector<std::pair<size_t, size_t>> SplitMicroBatches(const StepWork& work, int parts) {
  std::vector<std::pair<size_t, size_t>> out;
  const size_t n = work.sequences.size();
  if (n == 0) return out;
  const size_t k = std::clamp<size_t>(static_cast<size_t>(std::max(parts, 1)), 1, n);
  const int64_t rows = static_cast<int64_t>(work.token_ids.size());
  size_t begin = 0;
  for (size_t part = 0; part < k; ++part) {
    // The first sequence past this part's share of the rows, leaving one per later part.
    const int64_t target = rows * static_cast<int64_t>(part + 1) / static_cast<int64_t>(k);
    size_t end = begin + 1;
    while (end < n - (k - part - 1) && work.sequences[end].query_start < target) {
      ++end;
    }
    if (part + 1 == k) end = n;
    out.emplace_back(begin, end);
    begin = end;
  }
  return out;
}

template <typename F>
absl::Status StageRunner::Timed(double* seconds, F call) {
  const absl::Time start = absl::Now();
  absl::Status status = call();
  *seconds += absl::ToDoubleSeconds(absl::Now() - start);
  return status;
}

template <typename F>
absl::Status StageRunner::TimedStep(F call) {
  const absl::Duration collectives_before =
      role_.tensor_timer != nullptr ? role_.tensor_timer->spent() : absl::ZeroDuration();
  absl::Status status = Timed(&times_.step_seconds, call);
  if (role_.tensor_timer != nullptr) {
    times_.communication_seconds +=
        absl::ToDoubleSeconds(role_.tensor_timer->spent() - collectives_before);
  }
  return status;
}

absl::Status StageRunner::Run(const StepWork& work, PagedKvCache& cache,
                              std::optional<PagedKvCache>& host, std::vector<float>* logits,
                              std::vector<float>* hidden) {
  RETURN_IF_ERROR(Launch(work, cache, host));
  return Finish(logits, hidden);
}

absl::Status StageRunner::Launch(const StepWork& work, PagedKvCache& cache,
                                 std::optional<PagedKvCache>& host) {
  if (work.has_forward()) ++times_.steps;
  Launched launched;
  RETURN_IF_ERROR(TimedStep([&] { return LaunchStep(work, cache, host, launched); }));
  in_flight_.push_back(std::move(launched));
  return absl::OkStatus();
}

absl::Status StageRunner::Finish(std::vector<float>* logits, std::vector<float>* hidden,
                                 LogitsSelection* selection) {
  if (in_flight_.empty()) return absl::FailedPreconditionError("StageRunner: no step in flight");
  Launched launched = std::move(in_flight_.front());
  in_flight_.pop_front();
  return TimedStep([&] { return FinishStep(launched, logits, hidden, selection); });
}

absl::Status StageRunner::LaunchStep(const StepWork& work, PagedKvCache& cache,
                                     std::optional<PagedKvCache>& host, Launched& launched) {
  if (!pipelined()) {
    return RunStepWork(work, *model_, cache, host, &launched.logits, &launched.hidden,
                       &launched.selection);
  }
  RETURN_IF_ERROR(sending_.Reap());
  RETURN_IF_ERROR(MoveKvBlocks(work, *model_, cache, host));
  if (!work.has_forward()) return absl::OkStatus();

  const StageShard& stage = model_->stage();
  const int64_t width = model_->config().hidden_size;
  const int world_rank = role_.world->rank();
  const bool returns_logits = stage.has_lm_head && world_rank == role_.last_stage_leader;
  StageLink link(role_.pipeline);
  const std::vector<std::pair<size_t, size_t>> parts = SplitMicroBatches(work, role_.micro_batches);
  for (size_t k = 0; k < parts.size(); ++k) {
    const StepWork part = SliceSequences(work, parts[k].first, parts[k].second);
    launched.returned_rows.emplace_back(part.logits_rows.size(), part.hidden_rows.size());
    const int64_t rows = static_cast<int64_t>(part.token_ids.size());
    std::optional<Activations> input;
    if (!stage.has_embedding) {
      RETURN_IF_ERROR(Timed(&times_.bubble_seconds, [&]() -> absl::Status {
        ASSIGN_OR_RETURN(input, link.ReceivePrevious());
        return absl::OkStatus();
      }));
      if (input->micro_batch != static_cast<int64_t>(k) || input->rows != rows ||
          input->cols != width) {
        return absl::DataLossError(absl::StrCat("pipeline: expected micro-batch ", k, " of ", rows,
                                                " x ", width, ", got ", input->micro_batch, " of ",
                                                input->rows, " x ", input->cols));
      }
    }
    std::vector<PagedSequence> sequences;
    const PagedBatch batch = part.View(sequences);
    StageIo io;
    if (input.has_value()) io.input = input->data;
    io.output = &activations_;
    std::vector<float> part_logits, part_hidden;
    RETURN_IF_ERROR(model_->ForwardPaged(batch, cache, &part_logits, &part_hidden, io));
    RETURN_IF_ERROR(Timed(&times_.communication_seconds, [&]() -> absl::Status {
      if (link.has_next()) {
        Activations out{static_cast<int64_t>(k), rows, width, std::move(activations_)};
        const absl::Status sent = link.StartSendNext(out, &sending_);
        activations_ = std::move(out.data);
        return sent;
      }
      if (!returns_logits || world_rank == 0) return absl::OkStatus();
      // The last stage hands each micro-batch's rows to the leader (world rank 0).
      for (auto [rows_out, tag] : {std::pair{&part_logits, kLogitsTag}, std::pair{&part_hidden, kHiddenTag}}) {
        if (rows_out->empty()) continue;
        const auto bytes = std::as_bytes(std::span(*rows_out));
        ASSIGN_OR_RETURN(std::unique_ptr<PendingSend> send,
                         role_.world->StartSend({bytes.begin(), bytes.end()}, 0, tag));
        sending_.Add(std::move(send));
      }
      return absl::OkStatus();
    }));
    if (returns_logits && world_rank == 0) {  // one stage alone: not reached with a pipeline
      launched.logits.insert(launched.logits.end(), part_logits.begin(), part_logits.end());
      launched.hidden.insert(launched.hidden.end(), part_hidden.begin(), part_hidden.end());
    }
  }
  return absl::OkStatus();
}

absl::Status StageRunner::FinishStep(Launched& launched, std::vector<float>* logits,
                                     std::vector<float>* hidden, LogitsSelection* selection) {
  if (role_.world != nullptr && role_.world->rank() != 0) return sending_.Reap();
  if (selection != nullptr) *selection = std::move(launched.selection);
  if (!pipelined() || model_->stage().has_lm_head) {
    *logits = std::move(launched.logits);
    *hidden = std::move(launched.hidden);
    return absl::OkStatus();
  }
  // The logits come back from the last stage: waiting for them is the leader's share of
  // the pipeline's bubble.
  const size_t vocab = static_cast<size_t>(model_->config().vocab_size);
  const size_t width = static_cast<size_t>(model_->config().hidden_size);
  logits->clear();
  hidden->clear();
  return Timed(&times_.bubble_seconds, [&]() -> absl::Status {
    for (const auto& [logits_rows, hidden_rows] : launched.returned_rows) {
      for (auto [out, count, tag] : {std::tuple{logits, logits_rows * vocab, kLogitsTag},
                                     std::tuple{hidden, hidden_rows * width, kHiddenTag}}) {
        if (count == 0) continue;
        const size_t at = out->size();
        out->resize(at + count);
        RETURN_IF_ERROR(role_.world->Recv(
            std::as_writable_bytes(std::span(out->data() + at, count)), role_.last_stage_leader,
            tag));
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace tessera
