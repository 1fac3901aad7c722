// Text <-> token ids for the vocabularies GGUF files carry: byte-level BPE ("gpt2" model,
// with the pre-tokenizer named by tokenizer.ggml.pre) and SentencePiece BPE ("llama" model,
// scores + byte fallback). Immutable after creation; safe to use from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/vocabulary.h"

namespace tessera {

class GgufFile;

struct EncodeOptions {
  bool add_bos = true;        // only if the vocabulary's add_bos flag also says so
  bool parse_special = true;  // "<|im_start|>" in the text becomes its special token
  bool add_eos = true;        // only if the vocabulary's add_eos flag also says so
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Builds the tokenizer a GGUF file describes. INVALID_ARGUMENT naming the file and key for
  // missing/ill-typed metadata or an unknown tokenizer.ggml.model / tokenizer.ggml.pre.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);
  // Same from an in-memory description (see vocabulary.h).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromVocabulary(Vocabulary vocab);

  // INVALID_ARGUMENT (naming the vocabulary's source) when BOS/EOS must be added but the
  // vocabulary has no such id, or for text of 1 GiB or more. Like the reference
  // implementation, byte-level BPE drops input bytes for which the vocabulary has no byte
  // token (many lack C0, C1 and F5..FF, which never occur in valid UTF-8).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      const EncodeOptions& options) const = 0;
  // The bytes one token stands for (special tokens render as their text). May be a partial
  // UTF-8 sequence; INVALID_ARGUMENT for an id outside the vocabulary.
  virtual absl::StatusOr<std::string> TokenBytes(int32_t id) const = 0;
  // Concatenated bytes of `ids` with the model's decoding rules (SentencePiece: the space
  // that encoding put before the first text drops). Invalid UTF-8 at the end is kept as
  // is; use IncrementalDetokenizer for streaming. skip_special drops control tokens.
  virtual absl::StatusOr<std::string> Decode(std::span<const int32_t> ids,
                                             bool skip_special = false) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  // Every id that ends generation (EOS, EOT, EOM, <|im_end|>, <|eot_id|>, ...), ascending.
  virtual const std::vector<int32_t>& stop_ids() const = 0;
  virtual bool add_bos_default() const = 0;
  // Control (and unknown) tokens: rendered as text by TokenBytes, dropped by skip_special.
  virtual bool IsSpecial(int32_t id) const = 0;
  // Id of a token whose text is exactly `text`, or -1.
  virtual int32_t TokenId(std::string_view text) const = 0;
  // tokenizer.chat_template from the model, empty when it has none.
  virtual const std::string& chat_template() const = 0;
};

}  // namespace tessera
