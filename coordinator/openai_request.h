// OpenAI's /v1/completions and /v1/chat/completions request bodies, checked and turned into
// the token_request.h object that both front ends admit (coordinator/request_gate.h), so an
// OpenAI request decodes exactly as the same settings sent over tessera.v1 would.
//
// OpenAI semantics are kept where they differ from transformers': sampling at temperature 1
// unless `temperature` is 0 (then greedy), no top-k cut unless `top_k` is given,
// `max_tokens` 16 on /v1/completions when unset. vLLM's extra sampling fields (top_k,
// min_p, repetition_penalty, min_tokens, stop_token_ids) are accepted, and so are
// tessera.v1's `priority` and `request_id`. Fields this server
// does not implement (tools, response_format other than text, echo, suffix, prompts given
// as token ids or as several prompts) and unknown fields are INVALID_ARGUMENT naming them,
// never ignored; `user` is accepted and unused, as it only tags requests at OpenAI.
//
// Pure: no model, no server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera {

enum class OpenAiEndpoint { kCompletions, kChatCompletions };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string model;       // as sent; empty when unset (the only model served)
  nlohmann::json body;     // the token_request.h object
  std::string request_id;  // Tessera's extension field; empty: the server makes one up
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
  // How many alternatives per token to report (0: only the chosen token's logprob); unset:
  // no logprobs. /v1/completions' `logprobs`, or /v1/chat/completions' `top_logprobs`
  // when `logprobs` is true.
  std::optional<int64_t> logprobs;
};

// INVALID_ARGUMENT with "field '<name>' ..." (OpenAI's field names) for anything wrong.
[[nodiscard]] absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(const nlohmann::json& body,
                                                               OpenAiEndpoint endpoint);

// An error message in OpenAI's terms: token_request.h's generation_config names quoted in
// it are renamed to the OpenAI fields they came from (max_new_tokens -> max_tokens,
// stop_strings -> stop, ...), and `param` is the first field it names (empty if none).
struct OpenAiErrorText {
  std::string message;
  std::string param;
};
OpenAiErrorText ToOpenAiErrorText(std::string_view message);

}  // namespace tessera
