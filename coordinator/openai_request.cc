#include "coordinator/openai_request.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace tessera {
namespace {

using nlohmann::json;

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(std::string(message));
}

bool Has(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

// Copied as they are: OpenAI and generation_config agree on name and meaning.
constexpr std::array<std::string_view, 10> kSameName = {
    "top_p", "n",     "seed",       "presence_penalty",   "frequency_penalty",
    "top_k", "min_p", "logit_bias", "repetition_penalty", "stop_token_ids"};

// Read here; anything else is refused.
constexpr std::array<std::string_view, 11> kCommon = {
    "model",      "stream",   "stream_options", "temperature", "stop",    "user",
    "min_tokens", "priority", "request_id",     "max_tokens",  "logprobs"};
constexpr std::array<std::string_view, 3> kCompletionsOnly = {"prompt", "best_of", "echo"};
constexpr std::array<std::string_view, 6> kChatOnly = {
    "messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice"};
// Accepted only when they ask for nothing: "suffix": null / "", "echo": false, ...
constexpr std::array<std::string_view, 1> kCompletionsInert = {"suffix"};

template <size_t N>
bool In(const std::array<std::string_view, N>& list, std::string_view key) {
  for (std::string_view k : list) {
    if (k == key) return true;
  }
  return false;
}

absl::Status CheckKnownFields(const json& j, OpenAiEndpoint endpoint) {
  const bool chat = endpoint == OpenAiEndpoint::kChatCompletions;
  for (const auto& [key, value] : j.items()) {
    if (In(kSameName, key) || In(kCommon, key)) continue;
    if (!chat && (In(kCompletionsOnly, key) || In(kCompletionsInert, key))) continue;
    if (chat && In(kChatOnly, key)) continue;
    return Invalid(absl::StrFormat("field '%s' is not supported by %s", key,
                                   chat ? "/v1/chat/completions" : "/v1/completions"));
  }
  return absl::OkStatus();
}

// A chat message's content: a string, or a list of {"type": "text", "text": ...} parts
// (joined).
absl::StatusOr<std::string> MessageContent(const json& content, size_t i) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string text;
    for (size_t k = 0; k < content.size(); ++k) {
      const json& part = content[k];
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
          !part.contains("text") || !part["text"].is_string()) {
        return Invalid(absl::StrFormat(
            "field 'messages[%d].content[%d]' must be {\"type\": \"text\", \"text\": ...}; "
            "only text content is supported",
            i, k));
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  return Invalid(
      absl::StrFormat("field 'messages[%d].content' must be a string or a list of text parts", i));
}

absl::StatusOr<json> ChatMessages(const json& messages) {
  if (!messages.is_array() || messages.empty()) {
    return Invalid("field 'messages' must be a non-empty list of {\"role\", \"content\"} objects");
  }
  json out = json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Invalid(absl::StrFormat("field 'messages[%d].role' must be a string", i));
    }
    for (const auto& [key, value] : m.items()) {
      if (key != "role" && key != "content" && key != "name") {
        return Invalid(absl::StrFormat("field 'messages[%d].%s' is not supported", i, key));
      }
    }
    if (!m.contains("content")) {
      return Invalid(absl::StrFormat("field 'messages[%d].content' is missing", i));
    }
    absl::StatusOr<std::string> content = MessageContent(m["content"], i);
    if (!content.ok()) return content.status();
    // OpenAI's newer name for the system role; chat templates know "system".
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";
    out.push_back({{"role", std::move(role)}, {"content", *std::move(content)}});
  }
  return out;
}

