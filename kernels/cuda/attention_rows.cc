#include "kernels/cuda/attention_rows.h"

#include <algorithm>
#include <unordered_set>

namespace tessera {

AttentionRows PagedAttentionRows(std::span<const int32_t> positions,
                                 std::span<const PagedSequence> sequences, int64_t block_size) {
  AttentionRows rows;
  for (const PagedSequence& s : sequences) {
    rows.max_blocks = std::max(rows.max_blocks, (s.context_len + block_size - 1) / block_size);
  }
  rows.max_blocks = std::max<int64_t>(rows.max_blocks, 1);
  for (const PagedSequence& s : sequences) {
    if (s.num_queries == 0) continue;
    const int64_t blocks = (s.context_len + block_size - 1) / block_size;
    AttentionRows::Run* run = rows.runs.empty() ? nullptr : &rows.runs.back();
    if (run == nullptr || run->first_row + run->count != s.query_start) {
      rows.runs.push_back({.first_row = s.query_start,
                           .count = 0,
                           .first_entry = static_cast<int64_t>(rows.context_lens.size())});
      run = &rows.runs.back();
    }
    for (int64_t i = s.query_start; i < s.query_start + s.num_queries; ++i) {
      rows.context_lens.push_back(positions[i] + 1);
      const size_t at = rows.tables.size();
      rows.tables.resize(at + rows.max_blocks, 0);
      std::copy_n(s.block_table.begin(), blocks, rows.tables.begin() + at);
      ++run->count;
    }
  }
  return rows;
}

AttentionRows ContiguousAttentionRows(std::span<const int32_t> positions) {
  AttentionRows rows;
  rows.max_blocks = 1;
  rows.tables.assign(positions.size(), 0);
  for (int32_t p : positions) rows.context_lens.push_back(p + 1);
  if (!positions.empty()) {
    rows.runs.push_back({.first_row = 0, .count = static_cast<int64_t>(positions.size()),
                         .first_entry = 0});
  }
  return rows;
}

std::vector<int32_t> LastWriterSlots(std::span<const int32_t> slots) {
  std::vector<int32_t> out(slots.begin(), slots.end());
  std::unordered_set<int32_t> seen;
  for (size_t i = out.size(); i-- > 0;) {
    if (out[i] == kPaddingSlot) continue;
    if (!seen.insert(out[i]).second) out[i] = kPaddingSlot;
  }
  return out;
}

}  // namespace tessera
