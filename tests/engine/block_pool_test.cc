#include "engine/block_pool.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(BlockPoolTest, AllocatesInOrderAndCountsStates) {
  BlockPool pool(4);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.Allocate(), 0);
  EXPECT_EQ(pool.Allocate(), 1);
  EXPECT_EQ(pool.num_used(), 2);
  EXPECT_EQ(pool.num_available(), 2);
  EXPECT_EQ(pool.ref_count(0), 1);
  pool.Retain(0);
  EXPECT_EQ(pool.Release(0), 1);
  EXPECT_EQ(pool.Release(0), 0);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolTest, RegisteredBlocksStayCachedUntilEvictedLeastRecentlyReleasedFirst) {
  BlockPool pool(3);
  const BlockId a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 100));
  ASSERT_TRUE(pool.Register(b, 200));
  EXPECT_FALSE(pool.Register(c, 100)) << "hash already held by another block";
  EXPECT_FALSE(pool.Register(a, 300)) << "block already has a hash";
  pool.Release(b);  // released first: evicted first
  pool.Release(a);
  EXPECT_EQ(pool.num_evictable(), 2);
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_available(), 2);
  EXPECT_EQ(pool.Lookup(100), a);
  // Retaining an evictable block takes it out of the LRU.
  pool.Retain(a);
  EXPECT_EQ(pool.num_evictable(), 1);
  pool.Release(a);
  // Now b is the least recently released.
  EXPECT_EQ(pool.Allocate(), b);
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_FALSE(pool.Lookup(200).has_value());
  EXPECT_FALSE(pool.hash(b).has_value());
  EXPECT_EQ(pool.Lookup(100), a);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolTest, FreeBlocksAreUsedBeforeEvictingCachedOnes) {
  BlockPool pool(2);
  const BlockId a = pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 7));
  pool.Release(a);
  EXPECT_EQ(pool.Allocate(), 1);  // the free block, keeping a cached
  EXPECT_EQ(pool.Lookup(7), a);
  EXPECT_EQ(pool.num_evictions(), 0);
}

TEST(BlockPoolTest, ResetCacheFreesEvictableBlocks) {
  BlockPool pool(2);
  const BlockId a = pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 7));
  pool.Release(a);
  pool.ResetCache();
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_FALSE(pool.Lookup(7).has_value());
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

}  // namespace
}  // namespace tessera