absl::StatusOr<int64_t> NonNegativeInt(const json& j, const char* key) {
  if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0) {
    return Invalid(
        absl::StrFormat("field '%s' must be a non-negative integer (is %s)", key, j[key].dump()));
  }
  return j[key].get<int64_t>();
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(const json& j, OpenAiEndpoint endpoint) {
  if (!j.is_object()) return Invalid("the request body must be a JSON object");
  if (absl::Status s = CheckKnownFields(j, endpoint); !s.ok()) return s;
  const bool chat = endpoint == OpenAiEndpoint::kChatCompletions;
  OpenAiRequest r;
  r.endpoint = endpoint;
  r.body = json::object();
  json& b = r.body;

  if (Has(j, "model")) {
    if (!j["model"].is_string()) return Invalid("field 'model' must be a string");
    r.model = j["model"].get<std::string>();
  }
  if (chat) {
    if (!j.contains("messages")) return Invalid("missing field 'messages'");
    absl::StatusOr<json> messages = ChatMessages(j["messages"]);
    if (!messages.ok()) return messages.status();
    b["messages"] = *std::move(messages);
  } else {
    if (!Has(j, "prompt")) return Invalid("missing field 'prompt'");
    const json& prompt = j["prompt"];
    if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
      b["prompt"] = prompt[0];
    } else if (prompt.is_string()) {
      b["prompt"] = prompt;
    } else if (prompt.is_array() && prompt.size() > 1 && prompt[0].is_string()) {
      return Invalid("field 'prompt' holds several prompts; send one request per prompt");
    } else {
      return Invalid(
          "field 'prompt' must be a string (prompts given as token ids are not supported)");
    }
    if (Has(j, "echo") && !(j["echo"].is_boolean() && !j["echo"].get<bool>())) {
      return Invalid("field 'echo' is not supported (only false)");
    }
    if (Has(j, "suffix") && !(j["suffix"].is_string() && j["suffix"].get<std::string>().empty())) {
      return Invalid("field 'suffix' is not supported");
    }
  }
  if (chat) {
    for (const char* key : {"tools", "tool_choice"}) {
      if (Has(j, key)) return Invalid(absl::StrFormat("field '%s' is not supported", key));
    }
    if (Has(j, "response_format") &&
        !(j["response_format"].is_object() && j["response_format"].size() == 1 &&
          j["response_format"].contains("type") && j["response_format"]["type"] == "text")) {
      return Invalid("field 'response_format' is not supported (only {\"type\": \"text\"})");
    }
  }

  for (std::string_view key : kSameName) {
    const std::string k(key);
    if (Has(j, k.c_str())) b[k] = j[k];
  }
  if (Has(j, "request_id")) {
    if (!j["request_id"].is_string()) return Invalid("field 'request_id' must be a string");
    r.request_id = j["request_id"].get<std::string>();
  }
  if (Has(j, "priority")) b["priority"] = j["priority"];
  if (Has(j, "min_tokens")) b["min_new_tokens"] = j["min_tokens"];
  if (Has(j, "best_of")) b["best_of"] = j["best_of"];

  // Length: max_completion_tokens (chat) over max_tokens; /v1/completions defaults to 16.
  if (chat && Has(j, "max_completion_tokens")) {
    b["max_new_tokens"] = j["max_completion_tokens"];
  } else if (Has(j, "max_tokens")) {
    b["max_new_tokens"] = j["max_tokens"];
  } else if (!chat) {
    b["max_new_tokens"] = 16;
  }

  // Sampling as OpenAI defines it: temperature 1 and no top-k unless asked; 0 is greedy.
  double temperature = 1.0;
  if (Has(j, "temperature")) {
    if (!j["temperature"].is_number() || j["temperature"].get<double>() < 0 ||
        j["temperature"].get<double>() > 2) {
      return Invalid(absl::StrFormat("field 'temperature' must be a number in [0, 2] (is %s)",
                                     j["temperature"].dump()));
    }
    temperature = j["temperature"].get<double>();
  }
  b["do_sample"] = temperature > 0;
  if (temperature > 0) b["temperature"] = temperature;
  if (!Has(j, "top_k")) b["top_k"] = 0;

  if (Has(j, "stop")) {
    const json& stop = j["stop"];
    if (stop.is_string()) {
      b["stop_strings"] = json::array({stop});
    } else if (stop.is_array() &&
               std::all_of(stop.begin(), stop.end(), [](const json& s) { return s.is_string(); })) {
      b["stop_strings"] = stop;
    } else {
      return Invalid("field 'stop' must be a string or a list of strings");
    }
  }

  if (chat) {
    bool want = false;
    if (Has(j, "logprobs")) {
      if (!j["logprobs"].is_boolean()) return Invalid("field 'logprobs' must be a boolean");
      want = j["logprobs"].get<bool>();
    }
    if (Has(j, "top_logprobs")) {
      if (!want) return Invalid("field 'top_logprobs' needs field 'logprobs' set to true");
      absl::StatusOr<int64_t> n = NonNegativeInt(j, "top_logprobs");
      if (!n.ok()) return n.status();
      r.logprobs = *n;
    } else if (want) {
      r.logprobs = 0;
    }
  } else if (Has(j, "logprobs")) {
    absl::StatusOr<int64_t> n = NonNegativeInt(j, "logprobs");
    if (!n.ok()) return n.status();
    r.logprobs = *n;
  }
  if (r.logprobs.has_value()) b["logprobs"] = *r.logprobs;

  if (Has(j, "stream")) {
    if (!j["stream"].is_boolean()) return Invalid("field 'stream' must be a boolean");
    r.stream = j["stream"].get<bool>();
  }
  if (Has(j, "stream_options")) {
    const json& o = j["stream_options"];
    if (!r.stream) return Invalid("field 'stream_options' needs field 'stream' set to true");
    if (!o.is_object()) return Invalid("field 'stream_options' must be an object");
    for (const auto& [key, value] : o.items()) {
      if (key != "include_usage") {
        return Invalid(absl::StrFormat("field 'stream_options.%s' is not supported", key));
      }
      if (!value.is_boolean()) {
        return Invalid("field 'stream_options.include_usage' must be a boolean");
      }
      r.include_usage = value.get<bool>();
    }
  }
  if (Has(j, "user") && !j["user"].is_string()) return Invalid("field 'user' must be a string");
  return r;
}

OpenAiErrorText ToOpenAiErrorText(std::string_view message) {
  OpenAiErrorText out;
  out.message = std::string(message);
  // The names token_request.h reports, back to the names the client sent.
  out.message = absl::StrReplaceAll(out.message, {{"'max_new_tokens'", "'max_tokens'"},
                                                  {"'stop_strings'", "'stop'"},
                                                  {"'min_new_tokens'", "'min_tokens'"},
                                                  {"'num_return_sequences'", "'n'"}});
  const size_t field = out.message.find("field '");
  if (field != std::string::npos) {
    const size_t start = field + 7;
    const size_t end = out.message.find('\'', start);
    if (end != std::string::npos) out.param = out.message.substr(start, end - start);
  }
  return out;
}

}  // namespace tessera
