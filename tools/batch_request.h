// One line of a `tessera generate --input` file turned into an engine request (the line
// format is documented in batch_generate.h). Pure parsing: no model, no scheduler.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tools/decoding_flags.h"
#include "worker/batch_runner.h"

namespace tessera {

// What every line shares: the model's tokenizer and limits, and the command line's defaults.
struct BatchRequestContext {
  const Tokenizer* tokenizer = nullptr;
  // Null when neither --chat-template nor the model gives one ("messages" lines then fail).
  const ChatTemplate* chat_template = nullptr;
  // Why chat_template is null, for the error of a line that needs it.
  std::string chat_template_error;
  bool chat = false;  // --chat: "prompt" is wrapped as one user message
  const DecodingSettings* defaults = nullptr;
  int64_t context_length = 0;  // the model's; max_new_tokens is capped to fit it
};

struct BatchRequest {
  nlohmann::json id;      // the user's id (a string), echoed in the output
  WorkerRequest request;  // spec.request_id is left for the caller to assign
  // Ids that end a completion (EOS, the vocabulary's stop ids, stop_token_ids): a trailing
  // one is removed from the reported tokens.
  std::vector<int32_t> stop_ids;
  // The line's stop_strings: a completion's text is cut before the first one.
  std::vector<std::string> stop_strings;
};

// The id a line reports: its "id" when it is a string or an integer (as a string), else the
// 1-based line number as a string. Never fails, so that even a bad line is identified.
nlohmann::json BatchLineId(const nlohmann::json& line, int64_t line_number);

// Parses one line. INVALID_ARGUMENT with a message "line N: ..." naming the field for
// anything wrong with it (not JSON, no prompt, a bad setting, a prompt beyond the context).
[[nodiscard]] absl::StatusOr<BatchRequest> ParseBatchLine(const std::string& text,
                                                          int64_t line_number,
                                                          const BatchRequestContext& context);

}  // namespace tessera
