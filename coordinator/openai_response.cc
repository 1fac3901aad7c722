#include "coordinator/openai_response.h"

#include <algorithm>
#include <utility>

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;
using nlohmann::json;

}  // namespace

std::string DumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json OpenAiUsage(const v1::Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens()},
          {"completion_tokens", usage.completion_tokens()},
          {"total_tokens", usage.prompt_tokens() + usage.completion_tokens()}};
}

const char* OpenAiFinishReason(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    case v1::FINISH_REASON_DEADLINE:
      return "deadline";
    default:
      return nullptr;
  }
}

OpenAiResponder::OpenAiResponder(const OpenAiRequest& request, std::string id, std::string model,
                                 int64_t created_unix_seconds, const Tokenizer* tokenizer)
    : endpoint_(request.endpoint),
      want_logprobs_(request.logprobs.has_value()),
      include_usage_(request.include_usage),
      id_(std::move(id)),
      model_(std::move(model)),
      created_(created_unix_seconds),
      tokenizer_(tokenizer) {}

json OpenAiResponder::Envelope(const char* object) const {
  return {{"id", id_}, {"object", object}, {"created", created_}, {"model", model_}};
}

std::string OpenAiResponder::TokenText(int32_t id) const {
  absl::StatusOr<std::string> bytes = tokenizer_->TokenBytes(id);
  return bytes.ok() ? *bytes : std::string();
}

json OpenAiResponder::Logprobs(
    const google::protobuf::RepeatedPtrField<v1::TokenInfo>& tokens) const {
  if (!want_logprobs_) return nullptr;
  if (chat()) {
    // {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}
    auto entry = [&](int32_t id, float logprob) {
      const std::string text = TokenText(id);
      json bytes = json::array();
      for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
      return json{{"token", text}, {"logprob", logprob}, {"bytes", std::move(bytes)}};
    };
    json content = json::array();
    for (const v1::TokenInfo& t : tokens) {
      json e = entry(t.token_id(), t.logprob());
      json top = json::array();
      for (const v1::TokenLogprob& alt : t.top_logprobs()) {
        top.push_back(entry(alt.token_id(), alt.logprob()));
      }
      e["top_logprobs"] = std::move(top);
      content.push_back(std::move(e));
    }
    return {{"content", std::move(content)}};
  }
  // The legacy completions shape: parallel lists.
  json texts = json::array(), logprobs = json::array(), top = json::array();
  for (const v1::TokenInfo& t : tokens) {
    texts.push_back(TokenText(t.token_id()));
    logprobs.push_back(t.logprob());
    json alternatives = json::object();
    for (const v1::TokenLogprob& alt : t.top_logprobs()) {
      alternatives[TokenText(alt.token_id())] = alt.logprob();
    }
    top.push_back(std::move(alternatives));
  }
  return {{"tokens", std::move(texts)},
          {"token_logprobs", std::move(logprobs)},
          {"top_logprobs", std::move(top)}};
}

json OpenAiResponder::Whole(const v1::CompleteResponse& response) const {
  json out = Envelope(chat() ? "chat.completion" : "text_completion");
  json choices = json::array();
  for (const v1::Completion& c : response.completions()) {
    json choice = {{"index", c.index()}};
    if (chat()) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text()}};
    } else {
      choice["text"] = c.text();
    }
    choice["logprobs"] = Logprobs(c.tokens());
    const char* reason = OpenAiFinishReason(c.finish_reason());
    choice["finish_reason"] = reason == nullptr ? json(nullptr) : json(reason);
    choices.push_back(std::move(choice));
  }
  out["choices"] = std::move(choices);
  out["usage"] = OpenAiUsage(response.usage());
  return out;
}

std::vector<json> OpenAiResponder::Chunks(const v1::GenerateResponse& response) {
  std::vector<json> chunks;
  for (const v1::CompletionDelta& d : response.deltas()) {
    const char* reason = OpenAiFinishReason(d.finish_reason());
    const bool first =
        chat() && std::find(role_sent_.begin(), role_sent_.end(), d.index()) == role_sent_.end();
    if (d.text().empty() && reason == nullptr && d.tokens().empty() && !first) continue;
    json choice = {{"index", d.index()}};
    if (chat()) {
      json delta = json::object();
      if (first) {
        delta["role"] = "assistant";
        role_sent_.push_back(d.index());
      }
      if (!d.text().empty() || first) delta["content"] = d.text();
      choice["delta"] = std::move(delta);
    } else {
      choice["text"] = d.text();
    }
    choice["logprobs"] = d.tokens().empty() ? json(nullptr) : Logprobs(d.tokens());
    choice["finish_reason"] = reason == nullptr ? json(nullptr) : json(reason);
    json chunk = Envelope(chat() ? "chat.completion.chunk" : "text_completion");
    chunk["choices"] = json::array({std::move(choice)});
    if (include_usage_) chunk["usage"] = nullptr;
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

json OpenAiResponder::UsageChunk(const v1::Usage& usage) const {
  json chunk = Envelope(chat() ? "chat.completion.chunk" : "text_completion");
  chunk["choices"] = json::array();
  chunk["usage"] = OpenAiUsage(usage);
  return chunk;
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

json OpenAiErrorBody(const absl::Status& status) {
  const OpenAiErrorText text = ToOpenAiErrorText(std::string(status.message()));
  const char* type = "server_error";
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
      type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      type = "authentication_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      type = "rate_limit_error";
      break;
    default:
      break;
  }
  std::string code = absl::StatusCodeToString(status.code());
  std::transform(code.begin(), code.end(), code.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return {{"error",
           {{"message", text.message},
            {"type", type},
            {"param", text.param.empty() ? json(nullptr) : json(text.param)},
            {"code", code}}}};
}

}  // namespace tessera
