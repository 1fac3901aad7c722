#include "tests/model/reference_llama.h"

#include <algorithm>
#include <cmath>

namespace tessera::testing {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::vector<double> MatVec(const Matrix& m, const std::vector<double>& x) {
  std::vector<double> y(static_cast<size_t>(m.rows), 0.0);
  for (int64_t r = 0; r < m.rows; ++r) {
    const double* row = m.Row(r);
    double acc = 0.0;
    for (int64_t c = 0; c < m.cols; ++c) acc += row[c] * x[c];
    y[r] = acc;
  }
  return y;
}

std::vector<double> RmsNorm(const std::vector<double>& x, const std::vector<double>& w,
                            double eps) {
  double ss = 0.0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

// GGUF's Llama rotary layout: pairs (2i, 2i + 1) of each head rotate by pos * inv_freq[i].
void Rotate(std::vector<double>& v, int64_t num_heads, int64_t head_dim, int64_t pos,
            const ReferenceRope& rope) {
  for (int64_t h = 0; h < num_heads; ++h) {
    double* head = v.data() + h * head_dim;
    for (size_t i = 0; i < rope.inv_freq.size(); ++i) {
      const double angle = static_cast<double>(pos) * rope.inv_freq[i];
      const double c = std::cos(angle) * rope.mscale;
      const double s = std::sin(angle) * rope.mscale;
      const double a = head[2 * i];
      const double b = head[2 * i + 1];
      head[2 * i] = a * c - b * s;
      head[2 * i + 1] = a * s + b * c;
    }
  }
}

}  // namespace

ReferenceRope ReferenceRopeFor(const TinySpec& spec) {
  const int64_t dim = spec.rope_dim;
  ReferenceRope out;
  // transformers' _compute_default_rope_parameters: 1 / base^(arange(0, dim, 2) / dim).
  std::vector<double> inv(static_cast<size_t>(dim / 2));
  for (int64_t j = 0; j < dim; j += 2) {
    inv[j / 2] = 1.0 / std::pow(spec.theta, static_cast<double>(j) / static_cast<double>(dim));
  }
  switch (spec.rope) {
    case TinyRope::kNone:
      break;
    case TinyRope::kLinear:
      for (double& f : inv) f = f / spec.rope_factor;
      break;
    case TinyRope::kLlama3Tensor: {
      // transformers' _compute_llama3_parameters, element by element.
      const double old_ctx = static_cast<double>(spec.original_context);
      const double low_freq_wavelen = old_ctx / spec.low_freq_factor;
      const double high_freq_wavelen = old_ctx / spec.high_freq_factor;
      for (double& f : inv) {
        const double wavelen = 2.0 * kPi / f;
        const double llama = wavelen > low_freq_wavelen ? f / spec.rope_factor : f;
        const double smooth = (old_ctx / wavelen - spec.low_freq_factor) /
                              (spec.high_freq_factor - spec.low_freq_factor);
        const double smoothed = (1.0 - smooth) * llama / spec.rope_factor + smooth * llama;
        const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        f = medium ? smoothed : llama;
      }
      break;
    }
    case TinyRope::kYarn: {
      // transformers' _compute_yarn_parameters (truncate=True, no mscale_all_dim).
      const double base = spec.theta;
      const double max_pos = static_cast<double>(spec.original_context);
      auto correction_dim = [&](double rotations) {
        return (static_cast<double>(dim) * std::log(max_pos / (rotations * 2.0 * kPi))) /
               (2.0 * std::log(base));
      };
      double low = std::max(std::floor(correction_dim(spec.beta_fast)), 0.0);
      double high = std::min(std::ceil(correction_dim(spec.beta_slow)),
                             static_cast<double>(dim - 1));
      if (low == high) high += 0.001;
      for (size_t i = 0; i < inv.size(); ++i) {
        const double pos_freq = std::pow(base, 2.0 * static_cast<double>(i) / dim);
        const double extrapolation = 1.0 / pos_freq;
        const double interpolation = 1.0 / (spec.rope_factor * pos_freq);
        const double ramp =
            std::min(1.0, std::max(0.0, (static_cast<double>(i) - low) / (high - low)));
        const double extrapolation_factor = 1.0 - ramp;
        inv[i] = interpolation * (1.0 - extrapolation_factor) +
                 extrapolation * extrapolation_factor;
      }
      out.mscale = 0.1 * std::log(spec.rope_factor) + 1.0;
      break;
    }
  }
  out.inv_freq = inv;
  return out;
}

std::vector<double> ReferenceForward(const TinyWeights& w, const std::vector<int32_t>& tokens) {
  const TinySpec& s = w.spec;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const ReferenceRope rope = ReferenceRopeFor(s);
  const int64_t group = s.heads / s.kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));

  std::vector<std::vector<double>> x(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    const double* row = w.token_embd.Row(tokens[t]);
    x[t].assign(row, row + s.hidden);
  }
  for (const TinyLayer& layer : w.layers) {
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (int64_t t = 0; t < n; ++t) {
      const std::vector<double> xn = RmsNorm(x[t], layer.attn_norm, s.eps);
      q[t] = MatVec(layer.wq, xn);
      k[t] = MatVec(layer.wk, xn);
      v[t] = MatVec(layer.wv, xn);
      Rotate(q[t], s.heads, s.head_dim, t, rope);
      Rotate(k[t], s.kv_heads, s.head_dim, t, rope);
    }
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> attn(static_cast<size_t>(s.heads * s.head_dim), 0.0);
      for (int64_t h = 0; h < s.heads; ++h) {
        const int64_t kvh = h / group;
        std::vector<double> scores(static_cast<size_t>(t + 1));
        double max_score = -1e300;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < s.head_dim; ++d) {
            dot += q[t][h * s.head_dim + d] * k[j][kvh * s.head_dim + d];
          }
          scores[j] = dot * scale;
          max_score = std::max(max_score, scores[j]);
        }
        double denom = 0.0;
        for (double& sc : scores) {
          sc = std::exp(sc - max_score);
          denom += sc;
        }
        for (int64_t j = 0; j <= t; ++j) {
          for (int64_t d = 0; d < s.head_dim; ++d) {
            attn[h * s.head_dim + d] += scores[j] / denom * v[j][kvh * s.head_dim + d];
          }
        }
      }
      const std::vector<double> o = MatVec(layer.wo, attn);
      for (int64_t i = 0; i < s.hidden; ++i) x[t][i] += o[i];
      const std::vector<double> xn = RmsNorm(x[t], layer.ffn_norm, s.eps);
      std::vector<double> g = MatVec(layer.w_gate, xn);
      const std::vector<double> u = MatVec(layer.w_up, xn);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      const std::vector<double> d = MatVec(layer.w_down, g);
      for (int64_t i = 0; i < s.hidden; ++i) x[t][i] += d[i];
    }
  }
  std::vector<double> logits;
  logits.reserve(static_cast<size_t>(n * s.vocab));
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<double> l = MatVec(w.output, RmsNorm(x[t], w.output_norm, s.eps));
    logits.insert(logits.end(), l.begin(), l.end());
  }
  return logits;
}

}  // namespace tessera::testing
