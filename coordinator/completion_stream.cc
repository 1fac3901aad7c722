#include "coordinator/completion_stream.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/proto_convert.h"

namespace tessera {

CompletionStream::CompletionStream(const Tokenizer* tokenizer, std::string request_id,
                                   int prompt_tokens, std::vector<int32_t> stop_ids,
                                   std::vector<std::string> stop_strings)
    : tokenizer_(tokenizer),
      request_id_(std::move(request_id)),
      prompt_tokens_(prompt_tokens),
      stop_ids_(std::move(stop_ids)),
      stop_strings_(std::move(stop_strings)) {}

CompletionStream::Completion& CompletionStream::At(int index) {
  while (static_cast<int>(completions_.size()) <= index) {
    completions_.emplace_back(*tokenizer_, stop_strings_);
    completions_.back().whole.set_index(static_cast<int32_t>(completions_.size() - 1));
  }
  return completions_[index];
}

void CompletionStream::TokenText(int32_t id, std::string* text) const {
  absl::StatusOr<std::string> piece = tokenizer_->TokenBytes(id);
  if (piece.ok()) *text = *std::move(piece);
}

void CompletionStream::AddText(Completion& c, std::string text,
                               tessera::v1::CompletionDelta* delta) {
  if (c.stops.stopped() || text.empty()) return;
  if (!c.stops.empty()) {
    StopStringMatcher::Result r = c.stops.Feed(text);
    text = std::move(r.text);
    if (r.stopped) c.ended = true;
  }
  delta->mutable_text()->append(text);
  c.whole.mutable_text()->append(text);
}

absl::Status CompletionStream::AddTokens(const ReplicaEvent::Delta& d,
                                         tessera::v1::CompletionDelta* delta) {
  Completion& c = At(d.index);
  const bool with_logprobs = !d.token_logprobs.empty();
  for (size_t t = 0; t < d.token_ids.size(); ++t) {
    const int32_t id = d.token_ids[t];
    ++c.generated;
    if (c.ended) continue;  // tokens past a stop string are not part of the output
    if (std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end()) {
      c.ended = true;
      c.stop_token_id = id;
      continue;
    }
    tessera::v1::TokenInfo info;
    info.set_token_id(id);
    if (with_logprobs && t < d.token_logprobs.size()) {
      info.set_logprob(d.token_logprobs[t]);
      for (const auto& [alt, logprob] : d.top_logprobs[t]) {
        tessera::v1::TokenLogprob* top = info.add_top_logprobs();
        top->set_token_id(alt);
        top->set_logprob(logprob);
        TokenText(alt, top->mutable_text());
      }
    }
    *delta->add_tokens() = info;
    *c.whole.add_tokens() = std::move(info);
    absl::StatusOr<std::string> piece = c.detokenizer.Push(id);
    if (!piece.ok()) {
      return absl::InternalError(
          absl::StrCat("request ", request_id_, ": the replica sent ", piece.status().message()));
    }
    AddText(c, *std::move(piece), delta);
  }
  return absl::OkStatus();
}

absl::StatusOr<tessera::v1::GenerateResponse> CompletionStream::Next(const ReplicaEvent& event) {
  tessera::v1::GenerateResponse response;
  response.set_request_id(request_id_);
  // One delta message per completion index, in index order.
  std::vector<int> order;
  for (const ReplicaEvent::Delta& d : event.deltas) {
    if (std::find(order.begin(), order.end(), d.index) == order.end()) order.push_back(d.index);
  }
  if (event.output.has_value()) {
    for (size_t i = 0; i < event.output->completions.size(); ++i) {
      if (std::find(order.begin(), order.end(), i) == order.end()) order.push_back(i);
    }
  }
  std::sort(order.begin(), order.end());
  for (int index : order) {
    tessera::v1::CompletionDelta* delta = response.add_deltas();
    delta->set_index(index);
    for (const ReplicaEvent::Delta& d : event.deltas) {
      if (d.index == index) RETURN_IF_ERROR(AddTokens(d, delta));
    }
    Completion& c = At(index);
    if (!event.output.has_value() || index >= static_cast<int>(event.output->completions.size())) {
      continue;
    }
    // The end: what the detokenizer and the stop matcher still hold, then the verdict.
    AddText(c, c.detokenizer.Flush(), delta);
    if (!c.stops.stopped()) {
      std::string rest = c.stops.Flush();
      delta->mutable_text()->append(rest);
      c.whole.mutable_text()->append(rest);
    }
    const RequestOutput::Completion& out = event.output->completions[index];
    tessera::v1::FinishReason reason = FinishReasonToProto(out.finish_reason);
    if (c.ended) reason = tessera::v1::FINISH_REASON_STOP;
    delta->set_finish_reason(reason);
    c.whole.set_finish_reason(reason);
    if (c.stop_token_id.has_value()) {
      delta->set_stop_token_id(*c.stop_token_id);
      c.whole.set_stop_token_id(*c.stop_token_id);
    }
    if (out.score.has_value()) {
      delta->set_score(*out.score);
      c.whole.set_score(*out.score);
    }
    if (!out.token_logprobs.empty()) {
      double sum = 0.0;
      for (float lp : out.token_logprobs) sum += lp;
      c.whole.set_cumulative_logprob(sum);
    }
  }
  if (event.output.has_value()) {
    int64_t generated = 0;
    for (const Completion& c : completions_) generated += c.generated;
    response.mutable_usage()->set_prompt_tokens(prompt_tokens_);
    response.mutable_usage()->set_completion_tokens(static_cast<int32_t>(generated));
  }
  return response;
}

tessera::v1::CompleteResponse CompletionStream::Whole(const std::string& model) const {
  tessera::v1::CompleteResponse response;
  response.set_request_id(request_id_);
  response.set_model(model);
  int64_t generated = 0;
  for (const Completion& c : completions_) {
    *response.add_completions() = c.whole;
    generated += c.generated;
  }
  response.mutable_usage()->set_prompt_tokens(prompt_tokens_);
  response.mutable_usage()->set_completion_tokens(static_cast<int32_t>(generated));
  return response;
}

}  // namespace tessera
