#include "common/thread_pool.h"

#include <algorithm>

#include "common/check.h"

namespace tessera {
namespace {
int g_default_threads = 0;
// A worker spins this many pauses (about 1 ms here) before it sleeps; the owner waiting for
// workers spins kOwnerSpins before it starts yielding its CPU to them.
constexpr int kWorkerSpins = 20000;
constexpr int kOwnerSpins = 4096;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline uint32_t GenOf(uint64_t state) { return static_cast<uint32_t>(state >> 32); }
}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) {
    num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_seq_cst);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

int64_t ThreadPool::RunClaims(uint32_t gen) {
  int64_t ran = 0;
  uint64_t s = state_.load(std::memory_order_acquire);
  while (GenOf(s) == gen) {
    const uint64_t chunks = (s >> 16) & 0xffff;
    const uint64_t next = s & 0xffff;
    if (next >= chunks) break;
    if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      continue;
    }
    // The claim keeps generation `gen` open (the owner waits for it), so job_* are stable.
    job_fn_(job_ctx_, static_cast<int64_t>(next));
    ++ran;
    s = state_.load(std::memory_order_acquire);
  }
  return ran;
}

void ThreadPool::WorkerLoop() {
  uint32_t seen = 0;
  while (true) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (int spin = 0; GenOf(s) == seen && spin < kWorkerSpins; ++spin) {
      if (stop_.load(std::memory_order_relaxed)) return;
      CpuRelax();
      if (spin % 1024 == 1023) std::this_thread::yield();  // let a waiting owner run
      s = state_.load(std::memory_order_acquire);
    }
    if (GenOf(s) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, [&] {
        return stop_.load(std::memory_order_seq_cst) ||
               GenOf(state_.load(std::memory_order_seq_cst)) != seen;
      });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      s = state_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = GenOf(s);
    const int64_t ran = RunClaims(seen);
    if (ran > 0) done_.fetch_add(ran, std::memory_order_release);
  }
}

void ThreadPool::Run(int64_t chunks, ChunkFn fn, const void* ctx) {
  TESSERA_CHECK(chunks >= 2 && chunks <= kMaxChunks);
  job_fn_ = fn;
  job_ctx_ = ctx;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t gen = GenOf(state_.load(std::memory_order_relaxed)) + 1;
  // seq_cst store + seq_cst load of sleepers_ pair with the sleeper's increment + check, so
  // either we see the sleeper and notify, or it sees the new generation and does not sleep.
  state_.store((static_cast<uint64_t>(gen) << 32) | (static_cast<uint64_t>(chunks) << 16),
               std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }
    wake_.notify_all();
  }
  const int64_t theirs = chunks - RunClaims(gen);
  // Every chunk is claimed now; wait only for those that workers are running.
  for (int spin = 0; done_.load(std::memory_order_acquire) != theirs; ++spin) {
    if (spin < kOwnerSpins) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

ThreadPool& ThreadPool::Default() {
  static ThreadPool* pool = new ThreadPool(g_default_threads);
  return *pool;
}

void ThreadPool::SetDefaultThreads(int num_threads) { g_default_threads = num_threads; }

}  // namespace tessera
