#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/reference_backend.h"

namespace tessera {
namespace {

// Weight rows per prefill task (n >= 4): the tile's rows stay in L1/L2 while every
// activation row streams past them. Decode splits stay on tile boundaries too.
constexpr int64_t kTileRows = 16;
// Below this many elements an elementwise op runs on the calling thread only.
constexpr int64_t kParallelElems = 1 << 15;

// Decode (n < 4) splits a GEMV or the attention heads into this many claims per thread.
// Each claim and the final join move cache lines between cores (~0.1-0.5 us on this kind
// of VM), about the cost of a 16-row tile of a 576-wide GEMV, so per-tile claims made 2
// threads slower than 1; one even share per thread measured fastest (SmolLM2-135M decode
// 138 -> 208 tok/s at 2 threads vs 175 with 4 claims per thread). The pool still lets the
// caller take a share that a late worker has not claimed, so a busy machine loses nothing.
constexpr int64_t kDecodeClaimsPerThread = 1;

// Everything one MatMul task needs, copied by value into the task so that the inner loops
// keep it in registers instead of re-reading the owner's stack frame (which another core
// may be writing) after every call through a kernel pointer.
// One row of RmsNorm (out may alias x): shared by RmsNorm and the norm RmsNormMatMul folds
// into its quantization pass, so that both give the same bits.
void NormRow(const CpuKernels& kernels, const float* x, const float* weight, int64_t dim,
             float eps, float* out) {
  const float ss = kernels.dot_f32(x, x, dim);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  for (int64_t j = 0; j < dim; ++j) out[j] = x[j] * inv * weight[j];
}

struct GemmJob {
  VecDotFn dot;
  VecDot4Fn dot4;
  VecDotTileFn tile;  // with dot4 only
  int tile_rows;
  const uint8_t* w;
  int64_t w_row_bytes;
  const uint8_t* act;
  int64_t act_row_bytes;
  int64_t n, k, m;
  float* y;

