#include "engine/block_manager.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tessera {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t HashBlockTokens(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = SplitMix64(parent_hash ^ (0xa5a5a5a5ULL + tokens.size()));
  for (int32_t t : tokens) h = SplitMix64(h ^ static_cast<uint32_t>(t));
  return h;
}

BlockManager::BlockManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : block_size_(block_size), enable_prefix_caching_(enable_prefix_caching), pool_(num_blocks) {
  TESSERA_CHECK(num_blocks > 0 && block_size > 0);
}

BlockUsage BlockManager::Usage() const {
  return BlockUsage{.total = pool_.num_blocks(),
                    .free = pool_.num_free(),
                    .evictable = pool_.num_evictable(),
                    .used = pool_.num_used(),
                    .cached = pool_.num_cached()};
}

const std::vector<BlockId>& BlockManager::BlockTable(SequenceId seq) const {
  static const std::vector<BlockId> kEmpty;
  auto it = tables_.find(seq);
  return it == tables_.end() ? kEmpty : it->second.blocks;
}

PrefixMatch BlockManager::MatchPrefix(std::span<const int32_t> tokens) const {
  PrefixMatch match;
  if (!enable_prefix_caching_ || tokens.empty()) return match;
  // Full blocks strictly before the last token.
  const int max_blocks = static_cast<int>((tokens.size() - 1) / block_size_);
  match.num_queried_blocks = max_blocks;
  uint64_t parent = kRootBlockHash;
  for (int i = 0; i < max_blocks; ++i) {
    const uint64_t h = HashBlockTokens(parent, tokens.subspan(i * block_size_, block_size_));
    std::optional<BlockId> block = pool_.Lookup(h);
    if (!block.has_value()) break;
    match.blocks.push_back(*block);
    match.hashes.push_back(h);
    match.num_evictable += pool_.is_evictable(*block);
    parent = h;
  }
  return match;
}

int BlockManager::NumBlocksToAllocate(SequenceId seq, int num_computed, int num_new,
                                      const PrefixMatch* prefix) const {
  const std::vector<BlockId>* base = &BlockTable(seq);
  int extra = 0;
  if (prefix != nullptr && !prefix->blocks.empty()) {
    TESSERA_CHECK_MSG(base->empty(), "prefix match for a sequence that already has blocks");
    TESSERA_CHECK(num_computed == static_cast<int>(prefix->blocks.size()) * block_size_);
    base = &prefix->blocks;
    extra = prefix->num_evictable;
  }
  const int have = static_cast<int>(base->size());
  const int need = BlocksForTokens(static_cast<int64_t>(num_computed) + num_new);
  int count = extra + std::max(0, need - have);
  if (num_new > 0) {
    // Shared blocks that this step writes into get a private copy.
    for (int i = num_computed / block_size_; i < std::min(have, need); ++i) {
      if (pool_.ref_count((*base)[i]) > 1) ++count;
    }
  }
  return count;
}

bool BlockManager::AllocateSlots(SequenceId seq, int num_computed, int num_new,
                                 const PrefixMatch* prefix) {
  if (NumBlocksToAllocate(seq, num_computed, num_new, prefix) > pool_.num_available()) {
    return false;
  }
  Table& table = tables_[seq];
  if (prefix != nullptr) {
    prefix_queried_blocks_ += prefix->num_queried_blocks;
    prefix_hit_blocks_ += static_cast<int64_t>(prefix->blocks.size());
    for (BlockId b : prefix->blocks) {
      pool_.Retain(b);
      table.blocks.push_back(b);
    }
    table.hashes = prefix->hashes;
  }
  const int need = BlocksForTokens(static_cast<int64_t>(num_computed) + num_new);
  if (num_new > 0) {
    const int have = static_cast<int>(table.blocks.size());
    for (int i = num_computed / block_size_; i < std::min(have, need); ++i) {
      const BlockId shared = table.blocks[i];
      if (pool_.ref_count(shared) <= 1) continue;
      const BlockId fresh = pool_.Allocate();
      pending_copies_.push_back({shared, fresh});
      pool_.Release(shared);
      table.blocks[i] = fresh;
    }
  }
  while (static_cast<int>(table.blocks.size()) < need) table.blocks.push_back(pool_.Allocate());
  return true;
}

void BlockManager::CacheComputedBlocks(SequenceId seq, std::span<const int32_t> tokens,
                                       int num_computed) {
  if (!enable_prefix_caching_) return;
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  Table& table = it->second;
  const int full = std::min<int>(num_computed / block_size_, static_cast<int>(table.blocks.size()));
  for (int i = static_cast<int>(table.hashes.size()); i < full; ++i) {
    const uint64_t parent = i == 0 ? kRootBlockHash : table.hashes[i - 1];
    const uint64_t h = HashBlockTokens(parent, tokens.subspan(i * block_size_, block_size_));
    table.hashes.push_back(h);
    // Another block may already hold this content (computed concurrently); keep that one.
    pool_.Register(table.blocks[i], h);
  }
}

void BlockManager::Fork(SequenceId parent, SequenceId child) {
  TESSERA_CHECK_MSG(!tables_.contains(child), "Fork into a sequence that has blocks");
  auto it = tables_.find(parent);
  if (it == tables_.end()) return;
  Table copy = it->second;
  for (BlockId b : copy.blocks) pool_.Retain(b);
  tables_[child] = std::move(copy);
}

void BlockManager::Free(SequenceId seq) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  const std::vector<BlockId> blocks = std::move(it->second.blocks);
  tables_.erase(it);
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) {
    if (pool_.Release(*b) > 0) continue;
    // A copy into a block nobody holds any more must not run: the block may be reused.
    std::erase_if(pending_copies_, [&](const BlockCopy& c) { return c.dst == *b; });
  }
}

std::vector<BlockCopy> BlockManager::TakePendingCopies() {
  std::vector<BlockCopy> copies;
  copies.swap(pending_copies_);
  return copies;
}

absl::Status BlockManager::CheckInvariants() const {
  if (absl::Status s = pool_.CheckInvariants(); !s.ok()) return s;
  std::vector<int> refs(pool_.num_blocks(), 0);
  for (const auto& [seq, table] : tables_) {
    if (table.hashes.size() > table.blocks.size()) {
      return absl::InternalError(absl::StrCat("sequence ", seq, ": more hashes than blocks"));
    }
    for (BlockId b : table.blocks) {
      if (b < 0 || b >= pool_.num_blocks()) {
        return absl::InternalError(absl::StrCat("sequence ", seq, ": block id ", b, " out of range"));
      }
      ++refs[b];
    }
  }
  for (BlockId b = 0; b < pool_.num_blocks(); ++b) {
    if (refs[b] != pool_.ref_count(b)) {
      return absl::InternalError(absl::StrCat("block ", b, ": ref count ", pool_.ref_count(b),
                                              " but held by ", refs[b], " table entries"));
    }
  }
  for (const BlockCopy& c : pending_copies_) {
    if (pool_.ref_count(c.dst) == 0) {
      return absl::InternalError(absl::StrCat("pending copy into unreferenced block ", c.dst));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
