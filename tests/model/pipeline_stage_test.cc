// Pipeline stages in one process: the model cut into stages (each a LlamaModel loaded with
// a StageShard, with its own paged cache), chained by hand through StageIo, gives the
// whole model's logits and hidden states bit for bit (the same operations on the same
// rows), for a prefill and a decode step; a stage's caches hold only its layers, and the
// stage-only errors name what is wrong.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

struct Batch {
  std::vector<int32_t> ids, positions;
  std::vector<int32_t> table_a = {0, 1}, table_b = {2, 3};
  std::vector<PagedSequence> seqs;
  std::vector<int64_t> logits_rows, hidden_rows;
  PagedBatch view() const { return {ids, positions, seqs, logits_rows, hidden_rows}; }
};

// Two sequences: a 5-token prompt and a 3-token one (prefill), or one token each (decode).
Batch MakeBatch(bool decode) {
  Batch b;
  if (!decode) {
    b.ids = {3, 9, 4, 1, 7, 2, 8, 5};
    b.positions = {0, 1, 2, 3, 4, 0, 1, 2};
    b.seqs = {{0, 5, 5, b.table_a}, {5, 3, 3, b.table_b}};
    b.logits_rows = {4, 7};
    b.hidden_rows = {2, 7};
  } else {
    b.ids = {6, 11};
    b.positions = {5, 3};
    b.seqs = {{0, 1, 6, b.table_a}, {1, 1, 4, b.table_b}};
    b.logits_rows = {0, 1};
    b.hidden_rows = {1};
  }
  return b;
}

TEST(PipelineStageTest, ChainedStagesEqualTheWholeModel) {
  testing::TinySpec spec;
  spec.layers = 5;
  const std::string path = testing::TempGgufPath("stages");
  auto whole = testing::LoadTinyModel(spec, path, "cpu", 1);
  ASSERT_TRUE(whole.ok()) << whole.status();
  // Three stages of 2, 2 and 1 layers.
  const std::vector<StageShard> cuts = {
      {{0, 2}, true, false}, {{2, 4}, false, false}, {{4, 5}, false, true}};
  std::vector<std::unique_ptr<LlamaModel>> stages;
  std::vector<PagedKvCache> caches;
  for (const StageShard& cut : cuts) {
    auto m = LlamaModel::Load(*whole->store, whole->backend.get(), nullptr, nullptr, &cut);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_FALSE((*m)->is_whole());
    auto cache = (*m)->NewPagedKvCache(8, 4);
    ASSERT_TRUE(cache.ok());
    EXPECT_EQ(cache->num_layers(), cut.layers.size());
    stages.push_back(std::move(*m));
    caches.push_back(std::move(*cache));
  }
  auto whole_cache = whole->model->NewPagedKvCache(8, 4);
  ASSERT_TRUE(whole_cache.ok());
  for (const bool decode : {false, true}) {
    SCOPED_TRACE(decode ? "decode" : "prefill");
    const Batch b = MakeBatch(decode);
    std::vector<float> want_logits, want_hidden;
    ASSERT_TRUE(
        whole->model->ForwardPaged(b.view(), *whole_cache, &want_logits, &want_hidden).ok());
    std::vector<float> rows, next, logits, hidden;
    for (size_t s = 0; s < stages.size(); ++s) {
      StageIo io{rows, &next};
      ASSERT_TRUE(stages[s]->ForwardPaged(b.view(), caches[s], &logits, &hidden, io).ok());
      if (s + 1 < stages.size()) {
        EXPECT_TRUE(logits.empty());
        EXPECT_EQ(next.size(), b.ids.size() * static_cast<size_t>(spec.hidden));
        rows = next;
      }
    }
    EXPECT_EQ(logits, want_logits);
    EXPECT_EQ(hidden, want_hidden);
  }

  // A middle stage without its input, or without room for its output, is refused.
  const Batch b = MakeBatch(false);
  std::vector<float> logits, hidden, out;
  const absl::Status no_input =
      stages[1]->ForwardPaged(b.view(), caches[1], &logits, &hidden, {{}, &out});
  EXPECT_EQ(no_input.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_input.message()), HasSubstr("io.input"));
  const absl::Status no_output = stages[0]->ForwardPaged(b.view(), caches[0], &logits, &hidden);
  EXPECT_EQ(no_output.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_output.message()), HasSubstr("io.output"));
  // The contiguous Forward is for a whole model.
  auto kv = stages[0]->NewKvCache(16);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(stages[0]->Forward(b.ids, 0, *kv, false, &logits).code(),
            absl::StatusCode::kFailedPrecondition);
  const StageShard bad{{3, 9}, true, true};
  EXPECT_EQ(
      LlamaModel::Load(*whole->store, whole->backend.get(), nullptr, nullptr, &bad).status().code(),
      absl::StatusCode::kInvalidArgument);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tessera
