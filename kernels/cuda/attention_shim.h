// Plain-C++ boundary of the CUDA paged attention (paged_attention.cu, or
// elementwise_stub.cc without CUDA); the abseil-facing API is cuda_ops.h. Device pointers;
// same conventions and error codes as elementwise_shim.h. Internal to kernels/.
#pragma once

#include <cstdint>

#include "kernels/cuda/elementwise_shim.h"

namespace tessera::cuda_shim {

// Attention of query "entries" over a paged cache (kernels/paged_kv.h's layout;
// attention_rows.h): entry e reads q row rows[e] (q[row, H, d]) and attends to positions
// [window start, context_lens[e] - 1] through its block table (tables[e * max_blocks ..]),
// writing out row rows[e]. `half` selects an IEEE-half cache, else float.
struct PagedAttentionArgs {
  const float* q = nullptr;
  const int32_t* rows = nullptr;
  const int32_t* tables = nullptr;
  const int32_t* context_lens = nullptr;
  const void* k_pool = nullptr;
  const void* v_pool = nullptr;
  float* out = nullptr;
  int64_t num_entries = 0, max_blocks = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, block_size = 0;
  int64_t sliding_window = 0;
  float scale = 0.0f;
  bool half = false;
  // Decode: each window cut in num_splits pieces of split_len positions, the pieces' partial
  // results in `partials` ([entries, heads, splits, head_dim + 2] floats) and merged by a
  // second kernel. num_splits == 1 needs no workspace.
  int64_t num_splits = 1, split_len = 0;
  float* partials = nullptr;
  // Prefill: [num_tiles, 2] (first entry, count <= kAttentionTileRows) of entries sharing a
  // block table.
  const int32_t* tiles = nullptr;
  int64_t num_tiles = 0;
};

// The prefill kernel's query rows per tile and the decode kernel's positions per pass: the
// host planning (attention_rows.h) builds its tiles and split pieces from these.
inline constexpr int kPrefillTileRows = 16;
inline constexpr int kDecodePass = 128;

// One thread block per (entry, head, piece): for decode rows.
int PagedAttentionDecode(const PagedAttentionArgs& args, Error* error, const Launch& launch = {});
// One thread block per (tile, head), K/V positions staged in shared memory once per tile:
// for prefill rows (any entries, but a tile of one row wastes most of its threads).
int PagedAttentionPrefill(const PagedAttentionArgs& args, Error* error,
                          const Launch& launch = {});

// Scatters rows i < n of k and v [n, row_elems] (float) into slot slots[i] of the pools
// (float, or IEEE half with ties to even when `half`); rows whose slot is negative are
// skipped. Rows go in parallel: the caller makes the slots distinct (LastWriterSlots).
int WriteKv(const float* k, const float* v, const int32_t* slots, int64_t n, int64_t row_elems,
            void* k_pool, void* v_pool, bool half, Error* error, const Launch& launch = {});

}  // namespace tessera::cuda_shim
