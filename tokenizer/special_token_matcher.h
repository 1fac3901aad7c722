// Finds special and added tokens (CONTROL, USER_DEFINED, UNKNOWN types) in raw text so
// that they are encoded as single ids and never reach BPE. At each position the longest
// token that matches wins; control and unknown tokens are only recognised when the caller
// asks to parse special tokens, user-defined ones always. Immutable; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocabulary.h"

namespace tessera {

// A fragment of the input: either raw text or one special token id.
struct TextFragment {
  std::string_view text;  // empty for a token
  int32_t token = -1;     // -1 for text
};

class SpecialTokenMatcher {
 public:
  // `vocab` must outlive the matcher.
  explicit SpecialTokenMatcher(const Vocabulary& vocab);

  std::vector<TextFragment> Partition(std::string_view text, bool parse_special) const;

 private:
  const Vocabulary* vocab_;
  // Candidate ids by first byte, longest text first.
  std::vector<int32_t> by_first_byte_[256];
};

}  // namespace tessera
