#include "common/thread_pool.h"

#include <atomic>
#include <chrono>
#include <numeric>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnce) {
  ThreadPool pool(4);
  for (int64_t n : {1, 3, 4, 5, 100, 1001}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << n << " " << i;
  }
}

TEST(ThreadPoolTest, ManyBackToBackLoops) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int iter = 0; iter < 2000; ++iter) {
    pool.ParallelFor(64, 8, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  }
  EXPECT_EQ(total.load(), 2000 * 64);
}

TEST(ThreadPoolTest, ForEachChunkRunsEveryItemOnce) {
  ThreadPool pool(3);
  // Counts above kMaxChunks are grouped into contiguous claims; each item still runs once.
  for (int64_t count : {int64_t{1}, int64_t{2}, int64_t{7}, int64_t{4096}, int64_t{10001}}) {
    std::vector<std::atomic<int>> hits(count);
    pool.ForEachChunk(count, [&](int64_t i) { hits[i].fetch_add(1); });
    for (int64_t i = 0; i < count; ++i) EXPECT_EQ(hits[i].load(), 1) << count << " " << i;
  }
}

TEST(ThreadPoolTest, ManyBackToBackDynamicLoopsSeeOnlyTheirOwnWork) {
  // A worker that wakes late must not run a chunk of an earlier loop against a later one.
  ThreadPool pool(2);
  for (int iter = 0; iter < 5000; ++iter) {
    const int64_t count = 2 + iter % 7;
    std::vector<int> hits(count, 0);
    std::atomic<int64_t> total{0};
    pool.ForEachChunk(count, [&](int64_t i) {
      ++hits[i];  // one writer per item
      total.fetch_add(iter);
    });
    ASSERT_EQ(total.load(), count * iter);
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(hits[i], 1) << iter;
  }
}

TEST(ThreadPoolTest, WorkersSleepAndWakeAgain) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int round = 0; round < 3; ++round) {
    // Long enough for the worker to stop spinning and wait on the condition variable.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  }
  EXPECT_EQ(total.load(), 300);
}

TEST(ThreadPoolTest, SingleThreadRunsInline) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.num_threads(), 1);
  int64_t sum = 0;
  pool.ParallelFor(10, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum, 45);
}

}  // namespace
}  // namespace tessera
