// Paged KV cache bookkeeping: per-sequence block tables over a BlockPool, copy-on-write
// forks, and automatic prefix caching.
//
// Token i of a sequence lives in slot i % block_size of block table[i / block_size]. A full
// block whose KV is computed is registered under a hash chain (hash of the previous block's
// hash and this block's tokens), so a later sequence with the same leading tokens reuses it
// instead of recomputing. Writing into a block shared by several tables (after Fork) first
// moves the writer onto a fresh block and records a BlockCopy that the step must perform,
// in the order given, before its forward pass.
//
// Pure and deterministic; no device memory is touched here. Not thread-safe: the engine
// thread owns it. A 64-bit hash collision between two different prefixes would alias their
// blocks; the chain makes that about 2^-64 per lookup.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/block_pool.h"
#include "engine/sequence.h"

namespace tessera {

struct BlockCopy {
  BlockId src = -1;
  BlockId dst = -1;
  bool operator==(const BlockCopy&) const = default;
};

// Leading full blocks of a token sequence found in the prefix cache.
struct PrefixMatch {
  std::vector<BlockId> blocks;
  std::vector<uint64_t> hashes;
  int num_evictable = 0;  // of `blocks`, those now unreferenced (attaching takes them from the pool)
  int num_queried_blocks = 0;
};

// Hash of a full block given its predecessor's hash (kRootBlockHash for the first block).
inline constexpr uint64_t kRootBlockHash = 0x9e3779b97f4a7c15ULL;
uint64_t HashBlockTokens(uint64_t parent_hash, std::span<const int32_t> tokens);

struct BlockUsage {
  int total = 0;
  int free = 0;       // never registered or dropped from the cache
  int evictable = 0;  // unreferenced, content cached
  int used = 0;       // referenced by some table
  int cached = 0;     // registered (used or evictable)
};

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool enable_prefix_caching);

  int block_size() const { return block_size_; }
  int num_blocks() const { return pool_.num_blocks(); }
  bool prefix_caching() const { return enable_prefix_caching_; }
  BlockUsage Usage() const;
  int num_available_blocks() const { return pool_.num_available(); }
  // Blocks needed to hold `num_tokens` tokens.
  int BlocksForTokens(int64_t num_tokens) const {
    return static_cast<int>((num_tokens + block_size_ - 1) / block_size_);
  }

  bool HasSequence(SequenceId seq) const { return tables_.contains(seq); }
  // The sequence's physical blocks (empty if it has none).
  const std::vector<BlockId>& BlockTable(SequenceId seq) const;
  int ref_count(BlockId block) const { return pool_.ref_count(block); }

  // Cached leading full blocks of `tokens`, leaving at least one token uncovered so that the
  // sequence still computes the logits of its last token. Empty without prefix caching.
  // Valid until the next call that changes the manager (allocation may evict the blocks).
  PrefixMatch MatchPrefix(std::span<const int32_t> tokens) const;

  // Pool blocks that AllocateSlots would take for positions [num_computed, num_computed +
  // num_new): new blocks past the table's end, copies of shared blocks written into, and
  // evictable prefix hits. `prefix` only for a sequence with no table yet, and then
  // num_computed must equal its tokens.
  int NumBlocksToAllocate(SequenceId seq, int num_computed, int num_new,
                          const PrefixMatch* prefix = nullptr) const;
  bool CanAllocateSlots(SequenceId seq, int num_computed, int num_new,
                        const PrefixMatch* prefix = nullptr) const {
    return NumBlocksToAllocate(seq, num_computed, num_new, prefix) <= pool_.num_available();
  }
  // Makes positions [num_computed, num_computed + num_new) writable by `seq` alone (attaching
  // `prefix` first). False, changing nothing, when the pool lacks the blocks.
  [[nodiscard]] bool AllocateSlots(SequenceId seq, int num_computed, int num_new,
                                   const PrefixMatch* prefix = nullptr);
  // Registers the sequence's full blocks among its first `num_computed` tokens.
  void CacheComputedBlocks(SequenceId seq, std::span<const int32_t> tokens, int num_computed);

  // `child` shares all of `parent`'s blocks (copy-on-write). `child` must have no table.
  void Fork(SequenceId parent, SequenceId child);
  // Drops the sequence's table (releasing its blocks, last block first so that a prefix's
  // tail is evicted before its head). No-op for an unknown sequence.
  void Free(SequenceId seq);

  // Copies recorded since the last call, in the order they must run.
  std::vector<BlockCopy> TakePendingCopies();

  // Prefix-cache counters: blocks looked up when a sequence was admitted, and blocks found.
  int64_t prefix_queried_blocks() const { return prefix_queried_blocks_; }
  int64_t prefix_hit_blocks() const { return prefix_hit_blocks_; }
  int64_t num_evictions() const { return pool_.num_evictions(); }

  // OK, or INTERNAL naming the first broken invariant: the pool's own, and every block's ref
  // count equal to the number of table entries holding it.
  absl::Status CheckInvariants() const;

 private:
  struct Table {
    std::vector<BlockId> blocks;
    std::vector<uint64_t> hashes;  // chain hashes of the leading computed full blocks
  };

  int block_size_;
  bool enable_prefix_caching_;
  BlockPool pool_;
  absl::flat_hash_map<SequenceId, Table> tables_;
  std::vector<BlockCopy> pending_copies_;
  int64_t prefix_queried_blocks_ = 0;
  int64_t prefix_hit_blocks_ = 0;
};

}  // namespace tessera
