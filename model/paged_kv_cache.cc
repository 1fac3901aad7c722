#include "model/paged_kv_cache.h"

#include <new>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera {

absl::StatusOr<PagedKvCache> PagedKvCache::Create(int64_t num_layers, int64_t num_blocks,
                                                  int64_t block_size, int64_t num_kv_heads,
                                                  int64_t head_dim, DType dtype,
                                                  Backend* backend) {
  const std::pair<const char*, int64_t> fields[] = {{"num_layers", num_layers},
                                                    {"num_blocks", num_blocks},
                                                    {"block_size", block_size},
                                                    {"num_kv_heads", num_kv_heads},
                                                    {"head_dim", head_dim}};
  for (const auto& [name, value] : fields) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("paged KV cache ", name, " must be positive, got ", value));
    }
  }
  if (KvElementBytes(dtype) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("paged KV cache dtype must be f32 or f16, got ",
                                                   std::string(DTypeName(dtype))));
  }
  PagedKvCache cache;
  cache.layout_.num_blocks = num_blocks;
  cache.layout_.block_size = block_size;
  cache.layout_.num_kv_heads = num_kv_heads;
  cache.layout_.head_dim = head_dim;
  cache.layout_.dtype = dtype;
  const int64_t pool_bytes = cache.layout_.num_blocks * cache.layout_.block_bytes();
  for (int64_t i = 0; i < 2 * num_layers; ++i) {
    absl::StatusOr<std::unique_ptr<BackendBuffer>> buffer =
        backend != nullptr ? backend->Allocate(static_cast<size_t>(pool_bytes), /*huge_pages=*/true)
                           : AllocateHostBuffer(static_cast<size_t>(pool_bytes), /*huge_pages=*/true);
    if (!buffer.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "paged KV cache: cannot allocate ", 2 * num_layers * pool_bytes, " bytes for ",
          num_blocks, " blocks of ", block_size, " tokens: ", buffer.status().message()));
    }
    cache.buffers_.push_back(*std::move(buffer));
  }
  cache.pools_.resize(static_cast<size_t>(num_layers));
  for (int64_t l = 0; l < num_layers; ++l) {
    cache.pools_[static_cast<size_t>(l)] = {cache.buffers_[static_cast<size_t>(2 * l)]->data(),
                                            cache.buffers_[static_cast<size_t>(2 * l + 1)]->data()};
  }
  return cache;
}

const KvPool& PagedKvCache::pool(int64_t layer) const {
  TESSERA_CHECK(layer >= 0 && layer < num_layers());
  return pools_[static_cast<size_t>(layer)];
}

int64_t PagedKvCache::bytes_per_block() const {
  return 2 * num_layers() * layout_.block_bytes();
}

}  // namespace tessera
