// Pre-tokenization for byte-level BPE: the text is cut into pieces by the ordered list of
// regexes that tokenizer.ggml.pre names (each regex re-splits the pieces of the previous
// one; both matches and the gaps between them become pieces), the way the reference
// implementation (llama.cpp's llama-vocab.cpp) defines each family. Immutable after
// creation; Split may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/split_regex.h"

namespace tessera {

// What a tokenizer.ggml.pre value implies besides its regexes.
struct PreTokenizerSpec {
  std::string name;
  std::vector<std::string> patterns;
  bool ignore_merges = false;  // a piece that is itself a token is emitted whole (tiktoken)
  bool add_bos_default = false;
};

// INVALID_ARGUMENT naming tokenizer.ggml.pre and the value when the family is unknown.
absl::StatusOr<PreTokenizerSpec> PreTokenizerSpecForName(std::string_view pre);

class PreTokenizer {
 public:
  static absl::StatusOr<PreTokenizer> Create(const std::vector<std::string>& patterns);

  // Byte ranges [begin, end) of the pieces of `text` (under 4 GiB: offsets are 32-bit),
  // in order, covering every byte. Time is linear in the text for the built-in families.
  std::vector<std::pair<uint32_t, uint32_t>> Split(std::string_view text) const;

 private:
  std::vector<SplitRegex> regexes_;
};

}  // namespace tessera
