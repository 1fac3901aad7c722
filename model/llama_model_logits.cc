// LlamaModel's LM head outputs: the logits rows to the host, or reduced on the backend as a
// LogitsSelection asks (llama_model.h, logits_selection.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/row_nucleus.h"
#include "common/status_macros.h"
#include "model/llama_model.h"

namespace tessera {
namespace {

// The wants' edits (LogitsRowWant::edits) applied to the rows `all` [rows, vocab] where they
// are, for SelectFromLogits. Rows that report logprobs get the raw row's first: its
// log-normalizer and most likely tokens, and the values the edits replace; a row whose raw
// row cannot give them (a NaN, +inf, or more ties at its largest value than the room for
// them) is left unedited and marked `whole`, to come back raw.
absl::Status EditRows(Backend& backend, float* all, int64_t rows, int64_t vocab,
                      LogitsSelection* selection, std::vector<bool>& whole) {
  const std::vector<LogitsRowWant>& wants = selection->wants;
  const size_t n = static_cast<size_t>(rows);
  const auto raw_logprobs = [&](size_t r) {
    return !wants[r].edits.empty() && wants[r].logprobs >= 0;
  };
  std::vector<bool> skip(n, false);
  bool any_raw_logprobs = false;
  for (size_t r = 0; r < n; ++r) any_raw_logprobs = any_raw_logprobs || raw_logprobs(r);
  if (any_raw_logprobs) {
    std::vector<int32_t> k(n, 0);
    std::vector<float> temperature(n, 1.0f), sum_temperature(n, 0.0f);
    int64_t capacity = 0;
    for (size_t r = 0; r < n; ++r) {
      if (!raw_logprobs(r)) continue;
      // At least 1: still tells a NaN row, and gives the max.
      k[r] = static_cast<int32_t>(std::min(std::max<int64_t>(wants[r].logprobs, 1), vocab));
      sum_temperature[r] = 1.0f;
      capacity = std::max<int64_t>(capacity, k[r] + kTopKTieRoom);
    }
    capacity = std::min(capacity, vocab);
    std::vector<int32_t> ids(n * static_cast<size_t>(capacity)), counts(n);
    std::vector<float> values(ids.size());
    std::vector<double> sums(n, 0.0);
    RETURN_IF_ERROR(backend.TopKRows(all, rows, vocab, k, temperature, capacity, ids.data(),
                                     values.data(), counts.data()));
    RETURN_IF_ERROR(backend.SoftmaxDenominators(all, rows, vocab, sum_temperature, sums.data()));
    for (size_t r = 0; r < n; ++r) {
      if (!raw_logprobs(r)) continue;
      // A finite max gives a sum of at least 1; 0 means +inf (or no finite value).
      if (counts[r] < 1 || counts[r] > capacity || !(sums[r] > 0)) {
        skip[r] = whole[r] = true;
        continue;
      }
      const auto first = static_cast<std::ptrdiff_t>(r * static_cast<size_t>(capacity));
      TopKCandidates& raw = selection->raw_candidates[r];
      raw.ids.assign(ids.begin() + first, ids.begin() + first + counts[r]);
      raw.values.assign(values.begin() + first, values.begin() + first + counts[r]);
      selection->log_normalizers[r] =
          static_cast<double>(*std::max_element(raw.values.begin(), raw.values.end())) +
          std::log(sums[r]);
    }
  }
  std::vector<LogitEdit> edits;
  for (size_t r = 0; r < n; ++r) {
    if (skip[r]) continue;
    for (LogitEdit edit : wants[r].edits) {
      edit.row = static_cast<int32_t>(r);
      edits.push_back(edit);
    }
  }
  if (edits.empty()) return absl::OkStatus();
  std::vector<float> previous(edits.size());
  RETURN_IF_ERROR(backend.EditLogits(all, rows, vocab, edits, previous.data()));
  auto replaced = previous.begin();
  for (size_t r = 0; r < n; ++r) {
    if (skip[r] || wants[r].edits.empty()) continue;
    selection->edited[r] = true;
    const auto count = static_cast<std::ptrdiff_t>(wants[r].edits.size());
    selection->unedited[r].assign(replaced, replaced + count);
    replaced += count;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LlamaModel::LmHeadToHost(const float* normed, int64_t rows, float* logits) {
  if (backend_->host_addressable()) return LmHead(normed, rows, logits);
  const size_t bytes = static_cast<size_t>(rows * config_.vocab_size) * sizeof(float);
  ASSIGN_OR_RETURN(float* device_logits, Floats(&outputs_, rows * config_.vocab_size));
  RETURN_IF_ERROR(LmHead(normed, rows, device_logits));
  return backend_->CopyFromBackend(logits, device_logits, bytes);
}

absl::Status LlamaModel::LmHeadSelect(const float* normed, int64_t rows,
                                      LogitsSelection* selection, std::vector<float>* logits) {
  ASSIGN_OR_RETURN(float* all, Floats(&outputs_, rows * config_.vocab_size));
  RETURN_IF_ERROR(LmHead(normed, rows, all));
  return SelectFromLogits(all, rows, selection, logits);
}

absl::Status LlamaModel::SelectFromLogits(float* all, int64_t rows,
                                          LogitsSelection* selection,
                                          std::vector<float>* logits) {
  using Kind = LogitsRowWant::Kind;
  const int64_t vocab = config_.vocab_size;
  const size_t n = static_cast<size_t>(rows);
  const std::vector<LogitsRowWant>& wants = selection->wants;
  selection->argmax.assign(n, RowArgMax{});
  selection->candidates.assign(n, TopKCandidates{});
  selection->drawn.assign(n, -1);
  selection->drawn_logits.assign(n, 0.0f);
  selection->denominators.assign(n, 0.0);
  selection->log_normalizers.assign(n, 0.0);
  selection->row_index.assign(n, -1);
  selection->unedited.assign(n, {});
  selection->raw_candidates.assign(n, TopKCandidates{});
  selection->edited.assign(n, false);
  std::vector<bool> whole(n, false);
  for (size_t r = 0; r < n; ++r) whole[r] = wants[r].kind == Kind::kRow;
  // The penalties and biases first (an edited row's logprobs before them): everything
  // below reads the edited rows, and takes logprobs of the others only.
  RETURN_IF_ERROR(EditRows(*backend_, all, rows, vocab, selection, whole));
  std::vector<int64_t> logprobs(n);
  for (size_t r = 0; r < n; ++r) logprobs[r] = selection->edited[r] ? -1 : wants[r].logprobs;

  const auto wanted = [&](Kind kind) {
    return std::any_of(wants.begin(), wants.end(),
                       [kind](const LogitsRowWant& w) { return w.kind == kind; });
  };
  if (wanted(Kind::kArgMax)) {  // every row: one launch, and cheap next to the LM head
    RETURN_IF_ERROR(backend_->ArgMaxRows(all, rows, vocab, selection->argmax.data()));
  }
  // Rows whose most likely tokens come back: top-k and nucleus candidates, and the
  // alternatives of greedy and plain-sampled rows that report logprobs. Rows that report
  // logprobs also get their softmax denominator at T = 1.
  const auto by_top_k = [&](size_t r) {
    const Kind kind = wants[r].kind;
    return kind == Kind::kTopK || kind == Kind::kNucleus ||
           ((kind == Kind::kArgMax || kind == Kind::kDraw) && logprobs[r] >= 0);
  };
  bool any_by_top_k = false;
  for (size_t r = 0; r < n; ++r) any_by_top_k = any_by_top_k || by_top_k(r);
  if (any_by_top_k) {
    std::vector<int32_t> k(n, 0);
    // nucleus_temperature: the denominators' (a nucleus row's own, or 1 for a log-normalizer);
    // raw_temperature: 1 for a nucleus row that needs both.
    std::vector<float> temperature(n, 1.0f), nucleus_temperature(n, 0.0f),
        raw_temperature(n, 0.0f);
    int64_t capacity = 0;
    for (size_t r = 0; r < n; ++r) {
      if (!by_top_k(r)) continue;
      int64_t top_k = kNucleusCandidates;
      if (wants[r].kind == Kind::kTopK) {
        top_k = wants[r].top_k;
      } else if (wants[r].kind == Kind::kArgMax || wants[r].kind == Kind::kDraw) {
        top_k = std::max<int64_t>(logprobs[r], 1);  // 1: still tells a NaN row
      }
      k[r] = static_cast<int32_t>(std::min<int64_t>(top_k, vocab));
      // A draw's alternatives are the raw row's (its own temperature is SampleRows').
      if (wants[r].kind == Kind::kTopK || wants[r].kind == Kind::kNucleus) {
        temperature[r] = wants[r].temperature;
      }
      if (wants[r].kind == Kind::kNucleus) {
        // Only top-p needs the denominator at the row's temperature.
        if (wants[r].top_p < 1) nucleus_temperature[r] = wants[r].temperature;
        if (logprobs[r] >= 0) raw_temperature[r] = 1.0f;  // the log-normalizer's sum
      } else if (logprobs[r] >= 0) {
        nucleus_temperature[r] = 1.0f;  // the log-normalizer's sum
      }
      capacity = std::max<int64_t>(capacity, k[r] + kTopKTieRoom);
    }
    capacity = std::min(capacity, vocab);
    std::vector<int32_t> ids(n * static_cast<size_t>(capacity)), counts(n);
    std::vector<float> values(ids.size());
    RETURN_IF_ERROR(backend_->TopKRows(all, rows, vocab, k, temperature, capacity, ids.data(),
                                       values.data(), counts.data()));
    if (std::any_of(nucleus_temperature.begin(), nucleus_temperature.end(),
                    [](float t) { return t > 0; })) {  // rows at temperature 0 are skipped
      RETURN_IF_ERROR(backend_->SoftmaxDenominators(all, rows, vocab, nucleus_temperature,
                                                    selection->denominators.data()));
    }
    std::vector<double> raw_sums(n, 0.0);
    if (std::any_of(raw_temperature.begin(), raw_temperature.end(),
                    [](float t) { return t > 0; })) {
      RETURN_IF_ERROR(
          backend_->SoftmaxDenominators(all, rows, vocab, raw_temperature, raw_sums.data()));
    }
    for (size_t r = 0; r < n; ++r) {
      if (!by_top_k(r)) continue;
      // A NaN, or more ties than room (which a greedy row without alternatives can bear).
      const bool no_alternatives = wants[r].kind == Kind::kArgMax && logprobs[r] == 0;
      if (counts[r] < 1 || (counts[r] > capacity && !no_alternatives)) {
        whole[r] = true;
        continue;
      }
      const auto offset = static_cast<std::ptrdiff_t>(r * static_cast<size_t>(capacity));
      if (logprobs[r] >= 0) {
        // A finite max gives a sum of at least 1; 0 means +inf (or no finite value). The
        // max: the argmax's, or the largest candidate's (the row's largest is one).
        const double sum = wants[r].kind == Kind::kNucleus ? raw_sums[r]
                                                           : selection->denominators[r];
        if (!(sum > 0)) {
          whole[r] = true;
          continue;
        }
        float max = selection->argmax[r].value;
        if (wants[r].kind != Kind::kArgMax) {
          max = *std::max_element(values.begin() + offset, values.begin() + offset + counts[r]);
        }
        selection->log_normalizers[r] = static_cast<double>(max) + std::log(sum);
        if (wants[r].kind == Kind::kArgMax && logprobs[r] == 0) continue;
      }
      const auto first = ids.begin() + offset;
      const auto first_value = values.begin() + offset;
      if (wants[r].kind == Kind::kNucleus) {
        // What top-p or min-p keeps must lie within the candidates (the sampler decides
        // alike, LogitsProcessorChain::ApplyToNucleus).
        const std::span<const float> kept(&*first_value, static_cast<size_t>(counts[r]));
        bool within = true;
        if (wants[r].top_p < 1) {
          const double outside =
              ProbabilityOutside(kept, wants[r].temperature, selection->denominators[r]);
          within = outside >= 0 && outside <= 1.0 - wants[r].top_p;
        } else if (counts[r] < vocab) {
          within = MinPRemovesBelowCandidates(kept, wants[r].temperature, wants[r].min_p);
        }
        if (!within) {
          whole[r] = true;
          continue;
        }
      }
      selection->candidates[r].ids.assign(first, first + counts[r]);
      selection->candidates[r].values.assign(first_value, first_value + counts[r]);
    }
  }
  if (wanted(Kind::kDraw)) {
    std::vector<float> temperature(n, 1.0f);
    std::vector<double> u(n, -1.0);  // < 0: not drawn
    for (size_t r = 0; r < n; ++r) {
      if (wants[r].kind != Kind::kDraw) continue;
      temperature[r] = wants[r].temperature;
      u[r] = wants[r].u;
    }
    // The drawn tokens' logits come back with them when a row reports logprobs: the raw
    // logit, unless an edit replaced it (then the value it replaced).
    const bool with_logits = std::any_of(wants.begin(), wants.end(), [](const LogitsRowWant& w) {
      return w.kind == Kind::kDraw && w.logprobs >= 0;
    });
    std::vector<float> drawn_values(n, 0.0f);
    RETURN_IF_ERROR(backend_->SampleRows(all, rows, vocab, temperature, u,
                                         selection->drawn.data(),
                                         with_logits ? drawn_values.data() : nullptr));
    for (size_t r = 0; r < n; ++r) {
      const int32_t token = selection->drawn[r];
      if (wants[r].kind != Kind::kDraw || wants[r].logprobs < 0 || whole[r] || token < 0) {
        continue;
      }
      std::optional<float> replaced;
      if (selection->edited[r]) replaced = ReplacedLogit(*selection, r, token);
      selection->drawn_logits[r] = replaced.value_or(drawn_values[r]);
    }
  }
  // The rows that come back whole, runs of neighbouring rows in one copy each.
  logits->clear();
  const size_t row_floats = static_cast<size_t>(vocab);
  for (size_t r = 0; r < n;) {
    if (!whole[r]) {
      ++r;
      continue;
    }
    const size_t at = logits->size();
    size_t end = r;
    for (; end < n && whole[end]; ++end) {
      selection->row_index[end] = static_cast<int64_t>(at / row_floats + (end - r));
    }
    logits->resize(at + (end - r) * row_floats);
    RETURN_IF_ERROR(backend_->CopyFromBackend(logits->data() + at, all + r * row_floats,
                                              (end - r) * row_floats * sizeof(float)));
    r = end;
  }
  return absl::OkStatus();
}

}  // namespace tessera
