#include "engine/block_manager.h"

#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

std::vector<int32_t> Iota(int n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(BlockManagerTest, AllocatesBlocksToCoverTokens) {
  BlockManager bm(8, 4, /*enable_prefix_caching=*/false);
  EXPECT_EQ(bm.NumBlocksToAllocate(1, 0, 9), 3);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 9));
  EXPECT_EQ(bm.BlockTable(1), (std::vector<BlockId>{0, 1, 2}));
  // Growing within the last block needs nothing; crossing into a new one needs one.
  EXPECT_EQ(bm.NumBlocksToAllocate(1, 9, 3), 0);
  EXPECT_EQ(bm.NumBlocksToAllocate(1, 9, 4), 1);
  EXPECT_EQ(bm.Usage().used, 3);
  EXPECT_EQ(bm.Usage().free, 5);
  bm.Free(1);
  EXPECT_FALSE(bm.HasSequence(1));
  EXPECT_EQ(bm.Usage().free, 8);
  EXPECT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, RefusesWithoutChangingAnythingWhenThePoolIsShort) {
  BlockManager bm(2, 4, false);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 5));
  EXPECT_FALSE(bm.CanAllocateSlots(2, 0, 1));
  EXPECT_FALSE(bm.AllocateSlots(2, 0, 1));
  EXPECT_FALSE(bm.HasSequence(2));
  EXPECT_EQ(bm.Usage().used, 2);
  EXPECT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, ForkSharesBlocksAndWritingASharedBlockCopiesIt) {
  BlockManager bm(8, 4, false);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 6));  // blocks 0 (full), 1 (2 of 4)
  bm.Fork(1, 2);
  EXPECT_EQ(bm.BlockTable(2), bm.BlockTable(1));
  EXPECT_EQ(bm.ref_count(0), 2);
  EXPECT_EQ(bm.ref_count(1), 2);
  // Parent writes position 6 (block 1, shared): one fresh block and a copy 1 -> fresh.
  EXPECT_EQ(bm.NumBlocksToAllocate(1, 6, 1), 1);
  ASSERT_TRUE(bm.AllocateSlots(1, 6, 1));
  const BlockId fresh = bm.BlockTable(1)[1];
  EXPECT_NE(fresh, 1);
  EXPECT_EQ(bm.TakePendingCopies(), (std::vector<BlockCopy>{{1, fresh}}));
  EXPECT_TRUE(bm.TakePendingCopies().empty());
  // The child is now the only holder of block 1 and writes it in place.
  EXPECT_EQ(bm.ref_count(1), 1);
  ASSERT_TRUE(bm.AllocateSlots(2, 6, 1));
  EXPECT_EQ(bm.BlockTable(2)[1], 1);
  EXPECT_TRUE(bm.TakePendingCopies().empty());
  // The full first block stays shared.
  EXPECT_EQ(bm.ref_count(0), 2);
  EXPECT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, FreeDropsPendingCopiesIntoReleasedBlocks) {
  BlockManager bm(8, 4, false);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 2));
  bm.Fork(1, 2);
  ASSERT_TRUE(bm.AllocateSlots(2, 2, 1));
  ASSERT_EQ(bm.TakePendingCopies().size(), 1u);
  ASSERT_TRUE(bm.AllocateSlots(1, 2, 1));  // sole holder now: no copy
  bm.Fork(1, 3);
  ASSERT_TRUE(bm.AllocateSlots(3, 3, 1));  // copy into a block of sequence 3
  bm.Free(3);                              // preempted before the step ran
  EXPECT_TRUE(bm.TakePendingCopies().empty());
  EXPECT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, PrefixCacheReusesComputedFullBlocks) {
  BlockManager bm(16, 4, true);
  const std::vector<int32_t> a = Iota(10);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 10));
  EXPECT_TRUE(bm.MatchPrefix(a).blocks.empty()) << "nothing is computed yet";
  bm.CacheComputedBlocks(1, a, 10);  // two full blocks registered
  EXPECT_EQ(bm.Usage().cached, 2);

  std::vector<int32_t> b = Iota(8);
  b.push_back(99);
  b.push_back(98);
  PrefixMatch m = bm.MatchPrefix(b);
  ASSERT_EQ(m.blocks.size(), 2u);
  EXPECT_EQ(m.blocks[0], bm.BlockTable(1)[0]);
  EXPECT_EQ(m.blocks[1], bm.BlockTable(1)[1]);
  EXPECT_EQ(m.num_evictable, 0);
  ASSERT_TRUE(bm.AllocateSlots(2, 8, 2, &m));
  EXPECT_EQ(bm.ref_count(m.blocks[0]), 2);
  EXPECT_EQ(bm.prefix_hit_blocks(), 2);
  EXPECT_EQ(bm.prefix_queried_blocks(), 2);

  // A different second block: only the first matches (the chain covers the parent).
  std::vector<int32_t> c = Iota(4);
  for (int32_t t : {7, 6, 5, 4, 3, 2}) c.push_back(t);
  EXPECT_EQ(bm.MatchPrefix(c).blocks.size(), 1u);
  // Same tokens in block 2 but a different block 1: no match past block 1's difference.
  std::vector<int32_t> d = Iota(10);
  d[0] = 42;
  EXPECT_TRUE(bm.MatchPrefix(d).blocks.empty());
  EXPECT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, FullPrefixHitLeavesTheLastTokenToCompute) {
  BlockManager bm(16, 4, true);
  const std::vector<int32_t> a = Iota(8);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 8));
  bm.CacheComputedBlocks(1, a, 8);
  EXPECT_EQ(bm.MatchPrefix(a).blocks.size(), 1u);  // 8 tokens: block 1 holds the last one
  EXPECT_EQ(bm.MatchPrefix(Iota(9)).blocks.size(), 2u);
}

