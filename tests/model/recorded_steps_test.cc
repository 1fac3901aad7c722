// ForwardPaged on a backend that records decode steps (Backend::RunStep, as CUDA's does with
// CUDA graphs): GuardedBackend plays one (padding to multiples of 4 rows, each body run
// twice, every call RunStep forbids refused inside it) over device-like memory, and the
// padded steps must give exactly the logits, and reductions, of the same model on the plain
// CPU backend without padding (both batch-invariant, so row results do not depend on the
// row count). Steps that are not plain decode steps run as before.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/weight_store.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "model/logits_selection.h"
#include "tests/common/row_candidates.h"
#include "tests/model/guarded_backend.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

constexpr int64_t kBlockSize = 4;

class RecordedStepsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.dtype = DType::kQ8_0;
    spec_.tied = false;
    path_ = testing::TempGgufPath("recorded_steps");
    ASSERT_TRUE(testing::WriteTinyModel(spec_, path_).ok());
    auto store = OpenWeightStore(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto plain_backend = CreateBackend("cpu", 1, {.batch_invariant = true});
    ASSERT_TRUE(plain_backend.ok()) << plain_backend.status();
    plain_backend_ = *std::move(plain_backend);
    auto plain = LlamaModel::Load(*store_, plain_backend_.get());
    ASSERT_TRUE(plain.ok()) << plain.status();
    plain_ = *std::move(plain);
    guarded_backend_.RecordSteps(/*multiple=*/4, /*max_rows=*/8);
    auto guarded = LlamaModel::Load(*store_, &guarded_backend_);
    ASSERT_TRUE(guarded.ok()) << guarded.status();
    guarded_ = *std::move(guarded);
    auto plain_cache = plain_->NewPagedKvCache(16, kBlockSize);
    auto guarded_cache = guarded_->NewPagedKvCache(16, kBlockSize);
    ASSERT_TRUE(plain_cache.ok() && guarded_cache.ok());
    plain_cache_ = std::make_unique<PagedKvCache>(*std::move(plain_cache));
    guarded_cache_ = std::make_unique<PagedKvCache>(*std::move(guarded_cache));
  }
  void TearDown() override { std::remove(path_.c_str()); }

  // Both models run `batch`; their logits must be the same bits.
  void ExpectSameLogits(const PagedBatch& batch) {
    std::vector<float> want, got;
    ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache_, &want).ok());
    const absl::Status status = guarded_->ForwardPaged(batch, *guarded_cache_, &got);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(got, want);
  }

  // Prefills three sequences of 3, 2 and 5 tokens (one batch of 10 rows, not a decode step).
  void Prefill() {
    const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
    const std::vector<int32_t> positions = {0, 1, 2, 0, 1, 0, 1, 2, 3, 4};
    const std::vector<PagedSequence> seqs = {
        {0, 3, 3, tables_[0]}, {3, 2, 2, tables_[1]}, {5, 5, 5, tables_[2]}};
    const std::vector<int64_t> last = {2, 4, 9};
    ExpectSameLogits({ids, positions, seqs, last});
    lengths_ = {3, 2, 5};
  }

  // One decode step of the sequences `which` (token 7 + s each), rows in that order.
  PagedBatch DecodeStep(const std::vector<int>& which) {
    ids_.clear();
    positions_.clear();
    seqs_.clear();
    rows_.clear();
    for (int s : which) {
      const auto row = static_cast<int64_t>(ids_.size());
      ids_.push_back(7 + s);
      positions_.push_back(static_cast<int32_t>(lengths_[static_cast<size_t>(s)]));
      seqs_.push_back({row, 1, lengths_[static_cast<size_t>(s)] + 1, tables_[static_cast<size_t>(s)]});
      rows_.push_back(row);
      ++lengths_[static_cast<size_t>(s)];
    }
    return {ids_, positions_, seqs_, rows_};
  }

  testing::TinySpec spec_;
  std::string path_;
  std::unique_ptr<WeightStore> store_;
  std::unique_ptr<Backend> plain_backend_;
  testing::GuardedBackend guarded_backend_{BackendOptions{.batch_invariant = true}};
  std::unique_ptr<LlamaModel> plain_, guarded_;
  std::unique_ptr<PagedKvCache> plain_cache_, guarded_cache_;
  const std::vector<std::vector<int32_t>> tables_ = {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}};
  std::vector<int64_t> lengths_;
  std::vector<int32_t> ids_, positions_;
  std::vector<PagedSequence> seqs_;
  std::vector<int64_t> rows_;
};

