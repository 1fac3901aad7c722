// The physical KV blocks: reference counts, a free list and an LRU cache of unreferenced
// blocks whose content is known (prefix caching).
//
// Every block is in exactly one state: free (ref 0, no content worth keeping), evictable
// (ref 0, registered under a content hash, kept until the pool needs room, least recently
// released first) or used (ref > 0, possibly registered). Deterministic: the same calls give
// the same block ids. Not thread-safe; owned by one BlockManager.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/sequence.h"

namespace tessera {

class BlockPool {
 public:
  explicit BlockPool(int num_blocks);

  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_evictable() const { return static_cast<int>(lru_.size()); }
  int num_used() const { return num_blocks() - num_free() - num_evictable(); }
  // Blocks Allocate() can hand out now.
  int num_available() const { return num_free() + num_evictable(); }
  // Registered blocks (used or evictable).
  int num_cached() const { return static_cast<int>(by_hash_.size()); }
  int64_t num_evictions() const { return num_evictions_; }

  int ref_count(BlockId block) const { return blocks_[block].ref_count; }
  std::optional<uint64_t> hash(BlockId block) const;
  bool is_evictable(BlockId block) const { return blocks_[block].in_lru; }

  // A block with ref 1 and no registered content: from the free list first, else the least
  // recently released evictable block (its registration is dropped). Requires
  // num_available() > 0.
  BlockId Allocate();
  // ref + 1; a block at ref 0 leaves the evictable set.
  void Retain(BlockId block);
  // ref - 1; at 0 the block becomes evictable if registered, else free. Returns the new ref.
  int Release(BlockId block);

  // The block registered under `hash`, if any.
  std::optional<BlockId> Lookup(uint64_t hash) const;
  // Registers a used block's content. False (no change) if the block already has a hash or
  // another block holds this one.
  bool Register(BlockId block, uint64_t hash);
  // Drops every registration (evictable blocks become free).
  void ResetCache();

  // OK or INTERNAL naming the first broken invariant (states exclusive and complete,
  // hashes unique and mapped both ways).
  absl::Status CheckInvariants() const;

 private:
  struct Block {
    int ref_count = 0;
    bool has_hash = false;
    uint64_t hash = 0;
    bool in_free = false;
    bool in_lru = false;
    std::list<BlockId>::iterator lru_it;
  };

  std::vector<Block> blocks_;
  std::deque<BlockId> free_;
  std::list<BlockId> lru_;  // front = least recently released
  absl::flat_hash_map<uint64_t, BlockId> by_hash_;
  int64_t num_evictions_ = 0;
};

}  // namespace tessera
