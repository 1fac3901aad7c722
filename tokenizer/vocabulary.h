// The plain description of a tokenizer vocabulary, independent of where it was stored:
// tokens, their scores and types, BPE merges, special ids and flags. VocabularyFromGguf
// reads it from a GGUF file's tokenizer.* metadata; tests may also build one by hand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

class GgufFile;

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class VocabModel {
  kByteLevelBpe,   // tokenizer.ggml.model "gpt2"
  kSentencePiece,  // tokenizer.ggml.model "llama"
};

struct Vocabulary {
  VocabModel model = VocabModel::kByteLevelBpe;
  std::string pre = "default";      // tokenizer.ggml.pre (byte-level BPE only)
  std::vector<std::string> tokens;  // id -> text
  std::vector<float> scores;        // empty, or one per token (SentencePiece merge priority)
  std::vector<TokenType> types;     // empty (all normal), or one per token
  std::vector<std::string> merges;  // "left right", ranked by position (byte-level BPE)
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;
  int32_t eom_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  // Unset means the model family's default (SentencePiece: BOS and space prefix on).
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
  std::optional<bool> add_space_prefix;
  std::string chat_template;    // tokenizer.chat_template, may be empty
  std::string source = "vocabulary";  // names the origin in error messages (file path)
};

// Reads tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,*_token_id,add_*} and
// tokenizer.chat_template. INVALID_ARGUMENT naming the file and key when a key is missing,
// ill-typed, inconsistent (array lengths, ids out of range) or names an unknown model.
absl::StatusOr<Vocabulary> VocabularyFromGguf(const GgufFile& file);

}  // namespace tessera
