#include "kernels/cuda/step_graphs.h"

#include <algorithm>

namespace tessera {

int64_t GraphRowsFor(int64_t rows, int64_t max_rows) {
  max_rows = std::min(max_rows, kMaxGraphRows);
  if (rows < 1) return 0;
  int64_t bucket = rows;
  if (rows == 3) {
    bucket = 4;
  } else if (rows > 4) {
    bucket = (rows + 7) / 8 * 8;
  }
  return bucket <= max_rows ? bucket : 0;
}

int64_t GraphContextFor(int64_t max_context) {
  int64_t bucket = kMinGraphContext;
  while (bucket < max_context) bucket *= 2;
  return bucket;
}

StepGraphAction StepGraphCache::Next(const StepGraphKey& key) {
  Entry& e = entries_[key];
  e.last_use = ++clock_;
  if (e.graph != nullptr) return StepGraphAction::kReplay;
  if (e.failures >= kMaxGraphFailures) return StepGraphAction::kEager;
  if (e.eager_runs < kGraphWarmupRuns) {
    ++e.eager_runs;
    return StepGraphAction::kWarmup;
  }
  return StepGraphAction::kCapture;
}

void* StepGraphCache::graph(const StepGraphKey& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second.graph;
}

uint64_t StepGraphCache::signature(const StepGraphKey& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : it->second.signature;
}

void StepGraphCache::Store(const StepGraphKey& key, void* graph, uint64_t signature) {
  Entry& e = entries_[key];
  Drop(&e);
  if (graphs_ >= capacity_) EvictLeastRecentlyUsed();
  e.graph = graph;
  e.signature = signature;
  e.last_use = ++clock_;
  ++graphs_;
}

void StepGraphCache::Fail(const StepGraphKey& key) {
  Entry& e = entries_[key];
  Drop(&e);
  ++e.failures;
  e.eager_runs = 0;
}

void StepGraphCache::Stale(const StepGraphKey& key) {
  Entry& e = entries_[key];
  Drop(&e);
  e.eager_runs = 0;
  if (++e.stale >= kMaxStaleRecordings) e.failures = kMaxGraphFailures;
}

void StepGraphCache::Replayed(const StepGraphKey& key) {
  auto it = entries_.find(key);
  if (it != entries_.end()) it->second.stale = 0;
}

void StepGraphCache::Clear() {
  for (auto& [key, e] : entries_) Drop(&e);
  entries_.clear();
}

void StepGraphCache::Drop(Entry* entry) {
  if (entry->graph == nullptr) return;
  destroy_(entry->graph);
  entry->graph = nullptr;
  --graphs_;
}

void StepGraphCache::EvictLeastRecentlyUsed() {
  Entry* oldest = nullptr;
  for (auto& [key, e] : entries_) {
    if (e.graph != nullptr && (oldest == nullptr || e.last_use < oldest->last_use)) oldest = &e;
  }
  if (oldest == nullptr) return;
  Drop(oldest);
  oldest->eager_runs = 0;  // warms up again if it comes back
}

}  // namespace tessera
