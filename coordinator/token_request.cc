#include "coordinator/token_request.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "decoding/decoding_strategy.h"
#include "tokenizer/chat_prompt.h"

namespace tessera {
namespace {

using nlohmann::json;

// Builds "<source>: <message>" errors.
class Errors {
 public:
  explicit Errors(std::string_view source) : source_(source) {}
  absl::Status Invalid(std::string_view message) const {
    return absl::InvalidArgumentError(source_ + ": " + std::string(message));
  }
  // `status` with the source in front unless its message already starts with it.
  absl::Status Attributed(const absl::Status& status) const {
    const std::string prefix = source_ + ": ";
    const std::string message(status.message());
    if (message.rfind(prefix, 0) == 0) return status;
    return absl::Status(status.code(), prefix + message);
  }

 private:
  std::string source_;
};

bool Has(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

absl::StatusOr<std::vector<ChatMessage>> ParseMessages(const json& j, const Errors& e) {
  if (!j.is_array() || j.empty()) {
    return e.Invalid(
        "field 'messages' must be a non-empty list of "
        "{\"role\": ..., \"content\": ...} objects");
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& m = j[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string()) {
      return e.Invalid(absl::StrFormat(
          "field 'messages[%d]' must be an object with string \"role\" and \"content\"", i));
    }
    if (m["role"].get<std::string>().empty()) {
      return e.Invalid(absl::StrFormat("field 'messages[%d].role' is empty", i));
    }
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

absl::StatusOr<std::vector<int32_t>> PromptIds(const json& j, const Errors& e,
                                               const TokenRequestContext& c) {
  const bool has_prompt = Has(j, "prompt");
  const bool has_messages = Has(j, "messages");
  if (has_prompt == has_messages) {
    return e.Invalid(has_prompt ? "give either field 'prompt' or field 'messages', not both"
                                : "missing field 'prompt' (a string) or 'messages'");
  }
  std::vector<ChatMessage> messages;
  if (has_prompt) {
    if (!j["prompt"].is_string()) {
      return e.Invalid(
          absl::StrFormat("field 'prompt' must be a string (is %s)", j["prompt"].dump()));
    }
    if (j["prompt"].get<std::string>().empty()) return e.Invalid("field 'prompt' is empty");
    if (!c.chat) return c.tokenizer->Encode(j["prompt"].get<std::string>(), EncodeOptions{});
    messages.push_back({"user", j["prompt"].get<std::string>()});
  } else {
    ASSIGN_OR_RETURN(messages, ParseMessages(j["messages"], e));
  }
  if (c.chat_template == nullptr) {
    return e.Invalid(
        absl::StrCat("field 'messages' needs a chat template: ", c.chat_template_error));
  }
  return EncodeChat(*c.tokenizer, *c.chat_template, messages, /*add_generation_prompt=*/true);
}

absl::StatusOr<int64_t> IntField(const json& j, const char* key, const Errors& e) {
  if (!j[key].is_number_integer()) {
    return e.Invalid(absl::StrFormat("field '%s' must be an integer (is %s)", key, j[key].dump()));
  }
  return j[key].get<int64_t>();
}

void AddUnique(std::vector<int32_t>& ids, int32_t id) {
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

// "n" (vLLM's / OpenAI's name) into g.num_return_sequences.
absl::Status ApplyN(const json& j, const Errors& e, GenerationConfig& g) {
  ASSIGN_OR_RETURN(const int64_t value, IntField(j, "n", e));
  if (Has(j, "num_return_sequences") && value != g.num_return_sequences) {
    return e.Invalid("fields 'n' and 'num_return_sequences' disagree");
  }
  if (value < 1 || value > 1024) {
    return e.Invalid(absl::StrFormat("field 'n' must be in [1, 1024] (is %d)", value));
  }
  if (value > 1 && !g.do_sample && g.num_beams == 1) {
    return e.Invalid(
        absl::StrFormat("field 'n' (%d) must be 1 for greedy decoding (set "
                        "\"do_sample\": true for several samples)",
                        value));
  }
  g.num_return_sequences = value;
  if (absl::Status v = g.Validate(); !v.ok()) {
    return e.Invalid(absl::StrFormat("field 'n': %s", v.message()));
  }
  return absl::OkStatus();
}

// The request's length fields win over the defaults; the context bounds them all.
absl::StatusOr<int64_t> MaxNewTokens(const json& j, const Errors& e, const GenerationConfig& g,
                                     int64_t prompt_len, const TokenRequestContext& c) {
  const int64_t room = c.context_length - prompt_len;
  int64_t max_new = room;
  if (Has(j, "max_new_tokens")) {
    max_new = *g.max_new_tokens;
  } else if (Has(j, "max_length")) {
    max_new = *g.max_length - prompt_len;
    if (max_new < 1) {
      return e.Invalid(
          absl::StrFormat("field 'max_length' (%d) leaves no room after the prompt's %d tokens",
                          *g.max_length, prompt_len));
    }
  } else if (c.default_max_new_tokens) {
    max_new = std::min(c.default_max_new_tokens(prompt_len), room);
  }
  if (max_new < 1) {
    return e.Invalid(absl::StrFormat("field 'max_new_tokens' must be >= 1 (is %d)", max_new));
  }
  if (max_new > room) {
    if (!c.cap_to_context) {
      return e.Invalid(absl::StrFormat(
          "field 'max_new_tokens' (%d) plus the prompt's %d tokens exceeds the model's "
          "context of %d tokens",
          max_new, prompt_len, c.context_length));
    }
    max_new = room;
  }
  return max_new;
}

}  // namespace

absl::StatusOr<TokenRequest> BuildTokenRequest(const json& j, std::string_view source,
                                               const TokenRequestContext& c) {
  const Errors e(source);
  if (!j.is_object()) return e.Invalid("not a JSON object");

  // Settings: the defaults, then the request's (validated by GenerationConfigFromJson).
  auto config = GenerationConfigFromJson(j, source, *c.defaults);
  if (!config.ok()) return e.Attributed(config.status());
  GenerationConfig& g = *config;
  if (Has(j, "n")) RETURN_IF_ERROR(ApplyN(j, e, g));
  int64_t priority = 0;
  if (Has(j, "priority")) {
    ASSIGN_OR_RETURN(priority, IntField(j, "priority", e));
    if (priority < kMinPriority || priority > kMaxPriority) {
      return e.Invalid(absl::StrFormat("field 'priority' must be in [%d, %d] (is %d)", kMinPriority,
                                       kMaxPriority, priority));
    }
  }

  auto prompt = PromptIds(j, e, c);
  if (!prompt.ok()) return e.Attributed(prompt.status());
  const int64_t prompt_len = static_cast<int64_t>(prompt->size());
  if (prompt_len == 0) return e.Invalid("field 'prompt' has no tokens");
  if (prompt_len >= c.context_length) {
    return e.Invalid(absl::StrFormat("field 'prompt' has %d tokens; the model's context is %d",
                                     prompt_len, c.context_length));
  }
  ASSIGN_OR_RETURN(const int64_t max_new, MaxNewTokens(j, e, g, prompt_len, c));

  TokenRequest r;
  // The vocabulary's stop ids join the EOS ids so that min_new_tokens masks them too.
  for (int32_t id : c.tokenizer->stop_ids()) AddUnique(g.eos_token_ids, id);
  for (int32_t id : g.eos_token_ids) AddUnique(r.stop_ids, id);
  for (int32_t id : g.stop_token_ids) AddUnique(r.stop_ids, id);
  r.stop_strings = g.stop_strings;
  r.spec.prompt_token_ids = *std::move(prompt);
  r.spec.max_new_tokens = static_cast<int>(max_new);
  // Beam and contrastive search return num_return_sequences hypotheses from one sequence.
  r.spec.n = NeedsDecodingStrategy(g) ? 1 : static_cast<int>(g.num_return_sequences);
  r.spec.priority = static_cast<int>(priority);
  r.generation = std::move(g);
  return r;
}

}  // namespace tessera
