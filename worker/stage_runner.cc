#include "worker/stage_runner.h"

#include <algorithm>
#include <span>
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

absl::Status StageRunner::Run(const StepWork& work, PagedKvCache& cache,
                              std::optional<PagedKvCache>& host, std::vector<float>* logits,
                              std::vector<float>* hidden) {
  const absl::Duration collectives_before =
      role_.tensor_timer != nullptr ? role_.tensor_timer->spent() : absl::ZeroDuration();
  double seconds = 0;
  absl::Status status = Timed(&seconds, [&] { return RunStep(work, cache, host, logits, hidden); });
  if (work.has_forward()) {
    ++times_.steps;
    times_.step_seconds += seconds;
    if (role_.tensor_timer != nullptr) {
      times_.communication_seconds +=
          absl::ToDoubleSeconds(role_.tensor_timer->spent() - collectives_before);
    }
  }
  return status;
}

absl::Status StageRunner::RunStep(const StepWork& work, PagedKvCache& cache,
                                  std::optional<PagedKvCache>& host, std::vector<float>* logits,
                                  std::vector<float>* hidden) {
  if (!pipelined()) return RunStepWork(work, *model_, cache, host, logits, hidden);
  RETURN_IF_ERROR(MoveKvBlocks(work, *model_, cache, host));
  if (!work.has_forward()) return absl::OkStatus();

  const StageShard& stage = model_->stage();
  const int64_t width = model_->config().hidden_size;
  const int world_rank = role_.world->rank();
  StageLink link(role_.pipeline);
  const std::vector<std::pair<size_t, size_t>> parts = SplitMicroBatches(work, role_.micro_batches);
  std::vector<std::vector<float>> part_logits(parts.size()), part_hidden(parts.size());
  std::vector<StepWork> slices;
  for (size_t k = 0; k < parts.size(); ++k) {
    slices.push_back(SliceSequences(work, parts[k].first, parts[k].second));
    const StepWork& part = slices.back();
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
    RETURN_IF_ERROR(model_->ForwardPaged(batch, cache, &part_logits[k], &part_hidden[k], io));
    if (link.has_next()) {
      RETURN_IF_ERROR(Timed(&times_.communication_seconds, [&] {
        return link.SendNext({static_cast<int64_t>(k), rows, width, activations_});
      }));
    }
  }

  // The logits come back to the leader (world rank 0, on the first stage).
  const int64_t vocab = model_->config().vocab_size;
  if (stage.has_lm_head && world_rank == role_.last_stage_leader && world_rank != 0) {
    RETURN_IF_ERROR(Timed(&times_.communication_seconds, [&]() -> absl::Status {
      for (size_t k = 0; k < parts.size(); ++k) {
        RETURN_IF_ERROR(role_.world->Send(std::as_bytes(std::span(part_logits[k])), 0, kLogitsTag));
        if (!slices[k].hidden_rows.empty()) {
          RETURN_IF_ERROR(
              role_.world->Send(std::as_bytes(std::span(part_hidden[k])), 0, kHiddenTag));
        }
      }
      return absl::OkStatus();
    }));
  }
  if (world_rank != 0) return absl::OkStatus();
  logits->clear();
  hidden->clear();
  for (size_t k = 0; k < parts.size(); ++k) {
    std::vector<float> l(slices[k].logits_rows.size() * static_cast<size_t>(vocab));
    std::vector<float> h(slices[k].hidden_rows.size() * static_cast<size_t>(width));
    if (stage.has_lm_head) {  // one stage alone (not reached with a pipeline) or this rank
      l = std::move(part_logits[k]);
      h = std::move(part_hidden[k]);
    } else {
      // Waiting for the last stage: the leader's share of the pipeline's bubble.
      RETURN_IF_ERROR(Timed(&times_.bubble_seconds, [&]() -> absl::Status {
        RETURN_IF_ERROR(role_.world->Recv(std::as_writable_bytes(std::span(l)),
                                          role_.last_stage_leader, kLogitsTag));
        if (!h.empty()) {
          RETURN_IF_ERROR(role_.world->Recv(std::as_writable_bytes(std::span(h)),
                                            role_.last_stage_leader, kHiddenTag));
        }
        return absl::OkStatus();
      }));
    }
    logits->insert(logits->end(), l.begin(), l.end());
    hidden->insert(hidden->end(), h.begin(), h.end());
  }
  return absl::OkStatus();
}

}  // namespace tessera
