// BatchRunner's sizing (engine/kv_capacity.h formula vs what PagedKvCache allocated) and its
// refusals: each asserts the status code and that the message names the field or numbers,
// and that a refused request leaves the runner idle.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/reference_backend.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tests/model/tiny_llama.h"
#include "worker/batch_runner.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

class BatchRunnerErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.vocab = 64;
    spec_.context = 128;
    path_ = testing::TempGgufPath("worker_errors");
    auto tiny = testing::LoadTinyModel(spec_, path_, "cpu-reference", 1);
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    tiny_ = std::move(*tiny);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  // K and V, float32, every layer, block_size tokens: computed here, not by kv_capacity.
  int64_t BytesPerBlock(int block_size) const {
    return 2 * spec_.layers * spec_.kv_heads * spec_.head_dim * 4 * block_size;
  }

  testing::TinySpec spec_;
  std::string path_;
  testing::LoadedTinyModel tiny_;
};

TEST_F(BatchRunnerErrorsTest, BudgetSizesThePoolAndTheReportSaysSo) {
  BatchRunnerOptions options;
  options.scheduler.block_size = 8;
  options.kv_cache_bytes = 10 * BytesPerBlock(8) + 100;  // 10 blocks and change
  auto runner = BatchRunner::Create(tiny_.model.get(), options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_EQ((*runner)->capacity().num_blocks, 10);
  EXPECT_EQ((*runner)->capacity().bytes_per_block, BytesPerBlock(8));
  EXPECT_EQ((*runner)->capacity().tokens_that_fit, 80);
  EXPECT_EQ((*runner)->kv_cache().layout().num_blocks, 10);
  EXPECT_EQ((*runner)->kv_cache().NumBytes(), 10 * BytesPerBlock(8));
  EXPECT_EQ((*runner)->scheduler().config().num_blocks, 10);
  // max_model_len is clamped to the model's context.
  EXPECT_EQ((*runner)->scheduler().config().max_model_len, spec_.context);
  const std::string report = (*runner)->StartupReport();
  EXPECT_THAT(report, HasSubstr("10 blocks"));
  EXPECT_THAT(report, HasSubstr(std::to_string(BytesPerBlock(8))));
  EXPECT_THAT(report, HasSubstr("80 tokens"));
  EXPECT_THAT(report, HasSubstr("f32 elements"));

  // A half cache: the same budget, twice the blocks (BytesPerBlock counts float32).
  options.kv_cache_dtype = DType::kF16;
  auto half = BatchRunner::Create(tiny_.model.get(), options);
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_EQ((*half)->capacity().num_blocks, 20);
  EXPECT_EQ((*half)->kv_cache().NumBytes(), 10 * BytesPerBlock(8));
  EXPECT_THAT((*half)->StartupReport(), HasSubstr("f16 elements"));
}

// The reference backend claiming a device of `total` bytes with `free` of them free.
class DeviceMemoryBackend : public ReferenceBackend {
 public:
  DeviceMemoryBackend(int64_t free, int64_t total) : free_(free), total_(total) {}
  absl::StatusOr<DeviceMemory> DeviceMemoryInfo() const override {
    return DeviceMemory{.free_bytes = free_, .total_bytes = total_};
  }

 private:
  int64_t free_, total_;
};

TEST_F(BatchRunnerErrorsTest, DeviceMemoryFractionSizesThePoolFromWhatTheDeviceHasFree) {
  // 1000 blocks' worth of device, 400 free after loading; at 0.9 utilization 100 are kept
  // back, so the KV cache gets 300 blocks.
  const int64_t block = BytesPerBlock(16);
  DeviceMemoryBackend device(400 * block, 1000 * block);
  auto model = LlamaModel::Load(*tiny_.store, &device);
  ASSERT_TRUE(model.ok()) << model.status();
  BatchRunnerOptions options;
  options.kv_cache_bytes = 5 * block;  // ignored
  options.device_memory_fraction = 0.9;
  auto runner = BatchRunner::Create(model->get(), options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_EQ((*runner)->capacity().num_blocks, 300);

  // Nothing left after the kept-back part: RESOURCE_EXHAUSTED with the numbers.
  options.device_memory_fraction = 0.5;
  auto full = BatchRunner::Create(model->get(), options);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.status().message()), HasSubstr("utilization 0.5"));

  // Out of range, or together with a fixed block count: INVALID_ARGUMENT naming the field.
  options.device_memory_fraction = 1.5;
  auto bad = BatchRunner::Create(model->get(), options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("device_memory_fraction"));
  options.device_memory_fraction = 0.9;
  options.scheduler.num_blocks = 10;
  bad = BatchRunner::Create(model->get(), options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("num_blocks"));

  // A host-memory backend has no device memory to size from.
  options.scheduler.num_blocks = 0;
  auto host = BatchRunner::Create(tiny_.model.get(), options);
  EXPECT_EQ(host.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(host.status().message()), HasSubstr("cpu-reference backend"));
}

