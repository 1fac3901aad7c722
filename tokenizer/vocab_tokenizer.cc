#include "tokenizer/vocab_tokenizer.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

constexpr size_t kMaxEncodeBytes = size_t{1} << 30;

// Token texts that end a turn in the chat formats we know; the reference implementation
// treats them as end-of-generation whatever the metadata says.
constexpr std::string_view kStopTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<|return|>", "<|call|>",
    "<｜end▁of▁sentence｜>"};

}  // namespace

VocabTokenizer::VocabTokenizer(Vocabulary vocab)
    : vocab_(std::move(vocab)), index_(vocab_.tokens), specials_(vocab_) {}

absl::StatusOr<std::unique_ptr<VocabTokenizer>> VocabTokenizer::Create(Vocabulary vocab) {
  const size_t n = vocab.tokens.size();
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: tokenizer.ggml.tokens is empty", vocab.source));
  }
  if (!vocab.types.empty() && vocab.types.size() != n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: tokenizer.ggml.token_type has %d entries for %d tokens", vocab.source,
        vocab.types.size(), n));
  }
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: tokenizer.ggml.scores has %d entries for %d tokens", vocab.source,
        vocab.scores.size(), n));
  }
  for (auto [key, id] : {std::pair{"bos_token_id", vocab.bos_id}, {"eos_token_id", vocab.eos_id},
                         {"eot_token_id", vocab.eot_id}, {"eom_token_id", vocab.eom_id},
                         {"unknown_token_id", vocab.unk_id}, {"padding_token_id", vocab.pad_id}}) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: tokenizer.ggml.%s = %d is outside the vocabulary of %d", vocab.source, key, id, n));
    }
  }

  std::unique_ptr<VocabTokenizer> tok(new VocabTokenizer(std::move(vocab)));
  const Vocabulary& v = tok->vocab_;
  if (v.model == VocabModel::kByteLevelBpe) {
    absl::StatusOr<PreTokenizerSpec> spec = PreTokenizerSpecForName(v.pre);
    if (!spec.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: %s", v.source, spec.status().message()));
    }
    ASSIGN_OR_RETURN(PreTokenizer pre, PreTokenizer::Create(spec->patterns));
    tok->pre_tokenizer_.emplace(std::move(pre));
    ASSIGN_OR_RETURN(BpeModel bpe, BpeModel::Create(v, tok->index_, spec->ignore_merges));
    tok->bpe_.emplace(std::move(bpe));
    tok->add_bos_ = v.add_bos.value_or(spec->add_bos_default);
    tok->add_space_prefix_ = v.add_space_prefix.value_or(false);
  } else {
    tok->spm_.emplace(v, tok->index_);
    tok->add_bos_ = v.add_bos.value_or(true);
    tok->add_space_prefix_ = v.add_space_prefix.value_or(true);
  }
  tok->add_eos_ = v.add_eos.value_or(false);

  tok->token_bytes_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    const TokenType type = tok->Type(static_cast<int32_t>(id));
    const std::string& text = v.tokens[id];
    if (type == TokenType::kControl || type == TokenType::kUserDefined ||
        type == TokenType::kUnknown) {
      // Special and added tokens render as written (SentencePiece's ▁ still means space).
      tok->token_bytes_.push_back(v.model == VocabModel::kSentencePiece
                                      ? SpmModel::TokenTextToBytes(text, TokenType::kNormal)
                                      : text);
    } else if (v.model == VocabModel::kByteLevelBpe) {
      tok->token_bytes_.push_back(BpeModel::TokenTextToBytes(text));
    } else {
      tok->token_bytes_.push_back(SpmModel::TokenTextToBytes(text, type));
    }
  }

  std::vector<int32_t>& stops = tok->stop_ids_;
  for (int32_t id : {v.eos_id, v.eot_id, v.eom_id}) {
    if (id >= 0) stops.push_back(id);
  }
  for (std::string_view text : kStopTexts) {
    const int32_t id = tok->index_.Find(text);
    if (id >= 0) stops.push_back(id);
  }
  // "</s>" ends generation only where it is a control token (SentencePiece's EOS).
  if (const int32_t id = tok->index_.Find("</s>"); id >= 0 && tok->Type(id) == TokenType::kControl) {
    stops.push_back(id);
  }
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
  return tok;
}

absl::StatusOr<std::vector<int32_t>> VocabTokenizer::Encode(std::string_view text,
                                                            const EncodeOptions& options) const {
  // Offsets inside the models are 32-bit (codepoint spans, symbol indices; SentencePiece
  // triples the size of spaces).
  if (text.size() >= kMaxEncodeBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: text of %d bytes is too long to encode (limit %d)", vocab_.source, text.size(),
        kMaxEncodeBytes - 1));
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (options.add_bos && add_bos_) {
    if (vocab_.bos_id < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: add_bos_token is set but tokenizer.ggml.bos_token_id is missing", vocab_.source));
    }
    out.push_back(vocab_.bos_id);
  }
  bool after_special = true;  // SentencePiece prefixes a space to text that starts a run
  std::string prefixed;
  BpeModel::Scratch scratch;
  for (const TextFragment& fragment : specials_.Partition(text, options.parse_special)) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
      after_special = true;
      continue;
    }
    if (spm_.has_value()) {
      if (add_space_prefix_ && after_special) {
        prefixed.clear();
        prefixed.push_back(' ');
        prefixed.append(fragment.text);
        spm_->Encode(prefixed, &out);
      } else {
        spm_->Encode(fragment.text, &out);
      }
    } else {
      for (const auto& [begin, end] : pre_tokenizer_->Split(fragment.text)) {
        bpe_->Encode(fragment.text.substr(begin, end - begin), &out, &scratch);
      }
    }
    after_special = false;
  }
  if (options.add_eos && add_eos_) {
    if (vocab_.eos_id < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: add_eos_token is set but tokenizer.ggml.eos_token_id is missing", vocab_.source));
    }
    out.push_back(vocab_.eos_id);
  }
  return out;
}

absl::Status VocabTokenizer::CheckId(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "token id %d is outside the vocabulary of %d tokens (%s)", id, vocab_size(),
        vocab_.source));
  }
  return absl::OkStatus();
}

bool VocabTokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  const TokenType type = Type(id);
  return type == TokenType::kControl || type == TokenType::kUnknown;
}

absl::StatusOr<std::string> VocabTokenizer::TokenBytes(int32_t id) const {
  RETURN_IF_ERROR(CheckId(id));
  return token_bytes_[id];
}

absl::StatusOr<std::string> VocabTokenizer::Decode(std::span<const int32_t> ids,
                                                   bool skip_special) const {
  std::string out;
  bool strip_space = spm_.has_value() && add_space_prefix_;
  for (int32_t id : ids) {
    RETURN_IF_ERROR(CheckId(id));
    if (IsSpecial(id)) {
      if (!skip_special) out.append(token_bytes_[id]);
      continue;
    }
    const std::string& bytes = token_bytes_[id];
    if (strip_space && !bytes.empty() && bytes[0] == ' ') {
      out.append(bytes, 1);
    } else {
      out.append(bytes);
    }
    strip_space = false;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromVocabulary(Vocabulary vocab) {
  ASSIGN_OR_RETURN(std::unique_ptr<VocabTokenizer> tok, VocabTokenizer::Create(std::move(vocab)));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  ASSIGN_OR_RETURN(Vocabulary vocab, VocabularyFromGguf(file));
  return FromVocabulary(std::move(vocab));
}

}  // namespace tessera
