// A generation request as JSON (a `tessera generate --input` line, or a gRPC
// GenerateRequest turned into the same object) validated and tokenized into what the
// engine runs: prompt ids, length limits and decoding settings. Pure: no model, no engine.
//
// The object's fields: "prompt" (a string; wrapped as one user message when the context's
// `chat` is set) or "messages" ([{"role": ..., "content": ...}] through the chat template,
// content never parsed for control tokens); decoding settings under their
// generation_config.json names (decoding/generation_config.h); "n" (or
// "num_return_sequences"); "priority" (an integer, lower is more urgent).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "decoding/generation_config.h"
#include "engine/sequence.h"
#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

// What every request of one model shares. Pointers must outlive the calls.
struct TokenRequestContext {
  const Tokenizer* tokenizer = nullptr;
  // Null when the model has no chat template ("messages" then fail with the reason below).
  const ChatTemplate* chat_template = nullptr;
  std::string chat_template_error;
  bool chat = false;
  // The settings every request starts from; a request's own fields override them.
  const GenerationConfig* defaults = nullptr;
  // max_new_tokens of a request that sets neither it nor max_length, given the prompt's
  // length. Null: up to the rest of the context.
  std::function<int64_t(int64_t prompt_tokens)> default_max_new_tokens;
  int64_t context_length = 0;  // the model's (or the server's max_model_len)
  // true: a max_new_tokens beyond the context is cut to fit it (the offline batch API's
  // documented behaviour); false: it is INVALID_ARGUMENT (the server's).
  bool cap_to_context = true;
};

// Priority bounds, so that arithmetic on priorities never overflows.
inline constexpr int64_t kMinPriority = -(int64_t{1} << 30);
inline constexpr int64_t kMaxPriority = int64_t{1} << 30;

struct TokenRequest {
  // prompt_token_ids, max_new_tokens, n (1 for beam and contrastive search, which return
  // num_return_sequences hypotheses), priority. request_id is the caller's to set.
  RequestSpec spec;
  // Validated; eos_token_ids include the vocabulary's stop ids.
  GenerationConfig generation;
  // Ids that end a completion (EOS, the vocabulary's stop ids, stop_token_ids): a trailing
  // one is not part of the reported text.
  std::vector<int32_t> stop_ids;
  std::vector<std::string> stop_strings;  // a completion's text ends before the first one
};

// INVALID_ARGUMENT with a message "<source>: ..." naming the field for anything wrong (no
// prompt, an empty one, a bad setting, a prompt or length beyond the context).
[[nodiscard]] absl::StatusOr<TokenRequest> BuildTokenRequest(const nlohmann::json& request,
                                                             std::string_view source,
                                                             const TokenRequestContext& context);

}  // namespace tessera
