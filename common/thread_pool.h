// A fixed pool of worker threads for data-parallel loops.
// ParallelFor / ForEachChunk may be called from one thread at a time (the owner of the pool);
// they block until every chunk has run. Chunks are claimed dynamically: the caller runs
// chunks too, and a worker that has not started (asleep, or descheduled on a busy machine)
// by the time the caller has claimed every chunk is not waited for. Workers spin briefly
// before sleeping, so that back-to-back loops of a decode step do not pay a wake-up each.
// No heap allocation per call: the callable is passed by reference, never copied.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread: 1 means no workers. 0 means hardware threads.
  explicit ThreadPool(int num_threads = 0);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(begin, end) over [0, n) split into contiguous chunks of at least `grain`
  // items, at most one chunk per thread; the caller's thread takes a chunk too.
  template <typename Fn>
  void ParallelFor(int64_t n, int64_t grain, const Fn& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t max_chunks = (n + grain - 1) / grain;
    const int64_t chunks = max_chunks < num_threads() ? max_chunks : num_threads();
    if (chunks <= 1) {
      fn(int64_t{0}, n);
      return;
    }
    const int64_t per = (n + chunks - 1) / chunks;
    auto run = [&](int64_t c) {
      const int64_t begin = c * per;
      const int64_t end = begin + per < n ? begin + per : n;
      if (begin < end) fn(begin, end);
    };
    Run(chunks, &Call<decltype(run)>, &run);
  }

  // Runs fn(c) for every c in [0, count), each exactly once, on whichever thread claims it
  // first (dynamic scheduling). Items are grouped into at most kMaxChunks claims.
  template <typename Fn>
  void ForEachChunk(int64_t count, const Fn& fn) {
    if (count <= 0) return;
    if (count == 1 || workers_.empty()) {
      for (int64_t c = 0; c < count; ++c) fn(c);
      return;
    }
    const int64_t chunks = count < kMaxChunks ? count : kMaxChunks;
    auto run = [&](int64_t c) {
      const int64_t begin = c * count / chunks;
      const int64_t end = (c + 1) * count / chunks;
      for (int64_t i = begin; i < end; ++i) fn(i);
    };
    Run(chunks, &Call<decltype(run)>, &run);
  }

  // The process-wide pool used by CPU kernels (sized by SetDefaultThreads or hardware).
  static ThreadPool& Default();
  // Sets the size of the default pool; call before its first use.
  static void SetDefaultThreads(int num_threads);

  // The most claims one loop is split into (they are counted in 16 bits of state_).
  static constexpr int64_t kMaxChunks = 4096;

 private:
  using ChunkFn = void (*)(const void* ctx, int64_t chunk);
  template <typename F>
  static void Call(const void* ctx, int64_t chunk) {
    (*static_cast<const F*>(ctx))(chunk);
  }

  // Runs fn(ctx, c) for c in [0, chunks) with 2 <= chunks <= kMaxChunks.
  void Run(int64_t chunks, ChunkFn fn, const void* ctx);
  void WorkerLoop();
  // Claims and runs chunks of generation `gen` until none is left; returns how many ran.
  int64_t RunClaims(uint32_t gen);

  std::vector<std::thread> workers_;
  // gen (32 bits) | chunks (16 bits) | next unclaimed chunk (16 bits). A claim is a CAS that
  // checks the generation, so a late worker can never take a chunk of a later loop.
  alignas(64) std::atomic<uint64_t> state_{0};
  alignas(64) std::atomic<int64_t> done_{0};  // chunks finished by workers this generation
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable wake_;
  // The current loop, written by the caller before it publishes a new generation.
  ChunkFn job_fn_ = nullptr;
  const void* job_ctx_ = nullptr;
};

}  // namespace tessera
