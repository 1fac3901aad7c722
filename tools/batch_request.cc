#include "tools/batch_request.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "coordinator/stop_text.h"
#include "coordinator/token_request.h"

namespace tessera {

using nlohmann::json;

json BatchLineId(const json& line, int64_t line_number) {
  if (line.is_object() && line.contains("id")) {
    const json& id = line["id"];
    if (id.is_string()) return id;
    if (id.is_number_integer()) return json(id.dump());
  }
  return json(absl::StrCat(line_number));
}

absl::StatusOr<BatchRequest> ParseBatchLine(const std::string& text, int64_t line_number,
                                            const BatchRequestContext& c) {
  const std::string source = absl::StrCat("line ", line_number);
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(source + ": not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError(source + ": not a JSON object");
  BatchRequest r;
  r.id = BatchLineId(j, line_number);
  if (j.contains("id") && !j["id"].is_null() && !j["id"].is_string() &&
      !j["id"].is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: field 'id' must be a string (is %s)", source, j["id"].dump()));
  }
  TokenRequestContext context;
  context.tokenizer = c.tokenizer;
  context.chat_template = c.chat_template;
  context.chat_template_error = c.chat_template_error;
  context.chat = c.chat;
  context.defaults = &c.defaults->config;
  context.default_max_new_tokens = [&c](int64_t prompt) {
    return c.defaults->MaxNewTokens(prompt);
  };
  context.context_length = c.context_length;
  context.cap_to_context = true;
  ASSIGN_OR_RETURN(TokenRequest request, BuildTokenRequest(j, source, context));
  if (!request.stop_strings.empty()) {
    // The worker sees ids: it asks after each token whether the text now holds a stop.
    r.request.stops_at = StopsAtText(c.tokenizer, request.stop_strings);
  }
  r.request.spec = std::move(request.spec);
  r.request.generation = std::move(request.generation);
  r.stop_ids = std::move(request.stop_ids);
  r.stop_strings = std::move(request.stop_strings);
  return r;
}

}  // namespace tessera