  // Rows [r0, r1) of W against every activation row. Each y element is one dot product,
  // whichever rows a task covers, so results do not depend on the thread count.
  void Rows(int64_t r0, int64_t r1) const {
    int64_t i = 0;
    for (; dot4 != nullptr && i + 4 <= n; i += 4) {
      const uint8_t* a = act + i * act_row_bytes;
      int64_t r = r0;
      for (; tile != nullptr && r + tile_rows <= r1; r += tile_rows) {
        float out[16];
        tile(k, w + r * w_row_bytes, w_row_bytes, a, act_row_bytes, out);
        for (int t = 0; t < tile_rows; ++t) {
          for (int j = 0; j < 4; ++j) y[(i + j) * m + r + t] = out[t * 4 + j];
        }
      }
      for (; r < r1; ++r) {
        float out[4];
        dot4(k, w + r * w_row_bytes, a, act_row_bytes, out);
        for (int j = 0; j < 4; ++j) y[(i + j) * m + r] = out[j];
      }
    }
    for (; i < n; ++i) {
      const uint8_t* a = act + i * act_row_bytes;
      float* yi = y + i * m;
      for (int64_t r = r0; r < r1; ++r) yi[r] = dot(k, w + r * w_row_bytes, a);
    }
  }
};

}  // namespace

int64_t CpuBackend::Claims(int64_t rows, int64_t units) const {
  return rows < 4 ? std::min(units, kDecodeClaimsPerThread * pool_.num_threads()) : units;
}

CpuBackend::CpuBackend(int num_threads, const CpuKernels* kernels, bool batch_invariant,
                       bool pack_weights)
    : kernels_(kernels != nullptr ? *kernels : BestCpuKernels()),
      batch_invariant_(batch_invariant),
      pack_weights_(pack_weights),
      pool_(num_threads) {}

absl::Status CpuBackend::MatMul(const float* x, int64_t n, int64_t k, const TensorView& w,
                                float* y) {
  return MatMulImpl(x, n, k, w, y, nullptr);
}

absl::Status CpuBackend::RmsNormMatMul(const float* x, const float* norm_weight, int64_t n,
                                       int64_t k, float eps, const TensorView& w, float* xn,
                                       float* y) {
  const RowNorm norm{norm_weight, eps, xn};
  return MatMulImpl(x, n, k, w, y, &norm);
}

absl::Status CpuBackend::MatMulImpl(const float* x, int64_t n, int64_t k, const TensorView& w,
                                    float* y, const RowNorm* norm) {
  RETURN_IF_ERROR(CheckMatMulArgs(name(), n, k, w));
  const int64_t m = w.dim(0);
  if (n == 0 || m == 0) return absl::OkStatus();
  if (w.packed != nullptr) {
    const auto* packed = dynamic_cast<const CpuPackedWeight*>(w.packed);
    if (packed == nullptr || packed->rows() != m || packed->cols() != k ||
        packed->source_dtype() != w.dtype) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s MatMul: w.packed was not packed by this backend from a %s %s matrix",
                          name(), w.ShapeString(), DTypeName(w.dtype)));
    }
    if (kernels_.packed_gemm != nullptr) return MatMulPacked(x, n, k, *packed, y, norm);
    // Packed by a backend whose CPU table has the kernel; this one reads the file's layout.
    if (w.data == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s MatMul: w is a stacked packed matrix and this CPU table (%s) has no packed GEMM",
          name(), kernels_.isa));
    }
  }
  const VecDotFn dot = kernels_.vec_dot(w.dtype);
  const DType act_type = kernels_.activation_type(w.dtype);
  if (norm != nullptr && (dot == nullptr || act_type == DType::kF32)) {
    // No pass over the input to fold the norm into: normalize first.
    RmsNorm(x, norm->weight, n, k, norm->eps, norm->out);
    x = norm->out;
    norm = nullptr;
  }
  if (dot == nullptr) return MatMulDequantized(x, n, k, w, y);

  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  int64_t act_row_bytes = k * static_cast<int64_t>(sizeof(float));
  if (act_type != DType::kF32) {
    ASSIGN_OR_RETURN(act_row_bytes, QuantizeActivations(x, n, k, act_type, nullptr, norm));
    act = act_.as<uint8_t>();
  }

  const VecDot4Fn dot4 = n >= 4 && !batch_invariant_ ? kernels_.vec_dot4(w.dtype) : nullptr;
  const GemmJob job{dot,
                    dot4,
                    dot4 != nullptr ? kernels_.vec_dot_tile(w.dtype) : nullptr,
                    kernels_.tile_rows,
                    static_cast<const uint8_t*>(w.data),
                    w.RowStrideBytes(),
                    act,
                    act_row_bytes,
                    n,
                    k,
                    m,
                    y};
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
  // Claims cover whole 16-row tiles, so two threads never write the same 64-byte line of y.
  const int64_t claims = Claims(n, tiles);
  pool_.ForEachChunk(claims, [&job, tiles, claims](int64_t c) {
    const GemmJob j = job;
    const int64_t r0 = std::min(j.m, c * tiles / claims * kTileRows);
    const int64_t r1 = std::min(j.m, (c + 1) * tiles / claims * kTileRows);
    j.Rows(r0, r1);
  });
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CpuBackend::QuantizeActivations(const float* x, int64_t n, int64_t k,
                                                        DType act_type,
                                                        const CpuPackedWeight* packed,
                                                        const RowNorm* norm) {
  ASSIGN_OR_RETURN(const int64_t act_row_bytes, RowBytes(act_type, k));
  const size_t need = static_cast<size_t>(n * act_row_bytes);
  if (act_.size() < need) act_.Resize(need);
  uint8_t* q = act_.as<uint8_t>();
  const int64_t nb = packed != nullptr ? packed->blocks_per_row() : 0;
  const size_t info_bytes = static_cast<size_t>(n * nb) * sizeof(ActBlockInfo);
  if (act_info_.size() < info_bytes) act_info_.Resize(info_bytes);
  auto* info = act_info_.as<ActBlockInfo>();
  // One parallel region for every pass over a row (norm, quantization, block sums): each
  // works on the row while it is in cache, and a batch pays one barrier for them.
  pool_.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* row = x + i * k;
      if (norm != nullptr) {
        NormRow(kernels_, row, norm->weight, k, norm->eps, norm->out + i * k);
        row = norm->out + i * k;
      }
      if (!kernels_.quantize_act(act_type, row, q + i * act_row_bytes, k)) {
        // RowBytes accepted k, so quantizing cannot fail.
        (void)QuantizeRow(act_type, row, q + i * act_row_bytes, k);
      }
      if (packed != nullptr) {
        FillActBlockInfo(packed->format(), q + i * act_row_bytes, act_row_bytes, 1, nb,
                         info + i * nb);
      }
    }
  });
  return act_row_bytes;
}

