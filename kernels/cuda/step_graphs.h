// Host-side bookkeeping of the CUDA backend's decode-step graphs (Backend::RunStep,
// cuda_backend.h), kept apart so it is unit-tested on any machine. A decode step launches a
// few hundred small kernels; recorded once as a CUDA graph and replayed, they cost one launch.
// A recording fixes every launch's pointers and sizes, so steps are grouped by a key that
// fixes them: the batch padded to a bucket of rows (GraphRowsFor) and the attention's table
// width and split plan fixed by the longest context rounded up to a power of two
// (GraphContextFor). Per key the backend runs the step eagerly once (warm-up: scratch
// buffers and GEMM plans reach their sizes), then records it, then replays it; a replay
// whose ops differ from the recording (StepSignature) runs eagerly instead and the key is
// recorded again, and a key whose recording or replay fails kMaxGraphFailures times stays
// eager. Pure host code: graphs are opaque handles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <tuple>
#include <type_traits>
#include <utility>


namespace tessera {

// The largest padded row count replayed; bigger decode batches run eagerly (their launches
// are a small share of their time).
inline constexpr int64_t kMaxGraphRows = 256;
// The shortest context bucket: below it the table widths and split plans of all steps agree
// closely enough that one recording serves them.
inline constexpr int64_t kMinGraphContext = 256;

// The row count `rows` pads to: 1, 2, 4, then multiples of 8 up to max_rows (at most
// kMaxGraphRows); 0 when rows < 1 or the bucket would exceed max_rows.
int64_t GraphRowsFor(int64_t rows, int64_t max_rows);
// The context bucket of a step whose longest context is `max_context` positions: the least
// power of two at or above both it and kMinGraphContext.
int64_t GraphContextFor(int64_t max_context);

// FNV-1a over 64-bit words: what a step's ops launched (op tags, device pointers, sizes,
// upload offsets), in order. Equal signatures: a recording launches what the step would.
class StepSignature {
 public:
  void Reset() { value_ = kOffset; }
  void AddWord(uint64_t word) {
    for (int byte = 0; byte < 8; ++byte) {
      value_ ^= (word >> (8 * byte)) & 0xff;
      value_ *= kPrime;
    }
  }
  // Integers, enums, bools, pointers and floats (by their bits).
  template <typename... T>
  void Add(T... values) {
    (AddWord(Word(values)), ...);
  }
  uint64_t value() const { return value_; }

 private:
  static constexpr uint64_t kOffset = 14695981039346656037ull;
  static constexpr uint64_t kPrime = 1099511628211ull;
  template <typename T>
  static uint64_t Word(T v) {
    if constexpr (std::is_pointer_v<T>) {
      return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(v));
    } else if constexpr (std::is_floating_point_v<T>) {
      double d = static_cast<double>(v);
      uint64_t bits = 0;
      std::memcpy(&bits, &d, sizeof(bits));
      return bits;
    } else {
      return static_cast<uint64_t>(v);
    }
  }
  uint64_t value_ = kOffset;
};

struct StepGraphKey {
  int64_t rows = 0;     // padded (GraphRowsFor)
  int64_t context = 0;  // bucketed (GraphContextFor)
  bool operator<(const StepGraphKey& o) const {
    return std::tie(rows, context) < std::tie(o.rows, o.context);
  }
};

enum class StepGraphAction {
  kEager,    // run the step as usual (a key whose recordings keep failing)
  kWarmup,   // run it as usual, with the key's fixed plan, before recording it
  kCapture,  // record it, then launch the recording
  kReplay,   // launch the recording (StepGraphCache::graph)
};

// Eager runs of a key before it is recorded.
inline constexpr int kGraphWarmupRuns = 1;
// Failed recordings or replays of a key after which it stays eager.
inline constexpr int kMaxGraphFailures = 3;
// Stale recordings of a key in a row (StepGraphCache::Stale, no replay in between) after
// which it stays eager: its ops change from step to step (e.g. two models on one backend),
// so recordings never pay.
inline constexpr int kMaxStaleRecordings = 8;

// The recordings by key, at most `capacity` of them (the least recently used goes first).
// `destroy` frees a recording's handle. Not thread-safe (one backend, one thread).
class StepGraphCache {
 public:
  StepGraphCache(size_t capacity, std::function<void(void*)> destroy)
      : capacity_(capacity), destroy_(std::move(destroy)) {}
  ~StepGraphCache() { Clear(); }
  StepGraphCache(const StepGraphCache&) = delete;
  StepGraphCache& operator=(const StepGraphCache&) = delete;

  // What to do for a step of `key` now, counting it as a use.
  StepGraphAction Next(const StepGraphKey& key);
  // The recording of `key` (kReplay) and the signature of the ops it launches.
  void* graph(const StepGraphKey& key) const;
  uint64_t signature(const StepGraphKey& key) const;
  // Keeps `graph` (owned from now on) as the recording of `key`.
  void Store(const StepGraphKey& key, void* graph, uint64_t signature);
  // A recording or replay of `key` failed: its recording (if any) is dropped and the key
  // warms up again, or stays eager after kMaxGraphFailures failures.
  void Fail(const StepGraphKey& key);
  // The recording of `key` no longer matches its step's ops (a buffer it reads was
  // reallocated): dropped, and the key warms up again, unless this happened
  // kMaxStaleRecordings times in a row (then it stays eager).
  void Stale(const StepGraphKey& key);
  // A replay of `key` ran: its stale recordings no longer count against it.
  void Replayed(const StepGraphKey& key);
  // Drops every recording and count (the buffers they point into were replaced).
  void Clear();
  size_t graphs() const { return graphs_; }

 private:
  struct Entry {
    int eager_runs = 0;
    int failures = 0;
    int stale = 0;
    void* graph = nullptr;
    uint64_t signature = 0;
    uint64_t last_use = 0;
  };
  void Drop(Entry* entry);
  void EvictLeastRecentlyUsed();

  size_t capacity_;
  std::function<void(void*)> destroy_;
  std::map<StepGraphKey, Entry> entries_;
  size_t graphs_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace tessera
