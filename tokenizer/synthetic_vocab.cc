#include "tokenizer/synthetic_vocab.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

constexpr const char* kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::string Gpt2Text(uint8_t byte) {
  std::string s;
  AppendUtf8(ByteToGpt2Codepoint(byte), &s);
  return s;
}

absl::Status AddId(GgufWriter& writer, const char* key, int32_t id) {
  if (id < 0) return absl::OkStatus();
  return writer.AddUint32(key, static_cast<uint32_t>(id));
}

absl::Status AddFlag(GgufWriter& writer, const char* key, const std::optional<bool>& flag) {
  if (!flag.has_value()) return absl::OkStatus();
  return writer.AddBool(key, *flag);
}

}  // namespace

absl::StatusOr<Vocabulary> SyntheticVocabulary(int64_t vocab_size) {
  if (vocab_size < kMinSyntheticVocabSize || vocab_size > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "synthetic vocabulary: vocab_size %d must lie in [%d, %d]", vocab_size,
        kMinSyntheticVocabSize, INT32_MAX));
  }
  Vocabulary v;
  v.model = VocabModel::kByteLevelBpe;
  v.pre = "gpt-2";
  v.source = "synthetic vocabulary";
  v.tokens = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"};
  v.types.assign(v.tokens.size(), TokenType::kControl);
  v.bos_id = 0;
  v.eos_id = 1;
  v.eot_id = 3;
  v.add_bos = true;
  v.add_eos = false;
  v.chat_template = kChatMlTemplate;
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(Gpt2Text(static_cast<uint8_t>(b)));
    v.types.push_back(TokenType::kNormal);
  }
  const auto size = static_cast<size_t>(vocab_size);
  v.tokens.reserve(size);
  v.types.reserve(size);
  v.merges.reserve(size - v.tokens.size());
  // Pseudo-words: a first symbol (a space or a letter) then letters, built one letter at a
  // time, each from a token of the previous length (so every merge joins two tokens).
  std::vector<std::string> previous;
  for (char c = 'a'; c <= 'z'; ++c) previous.push_back(Gpt2Text(static_cast<uint8_t>(c)));
  previous.insert(previous.begin(), Gpt2Text(' '));
  while (v.tokens.size() < size) {
    std::vector<std::string> next;
    for (const std::string& prefix : previous) {
      for (char c = 'a'; c <= 'z' && v.tokens.size() < size; ++c) {
        const std::string letter(1, c);  // a..z are their own GPT-2 codepoints
        v.merges.push_back(prefix + " " + letter);
        v.tokens.push_back(prefix + letter);
        v.types.push_back(TokenType::kNormal);
        next.push_back(v.tokens.back());
      }
      if (v.tokens.size() >= size) break;
    }
    previous = std::move(next);
  }
  return v;
}

absl::Status AddVocabularyToGguf(const Vocabulary& v, GgufWriter& writer) {
  const bool bpe = v.model == VocabModel::kByteLevelBpe;
  RETURN_IF_ERROR(writer.AddString("tokenizer.ggml.model", bpe ? "gpt2" : "llama"));
  if (bpe) RETURN_IF_ERROR(writer.AddString("tokenizer.ggml.pre", v.pre));
  RETURN_IF_ERROR(writer.AddStringArray("tokenizer.ggml.tokens", v.tokens));
  if (!v.types.empty()) {
    std::vector<int32_t> types;
    types.reserve(v.types.size());
    for (TokenType t : v.types) types.push_back(static_cast<int32_t>(t));
    RETURN_IF_ERROR(writer.AddValue("tokenizer.ggml.token_type", GgufValue::I32Array(types)));
  }
  if (!v.scores.empty()) {
    RETURN_IF_ERROR(writer.AddValue("tokenizer.ggml.scores", GgufValue::F32Array(v.scores)));
  }
  if (bpe) RETURN_IF_ERROR(writer.AddStringArray("tokenizer.ggml.merges", v.merges));
  RETURN_IF_ERROR(AddId(writer, "tokenizer.ggml.bos_token_id", v.bos_id));
  RETURN_IF_ERROR(AddId(writer, "tokenizer.ggml.eos_token_id", v.eos_id));
  RETURN_IF_ERROR(AddId(writer, "tokenizer.ggml.eot_token_id", v.eot_id));
  RETURN_IF_ERROR(AddId(writer, "tokenizer.ggml.eom_token_id", v.eom_id));
  RETURN_IF_ERROR(AddId(writer, "tokenizer.ggml.unknown_token_id", v.unk_id));
  RETURN_IF_ERROR(AddId(writer, "tokenizer.ggml.padding_token_id", v.pad_id));
  RETURN_IF_ERROR(AddFlag(writer, "tokenizer.ggml.add_bos_token", v.add_bos));
  RETURN_IF_ERROR(AddFlag(writer, "tokenizer.ggml.add_eos_token", v.add_eos));
  RETURN_IF_ERROR(AddFlag(writer, "tokenizer.ggml.add_space_prefix", v.add_space_prefix));
  if (!v.chat_template.empty()) {
    RETURN_IF_ERROR(writer.AddString("tokenizer.chat_template", v.chat_template));
  }
  return absl::OkStatus();
}

}  // namespace tessera
