// Tensor parallelism on a backend whose memory the host may not touch, over a communicator
// whose buffers are that memory: what a GPU rank does with NCCL. N threads are the ranks;
// each loads its shard on its own GuardedBackend (tests/model/guarded_backend.h: any host
// access of the activations outside the backend's calls crashes) and they meet in
// ThreadGroupCommunicator, which like NCCL reads and writes the ranks' buffers itself. Every
// rank's logits must be the one-rank cpu model's within the MPI test's tolerance
// (tests/model/tensor_parallel_mpi_test.cc), greedy tokens the same, for tp 2 and 3, with
// sequence parallelism, the deterministic (gathered) row-parallel layers, and a paged batch.
#include <barrier>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "formats/weight_store.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "parallel/communicator.h"
#include "parallel/shard_plan.h"
#include "tests/model/guarded_backend.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using testing::GuardedBackend;

// What the ranks of one group share: a barrier, each rank's published buffer, and each
// rank's backend (to open its buffers while the communicator works on them).
struct ThreadGroup {
  explicit ThreadGroup(int n)
      : size(n), barrier(n), buffers(static_cast<size_t>(n)), backends(static_cast<size_t>(n)) {}
  int size;
  std::barrier<> barrier;
  std::vector<const float*> buffers;
  std::vector<const GuardedBackend*> backends;
};

class ThreadGroupCommunicator : public Communicator {
 public:
  ThreadGroupCommunicator(ThreadGroup* group, int rank, const GuardedBackend* backend)
      : group_(group), rank_(rank) {
    group_->backends[static_cast<size_t>(rank)] = backend;
  }
  int rank() const override { return rank_; }
  int size() const override { return group_->size; }
  bool device_buffers() const override { return true; }

  absl::Status AllReduce(std::span<float> data, ReduceOp op) override {
    std::vector<float> result(data.size());
    Collective(data.data(), [&] {
      for (size_t i = 0; i < data.size(); ++i) {
        float v = group_->buffers[0][i];
        for (int r = 1; r < size(); ++r) {
          const float w = group_->buffers[static_cast<size_t>(r)][i];
          v = op == ReduceOp::kSum ? v + w : std::max(v, w);
        }
        result[i] = v;
      }
    }, [&] { std::copy(result.begin(), result.end(), data.begin()); });
    return absl::OkStatus();
  }
  absl::Status ReduceScatter(std::span<const float> in, std::span<float> out) override {
    std::vector<float> result(out.size());
    Collective(in.data(), [&] {
      const size_t first = static_cast<size_t>(rank_) * out.size();
      for (size_t i = 0; i < out.size(); ++i) {
        float v = 0.0f;
        for (int r = 0; r < size(); ++r) v += group_->buffers[static_cast<size_t>(r)][first + i];
        result[i] = v;
      }
    }, [&] { std::copy(result.begin(), result.end(), out.begin()); });
    return absl::OkStatus();
  }
  absl::Status AllGather(std::span<const float> in, std::span<float> out) override {
    std::vector<float> result(out.size());
    Collective(in.data(), [&] {
      for (int r = 0; r < size(); ++r) {
        const float* src = group_->buffers[static_cast<size_t>(r)];
        std::copy(src, src + in.size(), result.begin() + static_cast<int64_t>(r * in.size()));
      }
    }, [&] { std::copy(result.begin(), result.end(), out.begin()); });
    return absl::OkStatus();
  }
  absl::Status Broadcast(std::span<std::byte>, int) override { return Unused("Broadcast"); }
  absl::Status Send(std::span<const std::byte>, int, int) override { return Unused("Send"); }
  absl::Status Recv(std::span<std::byte>, int, int) override { return Unused("Recv"); }
  absl::Status Barrier() override {
    group_->barrier.arrive_and_wait();
    return absl::OkStatus();
  }

 private:
  static absl::Status Unused(const char* what) {
    return absl::UnimplementedError(absl::StrCat(what, ": not used by tensor parallelism"));
  }
  // Every rank publishes its input; with every rank's buffers open, `read` computes from all
  // inputs, then (once nobody reads any more) `write` stores this rank's result.
  void Collective(const float* mine, const std::function<void()>& read,
                  const std::function<void()>& write) {
    group_->buffers[static_cast<size_t>(rank_)] = mine;
    group_->backends[static_cast<size_t>(rank_)]->OpenAll();
    group_->barrier.arrive_and_wait();  // published and open everywhere
    read();
    group_->barrier.arrive_and_wait();  // nobody reads an input any more
    write();
    group_->barrier.arrive_and_wait();  // every result written
    group_->backends[static_cast<size_t>(rank_)]->CloseAll();
    group_->barrier.arrive_and_wait();  // closed before anyone's next backend call opens
  }

  ThreadGroup* group_;
  int rank_;
};

struct Case {
  std::string name;
  int tp;
  bool sp;
  bool deterministic;
};

class DeviceTensorParallelTest : public ::testing::TestWithParam<Case> {};

// The logits of a prefill (every position) and of 4 greedy steps through the contiguous
// cache, each step fed `feed` (the one-rank model's choices), then of a paged batch.
struct RankLogits {
  std::vector<std::vector<float>> steps;
  std::vector<float> paged;
  int64_t synchronizes = 0;
};

