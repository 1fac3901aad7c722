#include "kernels/paged_kv.h"

#include <cstddef>
#include <cstring>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

absl::Status Invalid(std::string_view backend, std::string_view op, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s %s: %s", backend, op, what));
}

// The sequences' row ranges, positions and the table entries they read.
absl::Status CheckSequences(std::string_view backend, std::string_view op, int64_t n_tokens,
                            std::span<const int32_t> positions,
                            std::span<const PagedSequence> sequences,
                            const PagedKvLayout& layout) {
  if (static_cast<int64_t>(positions.size()) != n_tokens) {
    return Invalid(backend, op,
                   absl::StrFormat("positions.size()=%d does not match n_tokens=%d",
                                   positions.size(), n_tokens));
  }
  int64_t prev_end = 0;
  for (size_t s = 0; s < sequences.size(); ++s) {
    const PagedSequence& seq = sequences[s];
    if (seq.query_start < prev_end || seq.num_queries < 0 ||
        seq.query_start + seq.num_queries > n_tokens) {
      return Invalid(backend, op,
                     absl::StrFormat("sequences[%d] rows [query_start=%d, +num_queries=%d) must "
                                     "follow the previous sequence's rows and lie in [0, %d)",
                                     s, seq.query_start, seq.num_queries, n_tokens));
    }
    prev_end = seq.query_start + seq.num_queries;
    const int64_t capacity = static_cast<int64_t>(seq.block_table.size()) * layout.block_size;
    if (seq.context_len < 0 || seq.context_len > capacity) {
      return Invalid(backend, op,
                     absl::StrFormat("sequences[%d].context_len=%d is outside [0, %d] "
                                     "(block_table.size()=%d x block_size=%d)",
                                     s, seq.context_len, capacity, seq.block_table.size(),
                                     layout.block_size));
    }
    const int64_t blocks_read = (seq.context_len + layout.block_size - 1) / layout.block_size;
    for (int64_t b = 0; b < blocks_read; ++b) {
      const int32_t id = seq.block_table[b];
      if (id < 0 || id >= layout.num_blocks) {
        return Invalid(backend, op,
                       absl::StrFormat("sequences[%d].block_table[%d]=%d is outside [0, %d)", s,
                                       b, id, layout.num_blocks));
      }
    }
    for (int64_t i = seq.query_start; i < prev_end; ++i) {
      if (positions[i] < 0 || positions[i] >= seq.context_len) {
        return Invalid(backend, op,
                       absl::StrFormat("positions[%d]=%d of sequences[%d] is outside "
                                       "[0, context_len=%d)",
                                       i, positions[i], s, seq.context_len));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPagedKvLayout(std::string_view backend, std::string_view op,
                                const PagedKvLayout& layout, const KvPool& pool) {
  if (layout.num_blocks <= 0 || layout.block_size <= 0 || layout.num_kv_heads <= 0 ||
      layout.head_dim <= 0) {
    return Invalid(backend, op,
                   absl::StrFormat("layout num_blocks=%d, block_size=%d, num_kv_heads=%d, "
                                   "head_dim=%d must be positive",
                                   layout.num_blocks, layout.block_size, layout.num_kv_heads,
                                   layout.head_dim));
  }
  if (layout.num_slots() > INT32_MAX) {
    return Invalid(backend, op,
                   absl::StrFormat("layout num_blocks=%d x block_size=%d exceeds int32 slots",
                                   layout.num_blocks, layout.block_size));
  }
  if (layout.elem_bytes() == 0) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s %s: layout.dtype %s is not supported (F32 or F16)", backend, op,
        DTypeName(layout.dtype)));
  }
  if (pool.k == nullptr || pool.v == nullptr) {
    return Invalid(backend, op, "pool.k and pool.v must not be null");
  }
  return absl::OkStatus();
}

absl::Status CheckWriteKvArgs(std::string_view backend, std::span<const int32_t> slots,
                              const PagedKvLayout& layout, const KvPool& pool) {
  RETURN_IF_ERROR(CheckPagedKvLayout(backend, "WriteKv", layout, pool));
  const int64_t num_slots = layout.num_slots();
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] == kPaddingSlot) continue;
    if (slots[i] < 0 || slots[i] >= num_slots) {
      return Invalid(backend, "WriteKv",
                     absl::StrFormat("slots[%d]=%d is outside [0, %d) (and not -1)", i,
                                     slots[i], num_slots));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPagedAttentionArgs(std::string_view backend, int64_t n_tokens,
                                     std::span<const int32_t> positions,
                                     std::span<const PagedSequence> sequences,
                                     const PagedKvLayout& layout, const KvPool& pool,
                                     const PagedAttentionParams& params) {
  RETURN_IF_ERROR(CheckPagedAttentionParams(backend, layout, pool, params));
  return CheckSequences(backend, "PagedAttention", n_tokens, positions, sequences, layout);
}

absl::Status CheckPagedAttentionParams(std::string_view backend, const PagedKvLayout& layout,
                                       const KvPool& pool, const PagedAttentionParams& params) {
  constexpr std::string_view kOp = "PagedAttention";
  RETURN_IF_ERROR(CheckPagedKvLayout(backend, kOp, layout, pool));
  if (params.num_heads <= 0 || params.num_kv_heads <= 0 ||
      params.num_heads % params.num_kv_heads != 0) {
    return Invalid(backend, kOp,
                   absl::StrFormat("params.num_heads=%d must be a positive multiple of "
                                   "params.num_kv_heads=%d",
                                   params.num_heads, params.num_kv_heads));
  }
  if (params.num_kv_heads != layout.num_kv_heads || params.head_dim != layout.head_dim) {
    return Invalid(backend, kOp,
                   absl::StrFormat("params.num_kv_heads=%d, params.head_dim=%d do not match "
                                   "layout num_kv_heads=%d, head_dim=%d",
                                   params.num_kv_heads, params.head_dim, layout.num_kv_heads,
                                   layout.head_dim));
  }
  if (params.sliding_window < 0) {
    return Invalid(backend, kOp,
                   absl::StrFormat("params.sliding_window=%d is negative", params.sliding_window));
  }
  return absl::OkStatus();
}

absl::Status CheckCopyBlocksArgs(std::string_view backend, std::span<const KvPool> layers,
                                 const PagedKvLayout& layout,
                                 std::span<const KvBlockCopy> copies) {
  for (size_t l = 0; l < layers.size(); ++l) {
    RETURN_IF_ERROR(CheckPagedKvLayout(backend, "CopyBlocks", layout, layers[l]));
  }
  for (size_t i = 0; i < copies.size(); ++i) {
    const KvBlockCopy& c = copies[i];
    if (c.src < 0 || c.src >= layout.num_blocks || c.dst < 0 || c.dst >= layout.num_blocks) {
      return Invalid(backend, "CopyBlocks",
                     absl::StrFormat("copies[%d] src=%d, dst=%d must lie in [0, %d)", i, c.src,
                                     c.dst, layout.num_blocks));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSwapBlocksArgs(std::string_view backend, std::span<const KvPool> from,
                                 const PagedKvLayout& from_layout, std::span<const KvPool> to,
                                 const PagedKvLayout& to_layout,
                                 std::span<const KvBlockCopy> copies) {
  if (from.size() != to.size() || from_layout.block_size != to_layout.block_size ||
      from_layout.num_kv_heads != to_layout.num_kv_heads ||
      from_layout.head_dim != to_layout.head_dim || from_layout.dtype != to_layout.dtype) {
    return Invalid(backend, "SwapBlocks",
                   absl::StrFormat("the two sides differ in geometry (%d vs %d layers, block "
                                   "size %d vs %d, kv heads %d vs %d, head_dim %d vs %d, "
                                   "dtype %s vs %s)",
                                   from.size(), to.size(), from_layout.block_size,
                                   to_layout.block_size, from_layout.num_kv_heads,
                                   to_layout.num_kv_heads, from_layout.head_dim,
                                   to_layout.head_dim, DTypeName(from_layout.dtype),
                                   DTypeName(to_layout.dtype)));
  }
  for (size_t l = 0; l < from.size(); ++l) {
    RETURN_IF_ERROR(CheckPagedKvLayout(backend, "SwapBlocks", from_layout, from[l]));
    RETURN_IF_ERROR(CheckPagedKvLayout(backend, "SwapBlocks", to_layout, to[l]));
  }
  for (size_t i = 0; i < copies.size(); ++i) {
    const KvBlockCopy& c = copies[i];
    if (c.src < 0 || c.src >= from_layout.num_blocks || c.dst < 0 ||
        c.dst >= to_layout.num_blocks) {
      return Invalid(backend, "SwapBlocks",
                     absl::StrFormat("copies[%d] src=%d must lie in [0, %d) and dst=%d in "
                                     "[0, %d)",
                                     i, c.src, from_layout.num_blocks, c.dst,
                                     to_layout.num_blocks));
    }
  }
  return absl::OkStatus();
}

absl::Status SwapHostBlocks(std::string_view backend, std::span<const KvPool> from,
                            const PagedKvLayout& from_layout, std::span<const KvPool> to,
                            const PagedKvLayout& to_layout, std::span<const KvBlockCopy> copies) {
  RETURN_IF_ERROR(CheckSwapBlocksArgs(backend, from, from_layout, to, to_layout, copies));
  const int64_t n = from_layout.block_bytes();
  for (size_t l = 0; l < from.size(); ++l) {
    for (const KvBlockCopy& c : copies) {
      std::memcpy(static_cast<std::byte*>(to[l].k) + c.dst * n,
                  static_cast<const std::byte*>(from[l].k) + c.src * n, static_cast<size_t>(n));
      std::memcpy(static_cast<std::byte*>(to[l].v) + c.dst * n,
                  static_cast<const std::byte*>(from[l].v) + c.src * n, static_cast<size_t>(n));
    }
  }
  return absl::OkStatus();
}

absl::Status ComputeSlotMapping(std::span<const PagedSequence> sequences,
                                std::span<const int32_t> positions, const PagedKvLayout& layout,
                                std::vector<int32_t>* slots) {
  if (layout.block_size <= 0 || layout.num_blocks <= 0) {
    return Invalid("kernels", "ComputeSlotMapping",
                   absl::StrFormat("layout num_blocks=%d, block_size=%d must be positive",
                                   layout.num_blocks, layout.block_size));
  }
  const int64_t n = static_cast<int64_t>(positions.size());
  RETURN_IF_ERROR(
      CheckSequences("kernels", "ComputeSlotMapping", n, positions, sequences, layout));
  slots->assign(static_cast<size_t>(n), kPaddingSlot);
  for (const PagedSequence& seq : sequences) {
    for (int64_t i = seq.query_start; i < seq.query_start + seq.num_queries; ++i) {
      const int64_t p = positions[i];
      (*slots)[i] = static_cast<int32_t>(seq.block_table[p / layout.block_size] *
                                             layout.block_size +
                                         p % layout.block_size);
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
