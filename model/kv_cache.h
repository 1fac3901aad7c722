// Per-sequence key/value cache for the Llama forward: for each layer, two contiguous float32
// arrays [max_tokens, num_kv_heads, head_dim] (keys after RoPE, values). Rows
// [0, num_tokens()) hold the sequence seen so far; LlamaModel::Forward appends to it and may
// rewind it (a forward at start_pos < num_tokens() overwrites from there on).
// The arrays live in the memory space of the backend given to Create (host memory without
// one). Movable, not copyable; owns its memory. Not thread-safe: one forward at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace tessera {

class KvCache {
 public:
  // INVALID_ARGUMENT naming the field when a size is not positive; RESOURCE_EXHAUSTED when
  // the allocation fails.
  [[nodiscard]] static absl::StatusOr<KvCache> Create(int64_t num_layers, int64_t max_tokens,
                                                      int64_t num_kv_heads, int64_t head_dim,
                                                      Backend* backend = nullptr);

  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&&) = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int64_t num_layers() const { return num_layers_; }
  int64_t max_tokens() const { return max_tokens_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  // Floats per token row: num_kv_heads * head_dim.
  int64_t row_size() const { return num_kv_heads_ * head_dim_; }

  // Number of leading token rows that hold valid entries.
  int64_t num_tokens() const { return num_tokens_; }
  void set_num_tokens(int64_t n);  // CHECKs 0 <= n <= max_tokens
  void Clear() { num_tokens_ = 0; }

  // [max_tokens, num_kv_heads, head_dim] for `layer` (CHECKed to be in range).
  float* keys(int64_t layer);
  float* values(int64_t layer);
  const float* keys(int64_t layer) const;
  const float* values(int64_t layer) const;

  // Bytes held (both keys and values, all layers).
  int64_t NumBytes() const;

 private:
  KvCache() = default;

  int64_t num_layers_ = 0;
  int64_t max_tokens_ = 0;
  int64_t num_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  int64_t num_tokens_ = 0;
  std::vector<std::unique_ptr<BackendBuffer>> keys_;
  std::vector<std::unique_ptr<BackendBuffer>> values_;
};

}  // namespace tessera
