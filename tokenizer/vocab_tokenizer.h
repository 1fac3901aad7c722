// The Tokenizer over a Vocabulary: special-token partition, then byte-level BPE (with its
// pre-tokenizer) or SentencePiece on each text fragment; decoding through per-token byte
// strings computed once. Immutable after Create; thread-safe. Not copyable or movable:
// the token index and the models hold pointers into the object's own vocabulary.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_token_matcher.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/token_index.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocabulary.h"

namespace tessera {

class VocabTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<VocabTokenizer>> Create(Vocabulary vocab);
  VocabTokenizer(const VocabTokenizer&) = delete;
  VocabTokenizer& operator=(const VocabTokenizer&) = delete;

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const override;
  absl::StatusOr<std::string> TokenBytes(int32_t id) const override;
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids,
                                     bool skip_special) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const override { return vocab_.bos_id; }
  int32_t eos_id() const override { return vocab_.eos_id; }
  const std::vector<int32_t>& stop_ids() const override { return stop_ids_; }
  bool add_bos_default() const override { return add_bos_; }
  bool IsSpecial(int32_t id) const override;
  int32_t TokenId(std::string_view text) const override { return index_.Find(text); }
  const std::string& chat_template() const override { return vocab_.chat_template; }

 private:
  explicit VocabTokenizer(Vocabulary vocab);
  absl::Status CheckId(int32_t id) const;
  TokenType Type(int32_t id) const {
    return vocab_.types.empty() ? TokenType::kNormal : vocab_.types[id];
  }

  Vocabulary vocab_;
  TokenIndex index_;
  SpecialTokenMatcher specials_;
  std::optional<PreTokenizer> pre_tokenizer_;  // byte-level BPE only
  std::optional<BpeModel> bpe_;
  std::optional<SpmModel> spm_;
  std::vector<std::string> token_bytes_;  // id -> the bytes it decodes to
  std::vector<int32_t> stop_ids_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
};

}  // namespace tessera
