#include "kernels/cpu/reference_backend.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cpu/dequantize.h"

namespace tessera {

absl::Status CheckMatMulArgs(std::string_view backend, int64_t n, int64_t k,
                             const TensorView& w) {
  if (w.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s MatMul: w.shape %s must be [m, k]", backend, w.ShapeString()));
  }
  if (w.dim(1) != k) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s MatMul: w.shape %s does not match k=%d", backend, w.ShapeString(), k));
  }
  if (n < 0 || k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s MatMul: n=%d, k=%d must be positive", backend, n, k));
  }
  if (!CanDequantize(w.dtype)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s MatMul: w.dtype %s is not a weight type", backend, DTypeName(w.dtype)));
  }
  if (k % Traits(w.dtype).block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s MatMul: k=%d is not a multiple of the w.dtype %s block size %d", backend, k,
        DTypeName(w.dtype), Traits(w.dtype).block_elems));
  }
  return absl::OkStatus();
}

absl::Status CheckEmbeddingArgs(std::string_view backend, const TensorView& table,
                                std::span<const int32_t> ids) {
  if (table.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s Embedding: table.shape %s must be [vocab, dim]", backend, table.ShapeString()));
  }
  if (!CanDequantize(table.dtype) || table.dim(1) % Traits(table.dtype).block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s Embedding: table.dtype %s does not fit table.shape %s", backend,
        DTypeName(table.dtype), table.ShapeString()));
  }
  const int64_t vocab = table.dim(0);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s Embedding: ids[%d]=%d is outside [0, %d)", backend, i, ids[i], vocab));
    }
  }
  return absl::OkStatus();
}

absl::Status ReferenceBackend::MatMul(const float* x, int64_t n, int64_t k,
                                      const TensorView& w, float* y) {
  RETURN_IF_ERROR(CheckMatMulArgs(name(), n, k, w));
  const int64_t m = w.dim(0);
  // Dequantization was validated by CheckMatMulArgs, so rows cannot fail to decode.
  pool_.ParallelFor(m, 8, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(k));
    for (int64_t r = r0; r < r1; ++r) {
      (void)DequantizeRow(w.dtype, w.RowPtr(r), row.data(), k);
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = x + i * k;
        double acc = 0.0;
        for (int64_t j = 0; j < k; ++j) acc += static_cast<double>(xi[j]) * row[j];
        y[i * m + r] = static_cast<float>(acc);
      }
    }
  });
  return absl::OkStatus();
}

absl::Status ReferenceBackend::Embedding(const TensorView& table, std::span<const int32_t> ids,
                                         float* out) {
  return DequantizeEmbedding(name(), table, ids, out);
}

void ReferenceBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim,
                               float eps, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(x[i * dim + j]) * x[i * dim + j];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t j = 0; j < dim; ++j) {
      out[i * dim + j] = static_cast<float>(x[i * dim + j] * inv * weight[j]);
    }
  }
}

void ReferenceBackend::Rope(float* x, int64_t n_tokens, int64_t num_heads,
                            std::span<const int32_t> positions, const RopeParams& p) {
  const int64_t half = p.rope_dim / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = x + (t * num_heads + h) * p.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[t]) * p.inv_freq[i];
        const double c = std::cos(angle) * p.mscale;
        const double s = std::sin(angle) * p.mscale;
        const int64_t a = p.style == RopeStyle::kAdjacentPairs ? 2 * i : i;
        const int64_t b = p.style == RopeStyle::kAdjacentPairs ? 2 * i + 1 : i + half;
        const double x0 = v[a], x1 = v[b];
        v[a] = static_cast<float>(x0 * c - x1 * s);
        v[b] = static_cast<float>(x0 * s + x1 * c);
      }
    }
  }
}

void ReferenceBackend::SiluMul(const float* gate, const float* up, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void ReferenceBackend::Add(const float* a, const float* b, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
}

void ReferenceBackend::Attention(const float* q, int64_t n_tokens,
                                 std::span<const int32_t> positions, const float* k_cache,
                                 const float* v_cache, int64_t cache_len,
                                 const AttentionParams& p, float* out) {
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  std::vector<double> scores;
  std::vector<double> acc(static_cast<size_t>(d));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t len = std::min<int64_t>(positions[t], cache_len - 1) + 1;
    scores.assign(static_cast<size_t>(len), 0.0);
    for (int64_t h = 0; h < p.num_heads; ++h) {
      const float* qh = q + (t * p.num_heads + h) * d;
      const int64_t kvh = h / group;
      double max_score = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < len; ++j) {
        const float* kj = k_cache + (j * p.num_kv_heads + kvh) * d;
        double s = 0.0;
        for (int64_t e = 0; e < d; ++e) s += static_cast<double>(qh[e]) * kj[e];
        scores[j] = s * p.scale;
        max_score = std::max(max_score, scores[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j < len; ++j) {
        scores[j] = std::exp(scores[j] - max_score);
        sum += scores[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < len; ++j) {
        const float* vj = v_cache + (j * p.num_kv_heads + kvh) * d;
        for (int64_t e = 0; e < d; ++e) acc[e] += scores[j] * vj[e];
      }
      float* o = out + (t * p.num_heads + h) * d;
      for (int64_t e = 0; e < d; ++e) o[e] = static_cast<float>(acc[e] / sum);
    }
  }
}

void ReferenceBackend::Softmax(float* x, int64_t n, int64_t dim) {
  if (dim <= 0) return;
  for (int64_t i = 0; i < n; ++i) {
    float* r = x + i * dim;
    const float mx = *std::max_element(r, r + dim);
    double sum = 0.0;
    for (int64_t j = 0; j < dim; ++j) sum += std::exp(static_cast<double>(r[j]) - mx);
    for (int64_t j = 0; j < dim; ++j) {
      r[j] = static_cast<float>(std::exp(static_cast<double>(r[j]) - mx) / sum);
    }
  }
}

absl::Status DequantizeEmbedding(std::string_view backend, const TensorView& table,
                                 std::span<const int32_t> ids, float* out) {
  RETURN_IF_ERROR(CheckEmbeddingArgs(backend, table, ids));
  const int64_t dim = table.dim(1);
  for (size_t i = 0; i < ids.size(); ++i) {
    RETURN_IF_ERROR(DequantizeRow(table.dtype, table.RowPtr(ids[i]), out + i * dim, dim));
  }
  return absl::OkStatus();
}

}  // namespace tessera