TEST(BlockManagerTest, FreedCachedBlocksAreEvictableAndCountedByCanAllocate) {
  BlockManager bm(4, 4, true);
  const std::vector<int32_t> a = Iota(9);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 9));
  bm.CacheComputedBlocks(1, a, 9);
  bm.Free(1);
  BlockUsage u = bm.Usage();
  EXPECT_EQ(u.used, 0);
  EXPECT_EQ(u.evictable, 2);
  EXPECT_EQ(u.free, 2);
  EXPECT_EQ(bm.num_available_blocks(), 4);

  // A hit on evictable blocks takes them out of the available pool.
  PrefixMatch m = bm.MatchPrefix(a);
  ASSERT_EQ(m.blocks.size(), 2u);
  EXPECT_EQ(m.num_evictable, 2);
  EXPECT_EQ(bm.NumBlocksToAllocate(2, 8, 1, &m), 3);  // 2 hits + the block of token 8
  ASSERT_TRUE(bm.AllocateSlots(2, 8, 1, &m));
  EXPECT_EQ(bm.Usage().evictable, 0);
  EXPECT_EQ(bm.Usage().used, 3);
  bm.Free(2);

  // An unrelated sequence needing the whole pool evicts them (tail block first).
  ASSERT_TRUE(bm.AllocateSlots(3, 0, 16));
  EXPECT_EQ(bm.num_evictions(), 2);
  EXPECT_TRUE(bm.MatchPrefix(a).blocks.empty());
  EXPECT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, EvictionTakesThePrefixTailBeforeItsHead) {
  BlockManager bm(3, 4, true);
  const std::vector<int32_t> a = Iota(9);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 9));
  bm.CacheComputedBlocks(1, a, 9);
  bm.Free(1);  // blocks 0, 1 evictable; 2 free
  ASSERT_TRUE(bm.AllocateSlots(2, 0, 8));  // takes free block 2, then evicts one
  EXPECT_EQ(bm.num_evictions(), 1);
  EXPECT_EQ(bm.MatchPrefix(a).blocks.size(), 1u) << "the head block should survive";
}

TEST(BlockManagerTest, WithoutPrefixCachingNothingIsCached) {
  BlockManager bm(4, 4, false);
  const std::vector<int32_t> a = Iota(9);
  ASSERT_TRUE(bm.AllocateSlots(1, 0, 9));
  bm.CacheComputedBlocks(1, a, 9);
  EXPECT_EQ(bm.Usage().cached, 0);
  EXPECT_TRUE(bm.MatchPrefix(a).blocks.empty());
  bm.Free(1);
  EXPECT_EQ(bm.Usage().free, 4);
}

TEST(BlockManagerTest, HashChainDependsOnParentAndTokens) {
  const std::vector<int32_t> t = {1, 2, 3, 4};
  const std::vector<int32_t> u = {1, 2, 3, 5};
  EXPECT_EQ(HashBlockTokens(kRootBlockHash, t), HashBlockTokens(kRootBlockHash, t));
  EXPECT_NE(HashBlockTokens(kRootBlockHash, t), HashBlockTokens(kRootBlockHash, u));
  EXPECT_NE(HashBlockTokens(kRootBlockHash, t), HashBlockTokens(12345, t));
}

