// The GGUF adapter: tokenizer.* metadata -> Vocabulary.
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "formats/gguf_reader.h"
#include "tokenizer/vocabulary.h"

namespace tessera {
namespace {

absl::Status KeyError(const GgufFile& file, std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: metadata key %s: %s", file.path(), key, what));
}

// Optional token id: absent keeps -1; present must lie inside the vocabulary.
absl::Status ReadId(const GgufFile& file, std::string_view key, int32_t n_tokens,
                    int32_t* id) {
  if (file.Find(key) == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(const int64_t value, file.GetInt(key));
  if (value < 0 || value >= n_tokens) {
    return KeyError(file, key,
                    absl::StrFormat("token id %d outside the vocabulary of %d", value, n_tokens));
  }
  *id = static_cast<int32_t>(value);
  return absl::OkStatus();
}

absl::Status ReadFlag(const GgufFile& file, std::string_view key, std::optional<bool>* flag) {
  if (file.Find(key) == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(const bool value, file.GetBool(key));
  *flag = value;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Vocabulary> VocabularyFromGguf(const GgufFile& file) {
  Vocabulary vocab;
  vocab.source = file.path();
  ASSIGN_OR_RETURN(const std::string model, file.GetString("tokenizer.ggml.model"));
  if (model == "gpt2") {
    vocab.model = VocabModel::kByteLevelBpe;
  } else if (model == "llama") {
    vocab.model = VocabModel::kSentencePiece;
  } else {
    return KeyError(file, "tokenizer.ggml.model",
                    absl::StrFormat("unsupported tokenizer model \"%s\" (supported: gpt2, llama)",
                                    model));
  }
  if (file.Find("tokenizer.ggml.pre") != nullptr) {
    ASSIGN_OR_RETURN(vocab.pre, file.GetString("tokenizer.ggml.pre"));
  }
  ASSIGN_OR_RETURN(vocab.tokens, file.GetStringArray("tokenizer.ggml.tokens"));
  const auto n = static_cast<int64_t>(vocab.tokens.size());
  if (n == 0 || n > INT32_MAX) return KeyError(file, "tokenizer.ggml.tokens", "empty or too large");

  if (file.Find("tokenizer.ggml.scores") != nullptr) {
    ASSIGN_OR_RETURN(const std::vector<double> scores, file.GetFloatArray("tokenizer.ggml.scores"));
    if (static_cast<int64_t>(scores.size()) != n) {
      return KeyError(file, "tokenizer.ggml.scores",
                      absl::StrFormat("%d scores for %d tokens", scores.size(), n));
    }
    vocab.scores.assign(scores.begin(), scores.end());
  } else if (vocab.model == VocabModel::kSentencePiece) {
    return KeyError(file, "tokenizer.ggml.scores", "missing (required by the llama model)");
  }
  if (file.Find("tokenizer.ggml.token_type") != nullptr) {
    ASSIGN_OR_RETURN(const std::vector<int64_t> types,
                     file.GetIntArray("tokenizer.ggml.token_type"));
    if (static_cast<int64_t>(types.size()) != n) {
      return KeyError(file, "tokenizer.ggml.token_type",
                      absl::StrFormat("%d types for %d tokens", types.size(), n));
    }
    vocab.types.reserve(types.size());
    for (int64_t t : types) {
      vocab.types.push_back(t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::kUndefined);
    }
  }
  if (vocab.model == VocabModel::kByteLevelBpe) {
    ASSIGN_OR_RETURN(vocab.merges, file.GetStringArray("tokenizer.ggml.merges"));
  }
  const auto n32 = static_cast<int32_t>(n);
  RETURN_IF_ERROR(ReadId(file, "tokenizer.ggml.bos_token_id", n32, &vocab.bos_id));
  RETURN_IF_ERROR(ReadId(file, "tokenizer.ggml.eos_token_id", n32, &vocab.eos_id));
  RETURN_IF_ERROR(ReadId(file, "tokenizer.ggml.eot_token_id", n32, &vocab.eot_id));
  RETURN_IF_ERROR(ReadId(file, "tokenizer.ggml.eom_token_id", n32, &vocab.eom_id));
  RETURN_IF_ERROR(ReadId(file, "tokenizer.ggml.unknown_token_id", n32, &vocab.unk_id));
  RETURN_IF_ERROR(ReadId(file, "tokenizer.ggml.padding_token_id", n32, &vocab.pad_id));
  RETURN_IF_ERROR(ReadFlag(file, "tokenizer.ggml.add_bos_token", &vocab.add_bos));
  RETURN_IF_ERROR(ReadFlag(file, "tokenizer.ggml.add_eos_token", &vocab.add_eos));
  RETURN_IF_ERROR(ReadFlag(file, "tokenizer.ggml.add_space_prefix", &vocab.add_space_prefix));
  if (file.Find("tokenizer.chat_template") != nullptr) {
    ASSIGN_OR_RETURN(vocab.chat_template, file.GetString("tokenizer.chat_template"));
  }
  return vocab;
}

}  // namespace tessera
