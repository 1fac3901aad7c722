// tessera.v1 results in OpenAI's shapes: whole /v1/completions and /v1/chat/completions
// responses, their server-sent-event chunks, usage, and errors (OpenAI's error object with
// the HTTP status for each code). Finish reasons are OpenAI's "stop" and "length", plus
// Tessera's "deadline" (max_time) and "cancelled".
//
// One OpenAiResponder per request; not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/openai_request.h"
#include "nlohmann/json.hpp"
#include "tessera/v1/inference.pb.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

class OpenAiResponder {
 public:
  // `tokenizer` (token texts for logprobs) must outlive the responder.
  OpenAiResponder(const OpenAiRequest& request, std::string id, std::string model,
                  int64_t created_unix_seconds, const Tokenizer* tokenizer);

  // The whole response ("text_completion" or "chat.completion").
  nlohmann::json Whole(const tessera::v1::CompleteResponse& response) const;
  // The chunks for one streamed response: one per completion that has news; a chat
  // completion's first chunk carries its role.
  std::vector<nlohmann::json> Chunks(const tessera::v1::GenerateResponse& response);
  // The last chunk when stream_options.include_usage is set: no choices, the usage.
  nlohmann::json UsageChunk(const tessera::v1::Usage& usage) const;

 private:
  bool chat() const { return endpoint_ == OpenAiEndpoint::kChatCompletions; }
  nlohmann::json Envelope(const char* object) const;
  nlohmann::json Logprobs(
      const google::protobuf::RepeatedPtrField<tessera::v1::TokenInfo>& tokens) const;
  std::string TokenText(int32_t id) const;

  OpenAiEndpoint endpoint_;
  bool want_logprobs_;
  bool include_usage_;
  std::string id_;
  std::string model_;
  int64_t created_;
  const Tokenizer* tokenizer_;
  std::vector<int> role_sent_;  // chat completion indices whose role went out
};

nlohmann::json OpenAiUsage(const tessera::v1::Usage& usage);
const char* OpenAiFinishReason(tessera::v1::FinishReason reason);

// {"error": {"message", "type", "param", "code"}} for a non-OK status, and its HTTP status:
// 400 INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE, 401 UNAUTHENTICATED,
// 403 PERMISSION_DENIED, 404 NOT_FOUND, 409 ALREADY_EXISTS, 429 RESOURCE_EXHAUSTED,
// 499 CANCELLED, 501 UNIMPLEMENTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, else 500.
int HttpStatusFor(absl::StatusCode code);
nlohmann::json OpenAiErrorBody(const absl::Status& status);

// JSON text for the wire: bytes that are not UTF-8 (a token that is part of a character)
// become U+FFFD instead of failing.
std::string DumpJson(const nlohmann::json& j);

}  // namespace tessera
