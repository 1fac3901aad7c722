#include "kernels/cuda/attention_rows.h"

#include <algorithm>
#include <unordered_set>
#include <utility>

namespace tessera {
namespace {

// Appends entries [first, first + count) of one block table as tiles of at most
// kAttentionTileRows.
void AddTiles(int64_t first, int64_t count, AttentionRows* rows) {
  for (int64_t at = first; at < first + count; at += kAttentionTileRows) {
    const int64_t n = std::min(kAttentionTileRows, first + count - at);
    rows->tiles.push_back(static_cast<int32_t>(at));
    rows->tiles.push_back(static_cast<int32_t>(n));
    rows->multi_row_tiles = rows->multi_row_tiles || n > 1;
  }
}

}  // namespace

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
    AddTiles(rows.entries(), s.num_queries, &rows);
    for (int64_t i = s.query_start; i < s.query_start + s.num_queries; ++i) {
      rows.rows.push_back(static_cast<int32_t>(i));
      rows.context_lens.push_back(positions[i] + 1);
      rows.longest_context = std::max<int64_t>(rows.longest_context, positions[i] + 1);
      const size_t at = rows.tables.size();
      rows.tables.resize(at + rows.max_blocks, 0);
      std::copy_n(s.block_table.begin(), blocks, rows.tables.begin() + at);
    }
  }
  return rows;
}

AttentionRows ContiguousAttentionRows(std::span<const int32_t> positions) {
  AttentionRows rows;
  rows.max_blocks = 1;
  rows.tables.assign(positions.size(), 0);
  for (size_t i = 0; i < positions.size(); ++i) {
    rows.rows.push_back(static_cast<int32_t>(i));
    rows.context_lens.push_back(positions[i] + 1);
    rows.longest_context = std::max<int64_t>(rows.longest_context, positions[i] + 1);
  }
  AddTiles(0, static_cast<int64_t>(positions.size()), &rows);
  return rows;
}

void WidenAttentionTables(int64_t max_blocks, AttentionRows* rows) {
  if (max_blocks <= rows->max_blocks) return;
  std::vector<int32_t> wide(static_cast<size_t>(rows->entries() * max_blocks), 0);
  for (int64_t e = 0; e < rows->entries(); ++e) {
    std::copy_n(rows->tables.begin() + e * rows->max_blocks, rows->max_blocks,
                wide.begin() + e * max_blocks);
  }
  rows->tables = std::move(wide);
  rows->max_blocks = max_blocks;
}

AttentionSplits PlanAttentionSplits(int64_t entries, int64_t num_heads, int64_t longest_window,
                                    int64_t target_blocks) {
  const int64_t blocks = entries * num_heads;
  if (blocks <= 0 || blocks >= target_blocks || longest_window < 2 * kMinAttentionSplit) {
    return {};
  }
  const int64_t wanted = (target_blocks + blocks - 1) / blocks;
  const int64_t most = std::min(kMaxAttentionSplits, longest_window / kMinAttentionSplit);
  const int64_t splits = std::min(wanted, most);
  if (splits <= 1) return {};
  constexpr int64_t kGrain = cuda_shim::kDecodePass;  // whole passes of the decode kernel
  int64_t len = (longest_window + splits - 1) / splits;
  len = (len + kGrain - 1) / kGrain * kGrain;
  return {.num_splits = (longest_window + len - 1) / len, .split_len = len};
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
