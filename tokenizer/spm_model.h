// SentencePiece BPE over one text fragment: spaces become U+2581 "▁", characters merge
// pairwise by the highest token score (leftmost on ties) while the merged text is a
// token, and characters left outside the vocabulary fall back to <0xNN> byte tokens (or
// the unknown token). Immutable after Create; Encode is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/token_index.h"
#include "tokenizer/vocabulary.h"

namespace tessera {

inline constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

class SpmModel {
 public:
  // `vocab` and `index` must outlive the model.
  SpmModel(const Vocabulary& vocab, const TokenIndex& index);

  // Appends the ids of `text` (raw, spaces not yet escaped) to `out`.
  void Encode(std::string_view text, std::vector<int32_t>* out) const;

  // The raw bytes a token stands for: "▁" -> " ", "<0xNN>" byte tokens -> the byte.
  static std::string TokenTextToBytes(std::string_view text, TokenType type);

 private:
  int32_t Lookup(std::string_view text) const;

  const Vocabulary* vocab_;
  const TokenIndex* index_;
  std::array<int32_t, 256> byte_ids_{};
};

}  // namespace tessera
