// ReferenceBackend's paged-KV ops (ops.h, kernels/paged_kv.h): plain loops, double
// accumulation, two-pass softmax, one position at a time through the block table; a half
// (kF16) cache is written with FloatToFp16 and read with Fp16ToFloat.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <vector>

#include "common/half.h"
#include "common/status_macros.h"
#include "kernels/cpu/reference_backend.h"

namespace tessera {
namespace {

// Element `i` of a pool of `dtype` (kF32 or kF16, as CheckPagedKvLayout allows).
double LoadKv(DType dtype, const void* pool, int64_t i) {
  if (dtype == DType::kF16) return Fp16ToFloat(static_cast<const uint16_t*>(pool)[i]);
  return static_cast<const float*>(pool)[i];
}

void StoreKv(DType dtype, void* pool, int64_t i, float x) {
  if (dtype == DType::kF16) {
    static_cast<uint16_t*>(pool)[i] = FloatToFp16(x);
  } else {
    static_cast<float*>(pool)[i] = x;
  }
}

}  // namespace

absl::Status ReferenceBackend::WriteKv(const float* k, const float* v,
                                       std::span<const int32_t> slots,
                                       const PagedKvLayout& layout, const KvPool& pool) {
  RETURN_IF_ERROR(CheckWriteKvArgs(name(), slots, layout, pool));
  const int64_t row = layout.token_elems();
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] == kPaddingSlot) continue;
    for (int64_t e = 0; e < row; ++e) {
      StoreKv(layout.dtype, pool.k, slots[i] * row + e, k[i * row + e]);
      StoreKv(layout.dtype, pool.v, slots[i] * row + e, v[i * row + e]);
    }
  }
  return absl::OkStatus();
}

absl::Status ReferenceBackend::PagedAttention(const float* q, int64_t n_tokens,
                                              std::span<const int32_t> positions,
                                              std::span<const PagedSequence> sequences,
                                              const PagedKvLayout& layout, const KvPool& pool,
                                              const PagedAttentionParams& p, float* out) {
  RETURN_IF_ERROR(
      CheckPagedAttentionArgs(name(), n_tokens, positions, sequences, layout, pool, p));
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  // Element offset of (position, kv head) in the pools.
  auto offset = [&](const PagedSequence& s, int64_t pos, int64_t kvh) {
    const int64_t slot =
        s.block_table[pos / layout.block_size] * layout.block_size + pos % layout.block_size;
    return (slot * p.num_kv_heads + kvh) * d;
  };
  std::vector<double> scores;
  std::vector<double> acc(static_cast<size_t>(d));
  for (const PagedSequence& s : sequences) {
    for (int64_t t = s.query_start; t < s.query_start + s.num_queries; ++t) {
      const int64_t hi = positions[t];
      const int64_t lo = WindowStart(hi, p.sliding_window);
      scores.assign(static_cast<size_t>(hi - lo + 1), 0.0);
      for (int64_t h = 0; h < p.num_heads; ++h) {
        const float* qh = q + (t * p.num_heads + h) * d;
        const int64_t kvh = h / group;
        double max_score = -std::numeric_limits<double>::infinity();
        for (int64_t j = lo; j <= hi; ++j) {
          const int64_t kj = offset(s, j, kvh);
          double dot = 0.0;
          for (int64_t e = 0; e < d; ++e) {
            dot += static_cast<double>(qh[e]) * LoadKv(layout.dtype, pool.k, kj + e);
          }
          scores[j - lo] = dot * p.scale;
          max_score = std::max(max_score, scores[j - lo]);
        }
        double sum = 0.0;
        for (double& sc : scores) {
          sc = std::exp(sc - max_score);
          sum += sc;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = lo; j <= hi; ++j) {
          const int64_t vj = offset(s, j, kvh);
          for (int64_t e = 0; e < d; ++e) {
            acc[e] += scores[j - lo] * LoadKv(layout.dtype, pool.v, vj + e);
          }
        }
        float* o = out + (t * p.num_heads + h) * d;
        for (int64_t e = 0; e < d; ++e) o[e] = static_cast<float>(acc[e] / sum);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReferenceBackend::CopyBlocks(std::span<const KvPool> layers,
                                          const PagedKvLayout& layout,
                                          std::span<const KvBlockCopy> copies) {
  RETURN_IF_ERROR(CheckCopyBlocksArgs(name(), layers, layout, copies));
  const int64_t n = layout.block_bytes();
  for (const KvPool& pool : layers) {
    for (const KvBlockCopy& c : copies) {
      if (c.src == c.dst) continue;
      for (auto* base : {static_cast<std::byte*>(pool.k), static_cast<std::byte*>(pool.v)}) {
        std::memcpy(base + c.dst * n, base + c.src * n, static_cast<size_t>(n));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
