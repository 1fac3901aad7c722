#include "decoding/sampling_warpers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace tessera {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Softmax in float64; all zeros when every logit is -inf.
std::vector<double> Softmax(std::span<const float> logits) {
  std::vector<double> p(logits.size(), 0.0);
  float max = kNegInf;
  for (float l : logits) max = std::max(max, l);
  if (max == kNegInf) return p;
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp(static_cast<double>(logits[i]) - max);
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  return p;
}

}  // namespace

void TemperatureWarper::Apply(const TokenHistory&, std::span<float> logits) const {
  for (float& l : logits) l /= temperature_;
}

void TopKWarper::Apply(const TokenHistory&, std::span<float> logits) const {
  const size_t k = std::min<size_t>(static_cast<size_t>(top_k_), logits.size());
  if (k == 0 || k == logits.size()) return;
  std::vector<float> sorted(logits.begin(), logits.end());
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float kth = sorted[k - 1];
  for (float& l : logits) {
    if (l < kth) l = kNegInf;
  }
}

void TopPWarper::Apply(const TokenHistory&, std::span<float> logits) const {
  CutNucleus(logits, Softmax(logits), 0.0, top_p_, min_keep_);
}

void CutNucleus(std::span<float> logits, std::span<const double> p, double before, double top_p,
                int64_t min_keep) {
  const size_t n = logits.size();
  // Ascending by logit; of equal logits the higher id comes first (is removed first).
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] < logits[b] : a > b;
  });
  const double threshold = 1.0 - top_p;
  const size_t removable = n > static_cast<size_t>(min_keep) ? n - min_keep : 0;
  double cumulative = before;
  std::vector<int32_t> removed;
  for (size_t i = 0; i < removable; ++i) {
    cumulative += p[order[i]];
    if (cumulative > threshold) break;
    removed.push_back(order[i]);
  }
  for (int32_t id : removed) logits[id] = kNegInf;
}

void MinPWarper::Apply(const TokenHistory&, std::span<float> logits) const {
  const size_t n = logits.size();
  float max = kNegInf;
  for (float l : logits) max = std::max(max, l);
  if (max == kNegInf) return;
  // The min_keep most likely survive whatever the threshold (lowest id first among ties).
  std::vector<int32_t> keep(n);
  std::iota(keep.begin(), keep.end(), 0);
  const size_t k = std::min<size_t>(static_cast<size_t>(min_keep_), n);
  std::partial_sort(keep.begin(), keep.begin() + k, keep.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  keep.resize(k);
  std::vector<bool> protect(n, false);
  for (int32_t id : keep) protect[id] = true;
  // p_i < min_p * p_max  <=>  exp(l_i - l_max) < min_p.
  for (size_t i = 0; i < n; ++i) {
    if (!protect[i] && std::exp(static_cast<double>(logits[i]) - max) < min_p_) {
      logits[i] = kNegInf;
    }
  }
}

void TypicalWarper::Apply(const TokenHistory&, std::span<float> logits) const {
  const size_t n = logits.size();
  const std::vector<double> p = Softmax(logits);
  float max = kNegInf;
  for (float l : logits) max = std::max(max, l);
  if (max == kNegInf) return;
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max);
  const double log_z = max + std::log(sum);
  // Entropy over the tokens with p > 0 (transformers' nansum drops 0 * -inf).
  double entropy = 0;
  std::vector<double> shifted(n);
  for (size_t i = 0; i < n; ++i) {
    const double logp = static_cast<double>(logits[i]) - log_z;
    if (p[i] > 0 && std::isfinite(logp)) entropy -= p[i] * logp;
  }
  for (size_t i = 0; i < n; ++i) {
    const double logp = static_cast<double>(logits[i]) - log_z;
    shifted[i] =
        std::isfinite(logp) ? std::fabs(-logp - entropy) : std::numeric_limits<double>::infinity();
  }
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return shifted[a] < shifted[b]; });
  // last = number of sorted tokens whose cumulative mass stays below `mass_`.
  size_t last = 0;
  double cumulative = 0;
  for (size_t i = 0; i < n; ++i) {
    cumulative += p[order[i]];
    if (cumulative < mass_)
      ++last;
    else
      break;
  }
  last = std::min(last, n - 1);
  const double cut = shifted[order[last]];
  const size_t k = std::min<size_t>(static_cast<size_t>(min_keep_), n);
  for (size_t i = k; i < n; ++i) {
    if (shifted[order[i]] > cut) logits[order[i]] = kNegInf;
  }
}

}  // namespace tessera