// Random admissions (with prefix lookups), extensions, forks and frees over a small pool
// and a small token alphabet (so that prefixes repeat). After every operation:
// the manager's own invariants, ref counts recounted from the tables, the state partition,
// blocks being written owned by the writer alone, and every computed position reading
// back its own token through the table from a simulated KV store that applies the copies.
TEST(BlockManagerTest, RandomizedInvariants) {
  constexpr int kBlocks = 24, kBlockSize = 4;
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    BlockManager bm(kBlocks, kBlockSize, /*enable_prefix_caching=*/seed % 4 != 0);
    // Each slot holds a rolling hash of its sequence's tokens up to that position (as real
    // KV depends on the whole prefix), so a wrongly shared block is detected.
    std::vector<uint64_t> kv(kBlocks * kBlockSize, 0);
    auto expected_kv = [](const std::vector<int32_t>& tokens, int p) {
      uint64_t h = 0;
      for (int i = 0; i <= p; ++i) h = (h ^ static_cast<uint32_t>(tokens[i] + 1)) * 1099511628211ULL;
      return h;
    };
    struct Seq {
      std::vector<int32_t> tokens;
      int computed = 0;
    };
    std::map<SequenceId, Seq> seqs;
    SequenceId next_id = 0;
    auto rand = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    auto write = [&](SequenceId id, int from, int to) {
      for (const BlockCopy& c : bm.TakePendingCopies()) {
        std::copy_n(kv.begin() + c.src * kBlockSize, kBlockSize, kv.begin() + c.dst * kBlockSize);
      }
      const auto& table = bm.BlockTable(id);
      for (int p = from; p < to; ++p) {
        const BlockId b = table[p / kBlockSize];
        ASSERT_EQ(bm.ref_count(b), 1) << "writing a shared block, seed " << seed;
        kv[b * kBlockSize + p % kBlockSize] = expected_kv(seqs[id].tokens, p);
      }
      seqs[id].computed = to;
      bm.CacheComputedBlocks(id, seqs[id].tokens, to);
    };
    for (int op = 0; op < 400; ++op) {
      const int kind = rand(0, 9);
      if (kind <= 2 || seqs.empty()) {  // admit a new sequence
        Seq s;
        const int len = rand(1, 20);
        const int family = rand(0, 2);  // shared-looking prefixes
        // Families 0 and 1 share an 8-token head; family 2 is binary noise, so equal blocks
        // behind different prefixes are common.
        for (int i = 0; i < len; ++i) {
          s.tokens.push_back(family < 2 && i < 8 ? family * 10 + i : rand(0, 1));
        }
        const SequenceId id = next_id++;
        const PrefixMatch m = bm.MatchPrefix(s.tokens);
        const int computed = static_cast<int>(m.blocks.size()) * kBlockSize;
        const int num_new = rand(1, len - computed);
        const int need = bm.NumBlocksToAllocate(id, computed, num_new, &m);
        const int available = bm.num_available_blocks();
        const bool ok = bm.AllocateSlots(id, computed, num_new, &m);
        ASSERT_EQ(ok, need <= available);
        if (ok) {
          seqs[id] = s;
          // Prefix hits hold this sequence's tokens already.
          for (int p = 0; p < computed; ++p) {
            ASSERT_EQ(kv[bm.BlockTable(id)[p / kBlockSize] * kBlockSize + p % kBlockSize],
                      expected_kv(s.tokens, p)) << "prefix hit with other content, seed " << seed;
          }
          write(id, computed, computed + num_new);
        } else {
          ASSERT_FALSE(bm.HasSequence(id));
        }
      } else {
        auto it = seqs.begin();
        std::advance(it, rand(0, static_cast<int>(seqs.size()) - 1));
        const SequenceId id = it->first;
        Seq& s = it->second;
        if (kind <= 5) {  // extend: compute pending tokens, or decode one more
          if (s.computed == static_cast<int>(s.tokens.size())) s.tokens.push_back(rand(0, 1));
          const int num_new = rand(1, static_cast<int>(s.tokens.size()) - s.computed);
          const int before_used = bm.Usage().used;
          const int need = bm.NumBlocksToAllocate(id, s.computed, num_new);
          if (bm.AllocateSlots(id, s.computed, num_new)) {
            write(id, s.computed, s.computed + num_new);
          } else {
            ASSERT_GT(need, bm.num_available_blocks());
            ASSERT_EQ(bm.Usage().used, before_used);
          }
        } else if (kind <= 7) {  // fork
          const SequenceId child = next_id++;
          bm.Fork(id, child);
          seqs[child] = s;
        } else {  // free
          bm.Free(id);
          seqs.erase(it);
        }
      }
      ASSERT_TRUE(bm.CheckInvariants().ok()) << bm.CheckInvariants() << " seed " << seed;
      // Independent recount of references.
      std::vector<int> refs(kBlocks, 0);
      for (const auto& [id, s] : seqs) {
        const auto& table = bm.BlockTable(id);
        ASSERT_EQ(static_cast<int>(table.size()), (s.computed + kBlockSize - 1) / kBlockSize);
        std::set<BlockId> distinct(table.begin(), table.end());
        ASSERT_EQ(distinct.size(), table.size()) << "a block twice in one table";
        for (BlockId b : table) ++refs[b];
        for (int p = 0; p < s.computed; ++p) {
          ASSERT_EQ(kv[table[p / kBlockSize] * kBlockSize + p % kBlockSize], expected_kv(s.tokens, p))
              << "seq " << id << " position " << p << " seed " << seed;
        }
      }
      const BlockUsage u = bm.Usage();
      int used = 0;
      for (BlockId b = 0; b < kBlocks; ++b) {
        ASSERT_EQ(bm.ref_count(b), refs[b]) << "block " << b << " seed " << seed;
        used += refs[b] > 0;
      }
      ASSERT_EQ(u.used, used);
      ASSERT_EQ(u.free + u.evictable + u.used, kBlocks);
      ASSERT_LE(u.cached, kBlocks);
    }
    for (const auto& [id, s] : seqs) bm.Free(id);
    EXPECT_EQ(bm.Usage().used, 0) << "leak, seed " << seed;
    EXPECT_TRUE(bm.CheckInvariants().ok());
  }
}

}  // namespace
}  // namespace tessera
