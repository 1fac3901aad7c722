// A made-up byte-level BPE vocabulary of any size, for synthesized random-weight models
// (model/synthetic_model.h), and the writer of a Vocabulary into GGUF tokenizer.* keys.
//
// The synthetic vocabulary ("gpt2" model, "gpt-2" pre-tokenizer, ChatML chat template):
//   0 <|begin_of_text|> (BOS, added by default), 1 <|end_of_text|> (EOS),
//   2 <|im_start|>, 3 <|im_end|> (EOT) — control tokens;
//   4..259 the 256 byte tokens (any text encodes, and decodes back to the same bytes);
//   then pseudo-words ("Ġa".."zz", then three letters, ...), each with the merge that builds
//   it from a shorter one, until `vocab_size` tokens. The same size always gives the same
//   vocabulary. Pure functions; thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "formats/gguf_writer.h"
#include "tokenizer/vocabulary.h"

namespace tessera {

// Specials plus byte tokens: the smallest synthetic vocabulary.
inline constexpr int64_t kMinSyntheticVocabSize = 260;

// INVALID_ARGUMENT when vocab_size is below kMinSyntheticVocabSize or above INT32_MAX.
absl::StatusOr<Vocabulary> SyntheticVocabulary(int64_t vocab_size);

// Adds tokenizer.ggml.{model,pre,tokens,token_type,scores (when present),merges (byte-level
// BPE),bos/eos/eot/eom/unknown/padding_token_id (when set),add_bos/add_eos/add_space_prefix
// (when set)} and tokenizer.chat_template (when not empty) so that VocabularyFromGguf reads
// `vocab` back. INVALID_ARGUMENT from the writer when a key was already added.
[[nodiscard]] absl::Status AddVocabularyToGguf(const Vocabulary& vocab, GgufWriter& writer);

}  // namespace tessera
