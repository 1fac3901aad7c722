// The paged KV cache of one rank: for each layer, a K pool and a V pool of `num_blocks`
// blocks of `block_size` token rows, in kernels/paged_kv.h's layout (float32 or IEEE half
// elements). Which block holds which sequence's positions is the engine's business (its
// BlockManager hands out block tables); this class only owns the memory. Sizes are plain
// numbers because the model layer may not include engine/ headers: the caller takes
// num_blocks from engine/kv_capacity.h's ComputeKvCapacity with bytes_per_elem
// KvElementBytes(dtype).
//
// The pools live in the memory space of the backend given to Create (host memory without
// one). Movable, not copyable; not thread-safe (one forward at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "kernels/paged_kv.h"

namespace tessera {

class PagedKvCache {
 public:
  // INVALID_ARGUMENT naming the field when a size is not positive or `dtype` is neither
  // kF32 nor kF16; RESOURCE_EXHAUSTED when the allocation fails.
  [[nodiscard]] static absl::StatusOr<PagedKvCache> Create(int64_t num_layers,
                                                           int64_t num_blocks,
                                                           int64_t block_size,
                                                           int64_t num_kv_heads,
                                                           int64_t head_dim,
                                                           DType dtype = DType::kF32,
                                                           Backend* backend = nullptr);

  PagedKvCache(PagedKvCache&&) = default;
  PagedKvCache& operator=(PagedKvCache&&) = default;
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  const PagedKvLayout& layout() const { return layout_; }
  int64_t num_layers() const { return static_cast<int64_t>(pools_.size()); }
  // The pools of `layer` (CHECKed to be in range), and of all layers in order.
  const KvPool& pool(int64_t layer) const;
  std::span<const KvPool> pools() const { return pools_; }

  // Bytes of one block across all layers, K and V (what engine/kv_capacity.h calls
  // bytes_per_block), and bytes held in all.
  int64_t bytes_per_block() const;
  int64_t NumBytes() const { return bytes_per_block() * layout_.num_blocks; }

 private:
  PagedKvCache() = default;

  PagedKvLayout layout_;
  std::vector<std::unique_ptr<BackendBuffer>> buffers_;  // K then V for each layer
  std::vector<KvPool> pools_;
};

}  // namespace tessera
