// Streaming detokenization: token ids go in one at a time, text comes out that is always
// complete UTF-8. Bytes of a character split across tokens are held back until the
// character is complete; bytes that can never form a valid character come out as U+FFFD.
// SentencePiece's rule that the first text token loses its leading space is applied, so
// the concatenated output equals Tokenizer::Decode of the same ids (for valid UTF-8).
//
// One detokenizer per generated sequence; not thread-safe. The tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}

  // The text that `id` completes (possibly empty). INVALID_ARGUMENT naming the id when it
  // is outside the vocabulary; the state is unchanged then.
  absl::StatusOr<std::string> Push(int32_t id);

  // Ends the stream: a held-back incomplete tail comes out as U+FFFD.
  std::string Flush();

  // Bytes held back waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool seen_text_ = false;  // whether a non-special token has been decoded
  std::string pending_;
};

}  // namespace tessera
