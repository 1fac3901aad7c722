// Plain-C++ boundary of the CUDA paged attention (paged_attention.cu, or
// elementwise_stub.cc without CUDA); the abseil-facing API is cuda_ops.h. Device pointers;
// same conventions and error codes as elementwise_shim.h. Internal to kernels/.
#pragma once

#include <cstdint>

#include "kernels/cuda/elementwise_shim.h"

namespace tessera::cuda_shim {

// Decode attention over a paged cache (kernels/paged_kv.h's layout): query row s (q[s, H, d])
// attends to positions [window start, context_lens[s] - 1] of sequence s through its block
// table (tables[s * max_blocks ..]). `half` selects an IEEE-half cache, else float.
struct PagedDecodeArgs {
  const float* q = nullptr;
  const int32_t* tables = nullptr;
  const int32_t* context_lens = nullptr;
  const void* k_pool = nullptr;
  const void* v_pool = nullptr;
  float* out = nullptr;
  int64_t num_seqs = 0, max_blocks = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, block_size = 0;
  int64_t sliding_window = 0;
  float scale = 0.0f;
  bool half = false;
};

int PagedAttentionDecode(const PagedDecodeArgs& args, Error* error);

// Scatters rows i < n of k and v [n, row_elems] (float) into slot slots[i] of the pools
// (float, or IEEE half with ties to even when `half`); rows whose slot is negative are
// skipped. Rows go in parallel: the caller makes the slots distinct (LastWriterSlots).
int WriteKv(const float* k, const float* v, const int32_t* slots, int64_t n, int64_t row_elems,
            void* k_pool, void* v_pool, bool half, Error* error);

}  // namespace tessera::cuda_shim
