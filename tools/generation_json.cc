#include "tools/generation_json.h"

namespace tessera {
namespace {

using nlohmann::json;

std::string TokenText(const Tokenizer& tokenizer, int32_t id) {
  const int32_t ids[1] = {id};
  absl::StatusOr<std::string> text = tokenizer.Decode(ids, /*skip_special=*/false);
  return text.ok() ? *text : std::string();
}

}  // namespace

json SequenceToJson(const Tokenizer& tokenizer, const GeneratedSequence& sequence,
                    const SequenceJsonOptions& options) {
  json token_ids = json::array();
  json logprobs = json::array();
  double cumulative = 0.0;
  for (const SampleResult& t : sequence.tokens) {
    token_ids.push_back(t.token);
    json entry = {
        {"token_id", t.token}, {"text", TokenText(tokenizer, t.token)}, {"logprob", t.logprob}};
    if (options.top_logprobs) {
      json top = json::array();
      for (const TokenLogprob& alt : t.top) {
        top.push_back({{"token_id", alt.token},
                       {"text", TokenText(tokenizer, alt.token)},
                       {"logprob", alt.logprob}});
      }
      entry["top_logprobs"] = std::move(top);
    }
    logprobs.push_back(std::move(entry));
    cumulative += t.logprob;
  }
  json j = {{"index", options.index},
            {"text", sequence.text},
            {"token_ids", std::move(token_ids)},
            {"logprobs", std::move(logprobs)},
            {"cumulative_logprob", cumulative},
            {"finish_reason", std::string(FinishReasonName(sequence.finish_reason))},
            {"stop_token_id", nullptr},
            {"prompt_tokens", options.prompt_tokens},
            {"seed", options.seed}};
  if (sequence.stop_token >= 0) j["stop_token_id"] = sequence.stop_token;
  return j;
}

std::string JsonLine(const json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

}  // namespace tessera
