// LlamaModel on a backend whose memory the host may not touch (as CUDA's): GuardedBackend
// wraps the "cpu" backend, and the buffers it allocates are mapped PROT_NONE except while
// one of its own calls runs. Any host read or write of activations, norm vectors or KV pools
// by the model outside the backend's calls and copies crashes the test. Through that the
// model must give exactly the wrapped backend's results: Forward, ForwardPaged with logits
// and hidden rows, and a pipeline stage's output rows. Tensor parallelism over a
// communicator of host buffers is refused on such a backend (device_tensor_parallel_test.cc
// runs it over one of device buffers).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "formats/weight_store.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "parallel/communicator.h"
#include "tests/model/guarded_backend.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using testing::GuardedBackend;

class DeviceMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.dtype = DType::kQ8_0;
    spec_.tied = false;  // the embedding table gets a copy of its own
    path_ = testing::TempGgufPath("device_memory");
    ASSERT_TRUE(testing::WriteTinyModel(spec_, path_).ok());
    auto store = OpenWeightStore(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    plain_backend_ = *CreateBackend("cpu", 1);
    auto plain = LlamaModel::Load(*store_, plain_backend_.get());
    ASSERT_TRUE(plain.ok()) << plain.status();
    plain_ = *std::move(plain);
    auto guarded = LlamaModel::Load(*store_, &guarded_backend_);
    ASSERT_TRUE(guarded.ok()) << guarded.status();
    guarded_ = *std::move(guarded);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  testing::TinySpec spec_;
  std::string path_;
  std::unique_ptr<WeightStore> store_;
  std::unique_ptr<Backend> plain_backend_;
  GuardedBackend guarded_backend_;
  std::unique_ptr<LlamaModel> plain_, guarded_;
};

// The guard itself: a host write to the backend's memory outside its calls is fatal.
TEST(GuardedBackendTest, HostAccessOutsideTheBackendsCallsCrashes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        GuardedBackend backend;
        absl::StatusOr<std::unique_ptr<BackendBuffer>> buffer = backend.Allocate(64, false);
        static_cast<volatile char*>((*buffer)->data())[0] = 1;
      },
      "");
  GuardedBackend backend;
  absl::StatusOr<std::unique_ptr<BackendBuffer>> buffer = backend.Allocate(64, false);
  ASSERT_TRUE(buffer.ok());
  const char byte = 7;
  ASSERT_TRUE(backend.CopyToBackend((*buffer)->data(), &byte, 1).ok());  // through a call: fine
  char back = 0;
  ASSERT_TRUE(backend.CopyFromBackend(&back, (*buffer)->data(), 1).ok());
  EXPECT_EQ(back, 7);
}

TEST_F(DeviceMemoryTest, ForwardGivesTheWrappedBackendsLogits) {
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2};
  for (LlamaModel* m : {plain_.get(), guarded_.get()}) ASSERT_NE(m, nullptr);
  auto plain_cache = plain_->NewKvCache(16);
  auto guarded_cache = guarded_->NewKvCache(16);
  ASSERT_TRUE(plain_cache.ok() && guarded_cache.ok());
  std::vector<float> want, got;
  ASSERT_TRUE(plain_->Forward(prompt, 0, *plain_cache, /*all_logits=*/true, &want).ok());
  ASSERT_TRUE(guarded_->Forward(prompt, 0, *guarded_cache, true, &got).ok());
  EXPECT_EQ(got, want);
  const std::vector<int32_t> next = {6};
  ASSERT_TRUE(plain_->Forward(next, 7, *plain_cache, false, &want).ok());
  ASSERT_TRUE(guarded_->Forward(next, 7, *guarded_cache, false, &got).ok());
  EXPECT_EQ(got, want);
  EXPECT_GT(guarded_backend_.calls(), 0);
  // The LM head, the embedding, and per layer Q|K|V, O, gate|up and down.
  EXPECT_EQ(guarded_backend_.copies(), 2 + 4 * spec_.layers);
}

TEST_F(DeviceMemoryTest, ForwardPagedGivesTheWrappedBackendsLogitsAndHiddenRows) {
  // Two sequences: a 5-token prefill and a 3-token one; logits of each last row, hidden
  // states of rows 1 and 7.
  const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
  const std::vector<int32_t> positions = {0, 1, 2, 3, 4, 0, 1, 2};
  const std::vector<int32_t> t0 = {2, 0}, t1 = {3};
  const std::vector<PagedSequence> seqs = {{0, 5, 5, t0}, {5, 3, 3, t1}};
  const std::vector<int64_t> logits_rows = {4, 7}, hidden_rows = {1, 7};
  const PagedBatch batch{ids, positions, seqs, logits_rows, hidden_rows};
  for (DType kv : {DType::kF32, DType::kF16}) {
    SCOPED_TRACE(DTypeName(kv));
    auto plain_cache = plain_->NewPagedKvCache(4, 4, kv);
    auto guarded_cache = guarded_->NewPagedKvCache(4, 4, kv);
    ASSERT_TRUE(plain_cache.ok() && guarded_cache.ok());
    std::vector<float> want, got, want_hidden, got_hidden;
    ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache, &want, &want_hidden).ok());
    ASSERT_TRUE(guarded_->ForwardPaged(batch, *guarded_cache, &got, &got_hidden).ok());
    EXPECT_EQ(got, want);
    EXPECT_EQ(got_hidden, want_hidden);
    // A decode step of the first sequence reads the cache written above.
    const std::vector<int32_t> one = {7}, at = {5};
    const std::vector<PagedSequence> step = {{0, 1, 6, t0}};
    const std::vector<int64_t> row0 = {0};
    ASSERT_TRUE(plain_->ForwardPaged({one, at, step, row0}, *plain_cache, &want).ok());
    ASSERT_TRUE(guarded_->ForwardPaged({one, at, step, row0}, *guarded_cache, &got).ok());
    EXPECT_EQ(got, want);
  }
}

