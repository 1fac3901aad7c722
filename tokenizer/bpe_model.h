// Byte-level BPE (GPT-2 style) over one pre-tokenized piece: bytes map to GPT-2's printable
// codepoints, then adjacent symbols merge in the order of tokenizer.ggml.merges (lowest
// rank first, leftmost on ties). Immutable after Create; Encode is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "tokenizer/token_index.h"
#include "tokenizer/vocabulary.h"

namespace tessera {

class BpeModel {
 public:
  // `vocab` and `index` must outlive the model. INVALID_ARGUMENT naming
  // tokenizer.ggml.merges for a malformed merge entry.
  static absl::StatusOr<BpeModel> Create(const Vocabulary& vocab, const TokenIndex& index,
                                         bool ignore_merges);

  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    // Heap order: the lowest rank, then the leftmost pair, on top.
    bool operator<(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  // Working memory reused across the pieces of one text (one per thread/call).
  struct Scratch {
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string mapped;
  };

  // Appends the ids of `piece` (raw bytes, under 1 GiB) to `out`. A byte whose GPT-2
  // codepoint is not a token is dropped, as the reference implementation does.
  void Encode(std::string_view piece, std::vector<int32_t>* out, Scratch* scratch) const;

  // The raw bytes a normal token's text stands for (GPT-2 codepoints mapped back).
  static std::string TokenTextToBytes(std::string_view text);

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  const TokenIndex* index_ = nullptr;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_ids_{};  // -1 when the vocabulary lacks a byte's token
  absl::flat_hash_map<uint64_t, Merge> merges_;
};

}  // namespace tessera
