#include "model/kv_cache.h"


#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera {

absl::StatusOr<KvCache> KvCache::Create(int64_t num_layers, int64_t max_tokens,
                                        int64_t num_kv_heads, int64_t head_dim,
                                        Backend* backend) {
  const std::pair<const char*, int64_t> fields[] = {{"num_layers", num_layers},
                                                    {"max_tokens", max_tokens},
                                                    {"num_kv_heads", num_kv_heads},
                                                    {"head_dim", head_dim}};
  for (const auto& [name, value] : fields) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV cache ", name, " must be positive, got ", value));
    }
  }
  KvCache cache;
  cache.num_layers_ = num_layers;
  cache.max_tokens_ = max_tokens;
  cache.num_kv_heads_ = num_kv_heads;
  cache.head_dim_ = head_dim;
  const int64_t bytes = max_tokens * num_kv_heads * head_dim * static_cast<int64_t>(sizeof(float));
  for (int64_t l = 0; l < 2 * num_layers; ++l) {
    absl::StatusOr<std::unique_ptr<BackendBuffer>> buffer =
        backend != nullptr ? backend->Allocate(static_cast<size_t>(bytes))
                           : AllocateHostBuffer(static_cast<size_t>(bytes));
    if (!buffer.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "KV cache: cannot allocate ", 2 * num_layers * bytes, " bytes for ", max_tokens,
          " tokens: ", buffer.status().message()));
    }
    (l % 2 == 0 ? cache.keys_ : cache.values_).push_back(*std::move(buffer));
  }
  return cache;
}

void KvCache::set_num_tokens(int64_t n) {
  TESSERA_CHECK(n >= 0 && n <= max_tokens_);
  num_tokens_ = n;
}

float* KvCache::keys(int64_t layer) {
  TESSERA_CHECK(layer >= 0 && layer < num_layers_);
  return keys_[static_cast<size_t>(layer)]->as<float>();
}
float* KvCache::values(int64_t layer) {
  TESSERA_CHECK(layer >= 0 && layer < num_layers_);
  return values_[static_cast<size_t>(layer)]->as<float>();
}
const float* KvCache::keys(int64_t layer) const {
  TESSERA_CHECK(layer >= 0 && layer < num_layers_);
  return keys_[static_cast<size_t>(layer)]->as<float>();
}
const float* KvCache::values(int64_t layer) const {
  TESSERA_CHECK(layer >= 0 && layer < num_layers_);
  return values_[static_cast<size_t>(layer)]->as<float>();
}

int64_t KvCache::NumBytes() const {
  return 2 * num_layers_ * max_tokens_ * row_size() * static_cast<int64_t>(sizeof(float));
}

}  // namespace tessera