TEST_F(BatchRunnerErrorsTest, CreateRefusesNoModelNoRoomAndBadConfig) {
  BatchRunnerOptions options;
  options.kv_cache_bytes = 1 << 20;
  EXPECT_EQ(BatchRunner::Create(nullptr, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.kv_cache_bytes = BytesPerBlock(16) - 1;
  auto small = BatchRunner::Create(tiny_.model.get(), options);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(small.status().message()), HasSubstr("kv_cache_bytes"));
  options.kv_cache_bytes = 1 << 20;
  options.scheduler.max_num_batched_tokens = 4;  // below max_num_seqs (64)
  auto bad = BatchRunner::Create(tiny_.model.get(), options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_num_batched_tokens"));
  options.scheduler.max_num_batched_tokens = 2048;
  options.role.batches_in_flight = -1;
  auto negative = BatchRunner::Create(tiny_.model.get(), options);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.status().message()),
              HasSubstr("RankRole.batches_in_flight must be >= 0 (0: one per pipeline stage), got -1"));
}

TEST_F(BatchRunnerErrorsTest, ImpossibleAndMalformedRequestsAreRefused) {
  BatchRunnerOptions options;
  options.scheduler.block_size = 4;
  options.scheduler.num_blocks = 8;  // 32 tokens
  options.scheduler.max_num_seqs = 4;
  options.scheduler.max_num_batched_tokens = 16;
  auto created = BatchRunner::Create(tiny_.model.get(), options);
  ASSERT_TRUE(created.ok()) << created.status();
  BatchRunner& runner = **created;
  const absl::Time now = absl::UnixEpoch();

  WorkerRequest r;
  r.spec.request_id = "big";
  r.spec.prompt_token_ids = std::vector<int32_t>(30, 1);
  r.spec.max_new_tokens = 10;  // 40 tokens > 32 slots: can never fit the cache
  absl::Status status = runner.AddRequest(r, now);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("40"));

  r.spec.request_id = "long";
  r.spec.prompt_token_ids = std::vector<int32_t>(120, 1);
  r.spec.max_new_tokens = 20;  // over the model's context of 128
  status = runner.AddRequest(r, now);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("140"));

  r.spec.request_id = "vocab";
  r.spec.prompt_token_ids = {1, 64, 2};
  r.spec.max_new_tokens = 2;
  status = runner.AddRequest(r, now);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("prompt_token_ids[1]"));

  r.spec.request_id = "bias";
  r.spec.prompt_token_ids = {1, 2};
  r.generation.logit_bias = {{99, 1.0f}};  // outside the vocabulary
  status = runner.AddRequest(r, now);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("logit_bias"));

  r.spec.request_id = "beam";
  r.generation = {};
  r.generation.num_beams = 2;
  r.generation.num_beam_groups = 3;  // must divide num_beams
  status = runner.AddRequest(r, now);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("num_beam_groups"));

  // More sequences at once than max_num_seqs = 4: the message names the user's setting.
  struct Wide {
    GenerationConfig g;
    int n = 1;
    std::string named;
  };
  std::vector<Wide> wide(4);
  wide[0].g.num_beams = 6;
  wide[0].named = "num_beams = 6";
  wide[1].g.penalty_alpha = 0.5;
  wide[1].g.top_k = 5;
  wide[1].named = "top_k = 5";
  wide[2].g.do_sample = true;
  wide[2].g.best_of = 5;
  wide[2].named = "best_of = 5";
  wide[3].g.do_sample = true;
  wide[3].n = 5;
  wide[3].named = "num_return_sequences (n) = 5";
  for (const Wide& w : wide) {
    r.spec.request_id = "wide";
    r.spec.n = w.n;
    r.generation = w.g;
    status = runner.AddRequest(r, now);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(w.named));
  }
  r.spec.n = 1;

  EXPECT_FALSE(runner.HasUnfinished());

  r.spec.request_id = "ok";
  r.generation = {};
  ASSERT_TRUE(runner.AddRequest(r, now).ok());
  EXPECT_EQ(runner.AddRequest(r, now).code(), absl::StatusCode::kAlreadyExists);
  auto done = runner.RunUntilIdle(now);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->size(), 1u);
  EXPECT_EQ((*done)[0].completions[0].generated_token_ids.size(), 2u);
}

}  // namespace
}  // namespace tessera
