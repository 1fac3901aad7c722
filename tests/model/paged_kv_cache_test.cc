// PagedKvCache: sizes, layout, pool addresses and its argument errors.
#include "model/paged_kv_cache.h"

#include <cstdint>
#include <set>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

TEST(PagedKvCacheTest, LayoutPoolsAndBytes) {
  auto cache = PagedKvCache::Create(/*num_layers=*/3, /*num_blocks=*/5, /*block_size=*/4,
                                    /*num_kv_heads=*/2, /*head_dim=*/8);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(cache->num_layers(), 3);
  EXPECT_EQ(cache->layout().num_blocks, 5);
  EXPECT_EQ(cache->layout().block_size, 4);
  EXPECT_EQ(cache->layout().num_kv_heads, 2);
  EXPECT_EQ(cache->layout().head_dim, 8);
  EXPECT_EQ(cache->layout().dtype, DType::kF32);
  // 2 (K, V) * 3 layers * 4 tokens * 2 heads * 8 dims * 4 bytes.
  EXPECT_EQ(cache->bytes_per_block(), 2 * 3 * 4 * 2 * 8 * 4);
  EXPECT_EQ(cache->NumBytes(), 5 * cache->bytes_per_block());
  std::set<void*> distinct;
  for (const KvPool& pool : cache->pools()) {
    ASSERT_NE(pool.k, nullptr);
    ASSERT_NE(pool.v, nullptr);
    distinct.insert(pool.k);
    distinct.insert(pool.v);
    // Zero-initialized and writable over the whole pool.
    auto* k = static_cast<float*>(pool.k);
    EXPECT_EQ(k[cache->layout().pool_elems() - 1], 0.0f);
    k[cache->layout().pool_elems() - 1] = 1.0f;
  }
  EXPECT_EQ(distinct.size(), 6u);
  EXPECT_EQ(cache->pool(2).k, cache->pools()[2].k);

  // Moving keeps the pools where they are.
  void* first = cache->pool(0).k;
  PagedKvCache moved = std::move(*cache);
  EXPECT_EQ(moved.pool(0).k, first);
}

TEST(PagedKvCacheTest, HalfCacheTakesHalfTheBytes) {
  auto cache = PagedKvCache::Create(3, 5, 4, 2, 8, DType::kF16);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(cache->layout().dtype, DType::kF16);
  EXPECT_EQ(cache->bytes_per_block(), 2 * 3 * 4 * 2 * 8 * 2);
  EXPECT_EQ(cache->NumBytes(), 5 * cache->bytes_per_block());
  auto* v = static_cast<uint16_t*>(cache->pool(2).v);  // writable to the last element
  EXPECT_EQ(v[cache->layout().pool_elems() - 1], 0);
  v[cache->layout().pool_elems() - 1] = 1;

  for (DType other : {DType::kBF16, DType::kQ8_0}) {
    auto bad = PagedKvCache::Create(3, 5, 4, 2, 8, other);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(bad.status().message(), HasSubstr("dtype must be f32 or f16"));
  }
}

TEST(PagedKvCacheTest, NonPositiveSizesAreInvalidArgumentsNamingTheField) {
  const struct {
    int64_t layers, blocks, block_size, heads, dim;
    const char* field;
  } cases[] = {{0, 5, 4, 2, 8, "num_layers"},
               {3, 0, 4, 2, 8, "num_blocks"},
               {3, 5, -1, 2, 8, "block_size"},
               {3, 5, 4, 0, 8, "num_kv_heads"},
               {3, 5, 4, 2, 0, "head_dim"}};
  for (const auto& c : cases) {
    auto cache = PagedKvCache::Create(c.layers, c.blocks, c.block_size, c.heads, c.dim);
    ASSERT_FALSE(cache.ok()) << c.field;
    EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(cache.status().message(), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace tessera
