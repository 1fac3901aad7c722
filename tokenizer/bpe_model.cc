#include "tokenizer/bpe_model.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "tokenizer/unicode_text.h"

namespace tessera {

absl::StatusOr<BpeModel> BpeModel::Create(const Vocabulary& vocab, const TokenIndex& index,
                                          bool ignore_merges) {
  BpeModel model;
  model.index_ = &index;
  model.ignore_merges_ = ignore_merges;
  for (int b = 0; b < 256; ++b) {
    std::string text;
    AppendUtf8(ByteToGpt2Codepoint(static_cast<uint8_t>(b)), &text);
    model.byte_ids_[b] = index.Find(text);
  }
  model.merges_.reserve(vocab.merges.size());
  std::string merged;
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string& entry = vocab.merges[rank];
    // The separator is the first space after position 0 (a part may itself be a space).
    const size_t space = entry.find(' ', 1);
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: tokenizer.ggml.merges[%d] = \"%s\" is not \"left right\"", vocab.source, rank,
          entry));
    }
    const std::string_view left(entry.data(), space);
    const std::string_view right(entry.data() + space + 1, entry.size() - space - 1);
    const int32_t left_id = index.Find(left);
    const int32_t right_id = index.Find(right);
    merged.assign(left);
    merged.append(right);
    const int32_t merged_id = index.Find(merged);
    // A merge whose parts or result are not tokens can never fire on token symbols.
    if (left_id < 0 || right_id < 0 || merged_id < 0) continue;
    model.merges_.try_emplace(PairKey(left_id, right_id),
                              Merge{static_cast<int32_t>(rank), merged_id});
  }
  return model;
}

void BpeModel::Encode(std::string_view piece, std::vector<int32_t>* out,
                      Scratch* scratch) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(piece[0])];
    if (id >= 0) out->push_back(id);
    return;
  }
  if (ignore_merges_) {
    std::string& mapped = scratch->mapped;
    mapped.clear();
    for (char c : piece) AppendUtf8(ByteToGpt2Codepoint(static_cast<uint8_t>(c)), &mapped);
    const int32_t id = index_->Find(mapped);
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }

  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol>& symbols = scratch->symbols;
  symbols.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::vector<Candidate>& heap = scratch->heap;
  heap.clear();
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0 || symbols[left].id < 0 || symbols[right].id < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, symbols[left].id, symbols[right].id});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.left];
    // Stale entries: either side has merged since this candidate was pushed.
    if (left.id != top.left_id || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != top.right_id) continue;
    left.id = merges_.find(PairKey(top.left_id, top.right_id))->second.merged_id;
    const int32_t after = right.next;
    right.id = -2;  // dead
    left.next = after;
    if (after >= 0) symbols[after].prev = top.left;
    consider(left.prev);
    consider(top.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) out->push_back(symbols[i].id);
  }
}

std::string BpeModel::TokenTextToBytes(std::string_view text) {
  std::string bytes;
  bytes.reserve(text.size());
  const std::vector<CodepointSpan> cps = DecodeUtf8Lenient(text);
  for (size_t i = 0; i + 1 < cps.size(); ++i) {
    const int b = Gpt2CodepointToByte(cps[i].cp);
    if (b >= 0) {
      bytes.push_back(static_cast<char>(b));
    } else {
      // Not a GPT-2 byte codepoint (a hand-added token): keep its own UTF-8.
      bytes.append(text.substr(cps[i].byte_offset, cps[i + 1].byte_offset - cps[i].byte_offset));
    }
  }
  return bytes;
}

}  // namespace tessera
