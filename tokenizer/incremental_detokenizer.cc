#include "tokenizer/incremental_detokenizer.h"

#include <span>

#include "common/status_macros.h"
#include "tokenizer/unicode_text.h"

namespace tessera {

absl::StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  std::string bytes;
  if (tokenizer_->IsSpecial(id)) {
    if (!skip_special_) {
      ASSIGN_OR_RETURN(bytes, tokenizer_->TokenBytes(id));
    }
  } else if (!seen_text_) {
    // Decode of a lone token applies the model's start-of-text rules.
    const int32_t one[1] = {id};
    ASSIGN_OR_RETURN(bytes, tokenizer_->Decode(std::span<const int32_t>(one), skip_special_));
    seen_text_ = true;
  } else {
    ASSIGN_OR_RETURN(bytes, tokenizer_->TokenBytes(id));
  }
  pending_.append(bytes);

  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const Utf8Prefix prefix = ValidUtf8Prefix(std::string_view(pending_).substr(pos));
    out.append(pending_, pos, prefix.valid_bytes);
    pos += prefix.valid_bytes;
    if (pos == pending_.size() || prefix.tail_incomplete) break;
    // A byte that cannot start or continue a character: replace it and go on.
    AppendUtf8(kReplacementChar, &out);
    ++pos;
  }
  pending_.erase(0, pos);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  if (!pending_.empty()) AppendUtf8(kReplacementChar, &out);
  pending_.clear();
  return out;
}

}  // namespace tessera