TEST_F(RecordedStepsTest, PaddedDecodeStepsGiveTheUnpaddedLogits) {
  Prefill();
  EXPECT_TRUE(guarded_backend_.steps().empty()) << "a prefill is not a decode step";
  // Three rows pad to 4, one row to 4, two rows (out of order) to 4.
  ExpectSameLogits(DecodeStep({0, 1, 2}));
  ExpectSameLogits(DecodeStep({2}));
  ExpectSameLogits(DecodeStep({1, 0}));
  ExpectSameLogits(DecodeStep({0, 1, 2}));
  const std::vector<Backend::StepShape>& steps = guarded_backend_.steps();
  ASSERT_EQ(steps.size(), 4u);
  const std::vector<int64_t> longest = {6, 7, 5, 8};  // contexts after each step's token
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].rows, 4) << i;
    EXPECT_EQ(steps[i].max_context, longest[i]) << i;
  }
}

// A recorded step's logits rows are reduced after the step, as ForwardPaged's are.
TEST_F(RecordedStepsTest, SelectionsAreTakenFromAPaddedStepsRows) {
  Prefill();
  const PagedBatch batch = DecodeStep({0, 1, 2});
  std::vector<float> want, got;
  ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache_, &want).ok());
  using Kind = LogitsRowWant::Kind;
  LogitsSelection selection;
  selection.wants = {{.kind = Kind::kArgMax},
                     {.kind = Kind::kRow},
                     {.kind = Kind::kTopK, .top_k = 3, .temperature = 0.7f}};
  const absl::Status status =
      guarded_->ForwardPaged(batch, *guarded_cache_, &got, nullptr, {}, &selection);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(guarded_backend_.steps().size(), 1u);
  const auto vocab = static_cast<size_t>(spec_.vocab);
  const auto row = [&](size_t r) {
    return std::vector<float>(want.begin() + static_cast<std::ptrdiff_t>(r * vocab),
                              want.begin() + static_cast<std::ptrdiff_t>((r + 1) * vocab));
  };
  EXPECT_EQ(selection.argmax[0].index, ArgMaxOfRow(row(0)).index);
  ASSERT_EQ(selection.row_index, (std::vector<int64_t>{-1, 0, -1}));
  EXPECT_EQ(got, row(1));
  const testing::RowCandidates third = testing::CandidatesOfRow(row(2), 3, 0.7f);
  ASSERT_GE(third.ids.size(), 3u);
  EXPECT_EQ(selection.candidates[2].ids, third.ids);
  EXPECT_EQ(selection.candidates[2].values, third.values);
}

// Steps that are not one row per sequence with every row's logits, batches above the
// largest bucket, and a model told not to record, run as usual.
TEST_F(RecordedStepsTest, OtherStepsAreNotRecorded) {
  Prefill();
  {
    const PagedBatch batch = DecodeStep({0, 1});
    const std::vector<int64_t> one_row = {1};
    ExpectSameLogits({batch.token_ids, batch.positions, batch.sequences, one_row});
  }
  {
    const PagedBatch batch = DecodeStep({0, 2});
    const std::vector<int64_t> hidden_rows = {0};
    std::vector<float> want, got, want_hidden, got_hidden;
    const PagedBatch with_hidden{batch.token_ids, batch.positions, batch.sequences,
                                 batch.logits_rows, hidden_rows};
    ASSERT_TRUE(plain_->ForwardPaged(with_hidden, *plain_cache_, &want, &want_hidden).ok());
    ASSERT_TRUE(guarded_->ForwardPaged(with_hidden, *guarded_cache_, &got, &got_hidden).ok());
    EXPECT_EQ(got, want);
    EXPECT_EQ(got_hidden, want_hidden);
  }
  guarded_backend_.RecordSteps(4, /*max_rows=*/2);
  ExpectSameLogits(DecodeStep({0, 1, 2}));  // pads to 4 > 2
  guarded_backend_.RecordSteps(4, 8);
  guarded_->set_record_decode_steps(false);
  ExpectSameLogits(DecodeStep({0, 1, 2}));
  EXPECT_TRUE(guarded_backend_.steps().empty());
  guarded_->set_record_decode_steps(true);
  ExpectSameLogits(DecodeStep({0, 1, 2}));
  EXPECT_EQ(guarded_backend_.steps().size(), 1u);
}

// A bad decode batch is refused before anything is recorded.
TEST_F(RecordedStepsTest, BadDecodeBatchesAreRefusedFirst) {
  Prefill();
  const std::vector<int32_t> ids = {static_cast<int32_t>(spec_.vocab)}, positions = {3};
  const std::vector<PagedSequence> seqs = {{0, 1, 4, tables_[0]}};
  const std::vector<int64_t> rows = {0};
  std::vector<float> got;
  const absl::Status status = guarded_->ForwardPaged({ids, positions, seqs, rows}, *guarded_cache_, &got);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("token_ids[0]"), std::string::npos) << status;
  EXPECT_TRUE(guarded_backend_.steps().empty());
}

}  // namespace
}  // namespace tessera
