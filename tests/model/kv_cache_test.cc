#include "model/kv_cache.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

TEST(KvCacheTest, LayoutAndZeroInit) {
  auto cache = KvCache::Create(3, 5, 2, 4);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(cache->row_size(), 8);
  EXPECT_EQ(cache->num_tokens(), 0);
  EXPECT_EQ(cache->NumBytes(), 2 * 3 * 5 * 8 * 4);
  for (int64_t l = 0; l < 3; ++l) {
    for (int64_t i = 0; i < 5 * 8; ++i) {
      EXPECT_EQ(cache->keys(l)[i], 0.0f);
      EXPECT_EQ(cache->values(l)[i], 0.0f);
    }
  }
  // Layers and keys/values are distinct memory.
  cache->keys(1)[0] = 1.0f;
  EXPECT_EQ(cache->keys(0)[0], 0.0f);
  EXPECT_EQ(cache->values(1)[0], 0.0f);
  cache->set_num_tokens(5);
  EXPECT_EQ(cache->num_tokens(), 5);
  cache->Clear();
  EXPECT_EQ(cache->num_tokens(), 0);
}

TEST(KvCacheTest, MoveKeepsContents) {
  auto cache = KvCache::Create(1, 2, 1, 2);
  ASSERT_TRUE(cache.ok());
  cache->values(0)[3] = 7.0f;
  cache->set_num_tokens(2);
  KvCache moved = std::move(*cache);
  EXPECT_EQ(moved.values(0)[3], 7.0f);
  EXPECT_EQ(moved.num_tokens(), 2);
}

TEST(KvCacheTest, NonPositiveSizesAreInvalidArgumentNamingTheField) {
  const struct {
    int64_t layers, tokens, heads, dim;
    const char* field;
  } cases[] = {{0, 4, 1, 2, "num_layers"},
               {1, 0, 1, 2, "max_tokens"},
               {1, 4, -1, 2, "num_kv_heads"},
               {1, 4, 1, 0, "head_dim"}};
  for (const auto& c : cases) {
    auto cache = KvCache::Create(c.layers, c.tokens, c.heads, c.dim);
    ASSERT_FALSE(cache.ok());
    EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(cache.status().message(), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace tessera