void RunModel(LlamaModel& m, const std::vector<int32_t>& feed, RankLogits* out) {
  auto cache = m.NewKvCache(32);
  ASSERT_TRUE(cache.ok()) << cache.status();
  const std::vector<int32_t> prompt = {5, 17, 3, 42, 8, 1};
  std::vector<float> logits;
  ASSERT_TRUE(m.Forward(prompt, 0, *cache, /*all_logits=*/true, &logits).ok());
  out->steps.push_back(logits);
  int64_t pos = static_cast<int64_t>(prompt.size());
  for (const int32_t token : feed) {
    ASSERT_TRUE(m.Forward({&token, 1}, pos++, *cache, false, &logits).ok());
    out->steps.push_back(logits);
  }
  auto paged = m.NewPagedKvCache(8, 4);
  ASSERT_TRUE(paged.ok()) << paged.status();
  const std::vector<int32_t> ids = {3, 9, 4, 1, 7, 2, 8};
  const std::vector<int32_t> positions = {0, 1, 2, 3, 4, 0, 1};
  const std::vector<int32_t> table_a = {0, 1}, table_b = {2};
  const std::vector<PagedSequence> seqs = {{0, 5, 5, table_a}, {5, 2, 2, table_b}};
  const std::vector<int64_t> rows = {4, 6};
  ASSERT_TRUE(m.ForwardPaged(PagedBatch{ids, positions, seqs, rows}, *paged, &out->paged).ok());
}

int32_t ArgMax(const std::vector<float>& v, size_t from) {
  return static_cast<int32_t>(std::max_element(v.begin() + static_cast<int64_t>(from), v.end()) -
                              v.begin() - static_cast<int64_t>(from));
}

TEST_P(DeviceTensorParallelTest, EveryRankGivesTheOneRankLogits) {
  const Case& c = GetParam();
  testing::TinySpec spec = testing::TensorParallelSpec();  // uneven splits at tp 2
  spec.tied = false;
  const std::string path = testing::TempGgufPath("device_tp_" + c.name);
  ASSERT_TRUE(testing::WriteTinyModel(spec, path).ok());
  auto store = OpenWeightStore(path);
  ASSERT_TRUE(store.ok()) << store.status();

  // One rank on the plain cpu backend: the logits to match and the tokens to feed.
  auto cpu = CreateBackend("cpu", 1);
  ASSERT_TRUE(cpu.ok());
  auto whole = LlamaModel::Load(**store, cpu->get());
  ASSERT_TRUE(whole.ok()) << whole.status();
  RankLogits want;
  std::vector<int32_t> feed;
  {
    // Greedy from the prefill's last row, one step at a time.
    auto cache = (*whole)->NewKvCache(32);
    ASSERT_TRUE(cache.ok());
    std::vector<float> logits;
    const std::vector<int32_t> prompt = {5, 17, 3, 42, 8, 1};
    ASSERT_TRUE((*whole)->Forward(prompt, 0, *cache, false, &logits).ok());
    for (int s = 0; s < 4; ++s) {
      feed.push_back(ArgMax(logits, 0));
      ASSERT_TRUE((*whole)->Forward({&feed.back(), 1}, 6 + s, *cache, false, &logits).ok());
    }
  }
  RunModel(**whole, feed, &want);

  PlannerInput in;
  in.model = (*store)->config();
  in.tp = c.tp;
  in.bytes_per_weight = 4.0;
  in.ffn_alignment = 32;
  in.rank_memory_bytes.assign(static_cast<size_t>(c.tp), int64_t{8} << 30);
  auto plan = PlanShards(in);
  ASSERT_TRUE(plan.ok()) << plan.status();

  ThreadGroup group(c.tp);
  std::vector<RankLogits> got(static_cast<size_t>(c.tp));
  std::vector<std::thread> ranks;
  for (int r = 0; r < c.tp; ++r) {
    ranks.emplace_back([&, r] {
      GuardedBackend backend;
      ThreadGroupCommunicator comm(&group, r, &backend);
      TensorParallelShard shard{plan->tensor, &comm, c.sp, c.deterministic};
      auto model = LlamaModel::Load(**store, &backend, nullptr, &shard);
      ASSERT_TRUE(model.ok()) << model.status();  // every rank fails alike: no one waits
      RunModel(**model, feed, &got[static_cast<size_t>(r)]);
      got[static_cast<size_t>(r)].synchronizes = backend.synchronizes();
    });
  }
  for (std::thread& t : ranks) t.join();

  for (int r = 0; r < c.tp; ++r) {
    SCOPED_TRACE(absl::StrCat("rank ", r));
    const RankLogits& run = got[static_cast<size_t>(r)];
    ASSERT_EQ(run.steps.size(), want.steps.size());
    for (size_t s = 0; s < want.steps.size(); ++s) {
      ASSERT_EQ(run.steps[s].size(), want.steps[s].size()) << "step " << s;
      for (size_t i = 0; i < want.steps[s].size(); ++i) {
        ASSERT_NEAR(run.steps[s][i], want.steps[s][i], 1e-4) << "step " << s << " logit " << i;
      }
      const size_t last = want.steps[s].size() - static_cast<size_t>(spec.vocab);
      EXPECT_EQ(ArgMax(run.steps[s], last), ArgMax(want.steps[s], last)) << "step " << s;
    }
    ASSERT_EQ(run.paged.size(), want.paged.size());
    for (size_t i = 0; i < want.paged.size(); ++i) {
      ASSERT_NEAR(run.paged[i], want.paged[i], 1e-4) << "paged logit " << i;
    }
    // Every collective waited for the backend's queued work first.
    EXPECT_GT(run.synchronizes, 0);
  }
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, DeviceTensorParallelTest,
    ::testing::Values(Case{"tp2", 2, false, false}, Case{"tp3", 3, false, false},
                      Case{"tp2_sp", 2, true, false}, Case{"tp3_sp", 3, true, false},
                      Case{"tp2_gathered", 2, false, true}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace tessera
