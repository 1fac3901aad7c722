// Turns a request's replica events (token ids) into tessera.v1 text: per completion an
// incremental detokenizer and the stop-string hold-back, so a stream never shows part of a
// stop string or of a UTF-8 character, and the streamed deltas concatenate to exactly the
// text Complete returns. Stop ids (EOS, stop_token_ids) end a completion without text.
//
// One per request; not thread-safe (the replica's thread feeds it, one event at a time).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/replica.h"
#include "decoding/stop_strings.h"
#include "tessera/v1/inference.pb.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

class CompletionStream {
 public:
  // `tokenizer` must outlive the stream; `stop_ids` and `stop_strings` are the request's.
  CompletionStream(const Tokenizer* tokenizer, std::string request_id, int prompt_tokens,
                   std::vector<int32_t> stop_ids, std::vector<std::string> stop_strings);

  // The response for one event (deltas with new text; in the last event finish reasons,
  // scores and usage). INTERNAL when a token id is outside the vocabulary.
  [[nodiscard]] absl::StatusOr<tessera::v1::GenerateResponse> Next(const ReplicaEvent& event);

  // The whole result so far, for Complete (call after the last event).
  tessera::v1::CompleteResponse Whole(const std::string& model) const;

 private:
  struct Completion {
    explicit Completion(const Tokenizer& tokenizer, std::vector<std::string> stops)
        : detokenizer(tokenizer), stops(std::move(stops)) {}
    IncrementalDetokenizer detokenizer;
    StopStringMatcher stops;
    bool ended = false;  // a stop id or stop string was seen
    std::optional<int32_t> stop_token_id;
    tessera::v1::Completion whole;  // everything so far
    int64_t generated = 0;          // tokens, stop tokens included
  };
  Completion& At(int index);
  // Text of the tokens, appended to `delta` (and the completion's whole text).
  [[nodiscard]] absl::Status AddTokens(const ReplicaEvent::Delta& d,
                                       tessera::v1::CompletionDelta* delta);
  void AddText(Completion& c, std::string text, tessera::v1::CompletionDelta* delta);
  void TokenText(int32_t id, std::string* text) const;

  const Tokenizer* tokenizer_;
  std::string request_id_;
  int prompt_tokens_;
  std::vector<int32_t> stop_ids_;
  std::vector<std::string> stop_strings_;
  std::deque<Completion> completions_;  // by index; elements never move
};

}  // namespace tessera
