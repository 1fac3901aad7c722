#include "tokenizer/spm_model.h"

#include <queue>

#include "absl/strings/str_format.h"
#include "tokenizer/unicode_text.h"

namespace tessera {

SpmModel::SpmModel(const Vocabulary& vocab, const TokenIndex& index)
    : vocab_(&vocab), index_(&index) {
  for (int b = 0; b < 256; ++b) byte_ids_[b] = index.Find(absl::StrFormat("<0x%02X>", b));
}

int32_t SpmModel::Lookup(std::string_view text) const {
  const int32_t id = index_->Find(text);
  // Control tokens (<s>, </s>) never come out of plain text.
  if (id >= 0 && !vocab_->types.empty() && vocab_->types[id] == TokenType::kControl) return -1;
  return id;
}

void SpmModel::Encode(std::string_view raw, std::vector<int32_t>* out) const {
  std::string text;
  text.reserve(raw.size() + 8);
  for (char c : raw) {
    if (c == ' ') {
      text.append(kSpmSpace);
    } else {
      text.push_back(c);
    }
  }
  if (text.empty()) return;

  struct Symbol {
    uint32_t begin;
    uint32_t size;  // 0 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    float score;
    int32_t left;
    uint32_t size;  // bytes of the merged text, to detect stale entries
    bool operator<(const Candidate& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  const std::vector<CodepointSpan> cps = DecodeUtf8Lenient(text);
  const auto n = static_cast<int32_t>(cps.size() - 1);
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {cps[i].byte_offset, cps[i + 1].byte_offset - cps[i].byte_offset, i - 1,
                  i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[l.next];
    const uint32_t size = l.size + r.size;
    const int32_t id = Lookup(std::string_view(text).substr(l.begin, size));
    if (id < 0) return;
    const float score = vocab_->scores.empty() ? 0.0f : vocab_->scores[id];
    queue.push({score, left, size});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    if (left.size == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (left.size + right.size != top.size) continue;  // one side changed since the push
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.left;
    consider(left.prev);
    consider(top.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = std::string_view(text).substr(symbols[i].begin, symbols[i].size);
    const int32_t id = Lookup(piece);
    if (id >= 0) {
      out->push_back(id);
      continue;
    }
    for (char c : piece) {
      const int32_t byte_id = byte_ids_[static_cast<uint8_t>(c)];
      if (byte_id >= 0) {
        out->push_back(byte_id);
      } else if (vocab_->unk_id >= 0) {
        out->push_back(vocab_->unk_id);
        break;  // one unknown token for the whole character, as SentencePiece does
      }
    }
  }
}

std::string SpmModel::TokenTextToBytes(std::string_view text, TokenType type) {
  if (type == TokenType::kByte && text.size() == 6 && text.substr(0, 3) == "<0x" &&
      text[5] == '>') {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    const int hi = hex(text[3]), lo = hex(text[4]);
    if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
  }
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text.substr(i, 3) == kSpmSpace) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

}  // namespace tessera