absl::StatusOr<std::unique_ptr<PackedWeight>> CpuBackend::PackWeights(
    std::span<const TensorView> parts) {
  PackedFormat format;
  if (!packs_weights() || parts.empty() || !PackedFormatFor(parts[0].dtype, &format) ||
      (kernels_.packs_format != nullptr && !kernels_.packs_format(format))) {
    return std::unique_ptr<PackedWeight>();
  }
  std::unique_ptr<WeightPacker> packer = WeightPacker::Create(parts);
  if (packer == nullptr) return std::unique_ptr<PackedWeight>();
  pool_.ParallelFor(packer->groups(), 8, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) packer->PackGroup(g);
  });
  return std::unique_ptr<PackedWeight>(packer->Finish());
}

absl::Status CpuBackend::MatMulPacked(const float* x, int64_t n, int64_t k,
                                      const CpuPackedWeight& w, float* y, const RowNorm* norm) {
  ASSIGN_OR_RETURN(const int64_t act_row_bytes,
                   QuantizeActivations(x, n, k, PackedActivationType(w.format()), &w, norm));
  const PackedGemmArgs args{.w = &w,
                            .act = act_.as<uint8_t>(),
                            .act_row_bytes = act_row_bytes,
                            .info = act_info_.as<ActBlockInfo>(),
                            .n = n,
                            .y = y,
                            .ldy = w.rows()};
  const PackedGemmFn gemm = kernels_.packed_gemm;
  const int64_t groups = w.groups();
  // As for the GGUF layout: one even share per thread for decode, one group per claim for
  // batches. Every output is computed the same way whatever the claims (and whatever n).
  const int64_t claims = Claims(n, groups);
  pool_.ForEachChunk(claims, [&args, gemm, groups, claims](int64_t c) {
    gemm(args, c * groups / claims, (c + 1) * groups / claims);
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::MatMulDequantized(const float* x, int64_t n, int64_t k,
                                           const TensorView& w, float* y) {
  const int64_t m = w.dim(0);
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
  const auto dot = kernels_.dot_f32;
  // Same claims as MatMul: one share per thread for decode, one tile per claim otherwise.
  const int64_t claims = Claims(n, tiles);
  pool_.ForEachChunk(claims, [&](int64_t c) {
    thread_local std::vector<float> rows;
    rows.resize(static_cast<size_t>(kTileRows * k));
    for (int64_t t = c * tiles / claims; t < (c + 1) * tiles / claims; ++t) {
      const int64_t r0 = t * kTileRows;
      const int64_t r1 = std::min(m, r0 + kTileRows);
      for (int64_t r = r0; r < r1; ++r) {
        // The dtype and k were checked by CheckMatMulArgs.
        (void)DequantizeRow(w.dtype, w.RowPtr(r), rows.data() + (r - r0) * k, k);
      }
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t r = r0; r < r1; ++r) {
          y[i * m + r] = dot(rows.data() + (r - r0) * k, x + i * k, k);
        }
      }
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::Embedding(const TensorView& table, std::span<const int32_t> ids,
                                   float* out) {
  const auto* packed = dynamic_cast<const CpuPackedWeight*>(table.packed);
  if (packed == nullptr) return DequantizeEmbedding(name(), table, ids, out);
  // A tied LM head's packed copy: rows come from it, so that the file's pages, dropped
  // after packing, are not faulted back in (with the kernel's fault-around, a few hundred
  // lookups would map the whole table again).
  RETURN_IF_ERROR(CheckEmbeddingArgs(name(), table, ids));
  const int64_t dim = table.dim(1);
  if (packed->rows() != table.dim(0) || packed->cols() != dim ||
      packed->source_dtype() != table.dtype) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s Embedding: table.packed was not packed from a %s %s matrix", name(),
                        table.ShapeString(), DTypeName(table.dtype)));
  }
  thread_local std::vector<uint8_t> row;
  row.resize(static_cast<size_t>(table.RowBytes()));
  for (size_t i = 0; i < ids.size(); ++i) {
    UnpackRow(*packed, ids[i], row.data());
    RETURN_IF_ERROR(DequantizeRow(table.dtype, row.data(), out + i * dim, dim));
  }
  return absl::OkStatus();
}

void CpuBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                         float* out) {
  const int64_t grain = std::max<int64_t>(1, kParallelElems / std::max<int64_t>(1, dim));
  pool_.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) NormRow(kernels_, x + i * dim, weight, dim, eps, out + i * dim);
  });
}

