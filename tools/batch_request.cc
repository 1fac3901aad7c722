#include "tools/batch_request.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "decoding/decoding_strategy.h"
#include "decoding/generation_config.h"
#include "tools/chat_prompt.h"
#include "tools/stop_text.h"

namespace tessera {
namespace {

using nlohmann::json;

absl::Status LineError(int64_t line_number, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrFormat("line %d: %s", line_number, message));
}

// `status` with "line N: " in front unless the message already starts with it.
absl::Status OnLine(int64_t line_number, const absl::Status& status) {
  const std::string prefix = absl::StrCat("line ", line_number, ": ");
  const std::string message(status.message());
  if (message.rfind(prefix, 0) == 0) return status;
  return absl::Status(status.code(), prefix + message);
}

bool Has(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

absl::StatusOr<std::vector<ChatMessage>> ParseMessages(const json& j, int64_t line) {
  if (!j.is_array() || j.empty()) {
    return LineError(line, "field 'messages' must be a non-empty list of "
                           "{\"role\": ..., \"content\": ...} objects");
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& m = j[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
        !m.contains("content") || !m["content"].is_string()) {
      return LineError(line, absl::StrFormat("field 'messages[%d]' must be an object with "
                                             "string \"role\" and \"content\"",
                                             i));
    }
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

absl::StatusOr<std::vector<int32_t>> PromptIds(const json& j, int64_t line,
                                               const BatchRequestContext& c) {
  const bool has_prompt = Has(j, "prompt");
  const bool has_messages = Has(j, "messages");
  if (has_prompt == has_messages) {
    return LineError(line, has_prompt ? "give either field 'prompt' or field 'messages', not both"
                                      : "missing field 'prompt' (a string) or 'messages'");
  }
  std::vector<ChatMessage> messages;
  if (has_prompt) {
    if (!j["prompt"].is_string()) {
      return LineError(line, absl::StrFormat("field 'prompt' must be a string (is %s)",
                                             j["prompt"].dump()));
    }
    if (!c.chat) return c.tokenizer->Encode(j["prompt"].get<std::string>(), EncodeOptions{});
    messages.push_back({"user", j["prompt"].get<std::string>()});
  } else {
    ASSIGN_OR_RETURN(messages, ParseMessages(j["messages"], line));
  }
  if (c.chat_template == nullptr) {
    return LineError(line, absl::StrCat("field 'messages' needs a chat template: ",
                                        c.chat_template_error));
  }
  return EncodeChat(*c.tokenizer, *c.chat_template, messages, /*add_generation_prompt=*/true);
}

absl::StatusOr<int64_t> IntField(const json& j, const char* key, int64_t line) {
  if (!j[key].is_number_integer()) {
    return LineError(line, absl::StrFormat("field '%s' must be an integer (is %s)", key,
                                           j[key].dump()));
  }
  return j[key].get<int64_t>();
}

void AddUnique(std::vector<int32_t>& ids, int32_t id) {
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

}  // namespace

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
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return LineError(line_number, "not valid JSON");
  if (!j.is_object()) return LineError(line_number, "not a JSON object");
  BatchRequest r;
  r.id = BatchLineId(j, line_number);
  if (Has(j, "id") && !j["id"].is_string() && !j["id"].is_number_integer()) {
    return LineError(line_number, absl::StrFormat("field 'id' must be a string (is %s)",
                                                  j["id"].dump()));
  }

  // Settings: the command line's, then this line's (validated by GenerationConfigFromJson).
  const std::string source = absl::StrCat("line ", line_number);
  auto config = GenerationConfigFromJson(j, source, c.defaults->config);
  if (!config.ok()) return OnLine(line_number, config.status());
  GenerationConfig& g = *config;
  int n = static_cast<int>(g.num_return_sequences);
  if (Has(j, "n")) {
    ASSIGN_OR_RETURN(const int64_t value, IntField(j, "n", line_number));
    if (Has(j, "num_return_sequences") && value != g.num_return_sequences) {
      return LineError(line_number, "fields 'n' and 'num_return_sequences' disagree");
    }
    if (value < 1 || value > 1024) {
      return LineError(line_number, absl::StrFormat("field 'n' must be in [1, 1024] (is %d)",
                                                    value));
    }
    if (value > 1 && !g.do_sample && g.num_beams == 1) {
      return LineError(line_number,
                       absl::StrFormat("field 'n' (%d) must be 1 for greedy decoding (set "
                                       "\"do_sample\": true for several samples)",
                                       value));
    }
    g.num_return_sequences = value;
    n = static_cast<int>(value);
    if (absl::Status v = g.Validate(); !v.ok()) {
      return LineError(line_number, absl::StrFormat("field 'n': %s", v.message()));
    }
  }
  int priority = 0;
  if (Has(j, "priority")) {
    ASSIGN_OR_RETURN(const int64_t value, IntField(j, "priority", line_number));
    priority = static_cast<int>(std::clamp<int64_t>(value, -(1 << 30), 1 << 30));
  }

  auto prompt = PromptIds(j, line_number, c);
  if (!prompt.ok()) return OnLine(line_number, prompt.status());
  const int64_t prompt_len = static_cast<int64_t>(prompt->size());
  if (prompt_len == 0) return LineError(line_number, "field 'prompt' has no tokens");
  if (prompt_len >= c.context_length) {
    return LineError(line_number,
                     absl::StrFormat("field 'prompt' has %d tokens; the model's context is %d",
                                     prompt_len, c.context_length));
  }

  // The line's length fields win over the command line's; the context caps them all.
  int64_t max_new = c.defaults->MaxNewTokens(prompt_len);
  if (Has(j, "max_new_tokens")) {
    max_new = *g.max_new_tokens;
  } else if (Has(j, "max_length")) {
    max_new = *g.max_length - prompt_len;
    if (max_new < 1) {
      return LineError(line_number,
                       absl::StrFormat("field 'max_length' (%d) leaves no room after the "
                                       "prompt's %d tokens",
                                       *g.max_length, prompt_len));
    }
  }
  if (max_new < 1) {  // --max-new-tokens 0 (or a file's max_length) on the command line
    return LineError(line_number,
                     absl::StrFormat("field 'max_new_tokens' must be >= 1 in batch mode (is %d)",
                                     max_new));
  }
  max_new = std::min(max_new, c.context_length - prompt_len);

  // The vocabulary's stop ids join the EOS ids so that min_new_tokens masks them too.
  for (int32_t id : c.tokenizer->stop_ids()) AddUnique(g.eos_token_ids, id);
  for (int32_t id : g.eos_token_ids) AddUnique(r.stop_ids, id);
  for (int32_t id : g.stop_token_ids) AddUnique(r.stop_ids, id);

  if (!g.stop_strings.empty()) {
    // The worker sees ids: it asks after each token whether the text now holds a stop.
    r.request.stops_at = StopsAtText(c.tokenizer, g.stop_strings);
    r.stop_strings = g.stop_strings;
  }
  r.request.spec.prompt_token_ids = *std::move(prompt);
  r.request.spec.max_new_tokens = static_cast<int>(max_new);
  // Beam and contrastive search return num_return_sequences hypotheses from one sequence.
  r.request.spec.n = NeedsDecodingStrategy(g) ? 1 : n;
  r.request.spec.priority = priority;
  r.request.generation = std::move(g);
  return r;
}

}  // namespace tessera
