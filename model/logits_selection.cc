#include "model/logits_selection.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera {

std::optional<float> ReplacedLogit(const LogitsSelection& selection, size_t r, int32_t token) {
  const std::vector<LogitEdit>& edits = selection.wants[r].edits;
  const auto at = std::lower_bound(edits.begin(), edits.end(), token,
                                   [](const LogitEdit& e, int32_t t) { return e.token < t; });
  if (at == edits.end() || at->token != token) return std::nullopt;
  return selection.unedited[r][static_cast<size_t>(at - edits.begin())];
}

absl::Status CheckLogitsSelection(const LogitsSelection& selection, int64_t rows,
                                  int64_t vocab) {
  if (static_cast<int64_t>(selection.wants.size()) != rows) {
    return absl::InvalidArgumentError(absl::StrCat("ForwardPaged: selection.wants has ",
                                                   selection.wants.size(), " entries for ",
                                                   rows, " logits rows"));
  }
  for (size_t r = 0; r < selection.wants.size(); ++r) {
    const LogitsRowWant& want = selection.wants[r];
    for (size_t i = 0; i < want.edits.size(); ++i) {
      const int32_t token = want.edits[i].token;
      if (token < 0 || token >= vocab || (i > 0 && want.edits[i - 1].token >= token)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ForwardPaged: selection.wants[", r, "].edits[", i, "] is for token ", token,
            "; edits must be for ascending distinct tokens below the vocabulary size ", vocab));
      }
    }
    if (want.kind == LogitsRowWant::Kind::kTopK && (want.top_k <= 0 || !(want.temperature > 0))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ForwardPaged: selection.wants[", r, "] asks for top_k ", want.top_k,
          " at temperature ", want.temperature, "; both must be > 0"));
    }
    if (want.kind == LogitsRowWant::Kind::kNucleus &&
        (!(want.temperature > 0) || !(want.top_p > 0 && want.top_p <= 1) ||
         !(want.min_p >= 0 && want.min_p < 1) || (want.top_p == 1 && want.min_p == 0))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ForwardPaged: selection.wants[", r, "] asks for a nucleus at temperature ",
          want.temperature, ", top_p ", want.top_p, " and min_p ", want.min_p,
          "; the temperature must be > 0, top_p in (0, 1] and min_p in [0, 1), one of them set"));
    }
    const bool whole_row_logprobs =
        want.kind == LogitsRowWant::Kind::kArgMax || want.kind == LogitsRowWant::Kind::kDraw;
    const int64_t most_logprobs = whole_row_logprobs ? kMaxLogprobCandidates
                                  : want.kind == LogitsRowWant::Kind::kNucleus
                                      ? kNucleusCandidates
                                  : want.kind == LogitsRowWant::Kind::kTopK
                                      ? (want.edits.empty() ? want.top_k : kMaxLogprobCandidates)
                                      : -1;
    if (want.logprobs != -1 && (want.logprobs < 0 || want.logprobs > most_logprobs)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ForwardPaged: selection.wants[", r, "] asks for ", want.logprobs,
          " logprobs; only argmax and draw wants (up to ", kMaxLogprobCandidates,
          "), nucleus wants (up to ", kNucleusCandidates,
          ") and top-k wants (up to their top_k, or ", kMaxLogprobCandidates,
          " with edits) may, else -1"));
    }
    if (want.kind == LogitsRowWant::Kind::kDraw &&
        (!(want.temperature > 0) || !(want.u >= 0 && want.u < 1))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ForwardPaged: selection.wants[", r, "] asks for a draw at temperature ",
          want.temperature, " with u ", want.u, "; the temperature must be > 0 and u in [0, 1)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