void CpuBackend::Rope(float* x, int64_t n_tokens, int64_t num_heads,
                      std::span<const int32_t> positions, const RopeParams& p) {
  const int64_t half = p.rope_dim / 2;
  const bool adjacent = p.style == RopeStyle::kAdjacentPairs;
  const float* table = rope_table_.Get(positions.first(static_cast<size_t>(n_tokens)), p, pool_);
  pool_.ParallelFor(n_tokens, 8, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* cs = table + t * 2 * half;
      for (int64_t h = 0; h < num_heads; ++h) {
        float* v = x + (t * num_heads + h) * p.head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = adjacent ? 2 * i : i;
          const int64_t c = adjacent ? 2 * i + 1 : i + half;
          const float x0 = v[a], x1 = v[c];
          v[a] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
          v[c] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
        }
      }
    }
  });
}

void CpuBackend::SiluMul(const float* gate, const float* up, int64_t count, float* out) {
  pool_.ParallelFor(count, kParallelElems, [&](int64_t b, int64_t e) {
    kernels_.silu_mul(gate + b, up + b, out + b, e - b);
  });
}

void CpuBackend::Add(const float* a, const float* b, int64_t count, float* out) {
  pool_.ParallelFor(count, kParallelElems, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
  });
}

int64_t CpuBackend::HeadsPerItem(int64_t work_rows, int64_t num_heads, int64_t num_kv_heads,
                                  int64_t max_kv_heads) const {
  // A whole GQA group per item reads each K/V row once for the group, and several KV heads
  // per item read a longer stretch of each cached row; split when that leaves too few
  // items to keep every thread busy (decode of one sequence).
  const int64_t group = num_heads / num_kv_heads;
  const int64_t enough = 2 * pool_.num_threads();
  for (int64_t kv = std::min(max_kv_heads, num_kv_heads); kv > 1; --kv) {
    if (num_kv_heads % kv == 0 && work_rows * (num_kv_heads / kv) >= enough) return kv * group;
  }
  for (int64_t per_item = group; per_item > 1; --per_item) {
    if (group % per_item == 0 && work_rows * num_heads / per_item >= enough) return per_item;
  }
  return 1;
}

void CpuBackend::Attention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                           const float* k_cache, const float* v_cache, int64_t cache_len,
                           const AttentionParams& p, float* out) {
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t kv_stride = p.num_kv_heads * d;
  const int64_t per_item = HeadsPerItem(n_tokens, p.num_heads, p.num_kv_heads);
  const int64_t items_per_token = p.num_heads / per_item;
  const int64_t items = n_tokens * items_per_token;
  const AttendRunFn attend = kernels_.attend_run;
  auto run_item = [&](int64_t item) {
    thread_local AttentionWorkspace workspace;
    const int64_t t = item / items_per_token;
    const int64_t h0 = item % items_per_token * per_item;
    const int64_t kv_off = h0 / group * d;
    const int64_t len = std::min<int64_t>(positions[t], cache_len - 1) + 1;
    AttentionAccumulator& state = workspace.Reset(static_cast<int>(per_item), d);
    const float* qh = q + (t * p.num_heads + h0) * d;
    for (int64_t c0 = 0; c0 < len; c0 += kAttendMaxRun) {
      attend(qh, d, p.scale, k_cache + c0 * kv_stride + kv_off, v_cache + c0 * kv_stride + kv_off,
             kv_stride, std::min(kAttendMaxRun, len - c0), state);
    }
    workspace.Finish(out + (t * p.num_heads + h0) * d);
  };
  // Decode: the items cost the same, so one claim per thread (claims cost cross-core
  // traffic). Prefill: later tokens see more positions, so items are claimed one by one.
  const int64_t claims = Claims(n_tokens, items);
  pool_.ForEachChunk(claims, [&](int64_t c) {
    const int64_t end = (c + 1) * items / claims;
    for (int64_t item = c * items / claims; item < end; ++item) run_item(item);
  });
}

void CpuBackend::Softmax(float* x, int64_t n, int64_t dim) {
  if (dim <= 0) return;
  const int64_t grain = std::max<int64_t>(1, kParallelElems / dim);
  pool_.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* r = x + i * dim;
      const float mx = *std::max_element(r, r + dim);
      const float inv = 1.0f / kernels_.exp_sum(r, mx, dim);
      for (int64_t j = 0; j < dim; ++j) r[j] *= inv;
    }
  });
}

}  // namespace tessera