// Greedy decoding's choice computed where the logits are: each row's argmax from the
// guarded backend (logits never copied out whole) equals the host's argmax of the logits.
TEST_F(DeviceMemoryTest, ForwardPagedGivesEachLogitsRowsArgMax) {
  const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
  const std::vector<int32_t> positions = {0, 1, 2, 3, 4, 0, 1, 2};
  const std::vector<int32_t> t0 = {2, 0}, t1 = {3};
  const std::vector<PagedSequence> seqs = {{0, 5, 5, t0}, {5, 3, 3, t1}};
  const std::vector<int64_t> logits_rows = {4, 6, 7};
  const PagedBatch batch{ids, positions, seqs, logits_rows};
  auto plain_cache = plain_->NewPagedKvCache(4, 4);
  auto guarded_cache = guarded_->NewPagedKvCache(4, 4);
  ASSERT_TRUE(plain_cache.ok() && guarded_cache.ok());
  std::vector<float> want, got = {1.0f};
  std::vector<RowArgMax> argmax;
  ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache, &want).ok());
  ASSERT_TRUE(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &argmax).ok());
  EXPECT_TRUE(got.empty()) << "no logits when only the argmax is asked for";
  ASSERT_EQ(argmax.size(), logits_rows.size());
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  for (size_t r = 0; r < logits_rows.size(); ++r) {
    const RowArgMax host = ArgMaxOfRow({want.data() + r * vocab, vocab});
    EXPECT_EQ(argmax[r].index, host.index) << "row " << r;
    EXPECT_EQ(argmax[r].value, host.value) << "row " << r;
  }
}

TEST_F(DeviceMemoryTest, PipelineStagesPassTheirRowsThroughHostMemory) {
  const StageShard first{.layers = {0, 1}, .has_embedding = true, .has_lm_head = false};
  const StageShard second{.layers = {1, 2}, .has_embedding = false, .has_lm_head = true};
  auto stage0 = LlamaModel::Load(*store_, &guarded_backend_, nullptr, nullptr, &first);
  auto stage1 = LlamaModel::Load(*store_, &guarded_backend_, nullptr, nullptr, &second);
  ASSERT_TRUE(stage0.ok()) << stage0.status();
  ASSERT_TRUE(stage1.ok()) << stage1.status();
  const std::vector<int32_t> ids = {3, 1, 4, 1};
  std::vector<int32_t> positions(ids.size());
  std::iota(positions.begin(), positions.end(), 0);
  const std::vector<int32_t> table = {1};
  const std::vector<PagedSequence> seqs = {{0, 4, 4, table}};
  const std::vector<int64_t> last = {3};
  auto c0 = (*stage0)->NewPagedKvCache(2, 4), c1 = (*stage1)->NewPagedKvCache(2, 4);
  auto whole = plain_->NewPagedKvCache(2, 4);
  ASSERT_TRUE(c0.ok() && c1.ok() && whole.ok());
  std::vector<float> rows, logits, want;
  ASSERT_TRUE((*stage0)->ForwardPaged({ids, positions, seqs, last}, *c0, &logits, nullptr,
                                      {.input = {}, .output = &rows})
                  .ok());
  ASSERT_EQ(rows.size(), ids.size() * static_cast<size_t>(spec_.hidden));
  ASSERT_TRUE((*stage1)->ForwardPaged({ids, positions, seqs, last}, *c1, &logits, nullptr,
                                      {.input = rows, .output = nullptr})
                  .ok());
  ASSERT_TRUE(plain_->ForwardPaged({ids, positions, seqs, last}, *whole, &want).ok());
  EXPECT_EQ(logits, want);
}

TEST_F(DeviceMemoryTest, TensorParallelismOverHostBuffersIsRefused) {
  LocalCommunicator group;
  TensorParallelShard shard;
  shard.group = &group;
  const absl::StatusOr<std::unique_ptr<LlamaModel>> m =
      LlamaModel::Load(*store_, &guarded_backend_, nullptr, &shard);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition) << m.status();
  EXPECT_NE(m.status().message().find("communicator exchanges host buffers"), std::string::npos)
      << m.status();
}

}  // namespace
}  // namespace tessera
