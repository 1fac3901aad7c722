#include "engine/block_pool.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera {

BlockPool::BlockPool(int num_blocks) : blocks_(num_blocks) {
  for (BlockId b = 0; b < num_blocks; ++b) {
    free_.push_back(b);
    blocks_[b].in_free = true;
  }
}

std::optional<uint64_t> BlockPool::hash(BlockId block) const {
  if (!blocks_[block].has_hash) return std::nullopt;
  return blocks_[block].hash;
}

BlockId BlockPool::Allocate() {
  TESSERA_CHECK_MSG(num_available() > 0, "BlockPool::Allocate with no block available");
  BlockId b;
  if (!free_.empty()) {
    b = free_.front();
    free_.pop_front();
    blocks_[b].in_free = false;
  } else {
    b = lru_.front();
    lru_.pop_front();
    Block& block = blocks_[b];
    block.in_lru = false;
    by_hash_.erase(block.hash);
    block.has_hash = false;
    ++num_evictions_;
  }
  blocks_[b].ref_count = 1;
  return b;
}

void BlockPool::Retain(BlockId block) {
  Block& b = blocks_[block];
  TESSERA_CHECK_MSG(!b.in_free, "BlockPool::Retain of a free block");
  if (b.in_lru) {
    lru_.erase(b.lru_it);
    b.in_lru = false;
  }
  ++b.ref_count;
}

int BlockPool::Release(BlockId block) {
  Block& b = blocks_[block];
  TESSERA_CHECK_MSG(b.ref_count > 0, "BlockPool::Release of an unreferenced block");
  if (--b.ref_count > 0) return b.ref_count;
  if (b.has_hash) {
    b.lru_it = lru_.insert(lru_.end(), block);
    b.in_lru = true;
  } else {
    free_.push_back(block);
    b.in_free = true;
  }
  return 0;
}

std::optional<BlockId> BlockPool::Lookup(uint64_t hash) const {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  return it->second;
}

bool BlockPool::Register(BlockId block, uint64_t hash) {
  Block& b = blocks_[block];
  TESSERA_CHECK_MSG(b.ref_count > 0, "BlockPool::Register of an unreferenced block");
  if (b.has_hash || by_hash_.contains(hash)) return false;
  b.has_hash = true;
  b.hash = hash;
  by_hash_[hash] = block;
  return true;
}

void BlockPool::ResetCache() {
  for (BlockId b : lru_) {
    blocks_[b].in_lru = false;
    blocks_[b].in_free = true;
    free_.push_back(b);
  }
  lru_.clear();
  for (Block& b : blocks_) b.has_hash = false;
  by_hash_.clear();
}

absl::Status BlockPool::CheckInvariants() const {
  int free_count = 0, lru_count = 0, hashed = 0;
  for (BlockId id = 0; id < num_blocks(); ++id) {
    const Block& b = blocks_[id];
    const std::string where = absl::StrCat("block ", id, ": ");
    if (b.ref_count < 0) return absl::InternalError(absl::StrCat(where, "negative ref count"));
    if (b.in_free && b.in_lru) return absl::InternalError(absl::StrCat(where, "free and evictable"));
    if ((b.in_free || b.in_lru) && b.ref_count != 0) {
      return absl::InternalError(absl::StrCat(where, "free or evictable with ref ", b.ref_count));
    }
    if (b.ref_count == 0 && !b.in_free && !b.in_lru) {
      return absl::InternalError(absl::StrCat(where, "unreferenced but neither free nor evictable"));
    }
    if (b.in_free && b.has_hash) return absl::InternalError(absl::StrCat(where, "free with a hash"));
    if (b.in_lru && !b.has_hash) return absl::InternalError(absl::StrCat(where, "evictable without a hash"));
    if (b.has_hash) {
      ++hashed;
      auto it = by_hash_.find(b.hash);
      if (it == by_hash_.end() || it->second != id) {
        return absl::InternalError(absl::StrCat(where, "hash not mapped back to it"));
      }
    }
    free_count += b.in_free;
    lru_count += b.in_lru;
  }
  if (free_count != num_free() || lru_count != num_evictable()) {
    return absl::InternalError("free list or LRU size disagrees with block states");
  }
  if (hashed != num_cached()) return absl::InternalError("hash map has stale entries");
  return absl::OkStatus();
}

}  // namespace tessera
