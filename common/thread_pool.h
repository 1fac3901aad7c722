// A fixed pool of worker threads for data-parallel loops.
// ParallelFor may be called from one thread at a time (the owner of the pool); it blocks
// until every chunk has run. Workers spin briefly before sleeping, so that back-to-back
// loops of a decode step do not pay a wake-up each.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
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
  // items, one chunk per thread at most; the caller's thread takes a chunk too.
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& fn);

  // The process-wide pool used by CPU kernels (sized by SetDefaultThreads or hardware).
  static ThreadPool& Default();
  // Sets the size of the default pool; call before its first use.
  static void SetDefaultThreads(int num_threads);

 private:
  void WorkerLoop(int index);
  void RunChunk(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  // The current job, written by the caller before bumping generation_.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
};

}  // namespace tessera
