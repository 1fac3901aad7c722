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
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "decoding/sampler.h"
#include "formats/weight_store.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "parallel/communicator.h"
#include "tests/common/row_candidates.h"
#include "tests/model/guarded_backend.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using testing::GuardedBackend;

// A guarded backend whose TopKRows reports a NaN in row `nan_row` of every call and whose
// softmax denominators are `denominator_scale` times the rows' (as if most of the mass lay
// elsewhere): rows it misreports must come back whole.
class MisreportingBackend : public GuardedBackend {
 public:
  MisreportingBackend(int64_t nan_row, double denominator_scale)
      : nan_row_(nan_row), denominator_scale_(denominator_scale) {}
  absl::Status TopKRows(const float* x, int64_t rows, int64_t dim, std::span<const int32_t> k,
                        std::span<const float> temperature, int64_t capacity, int32_t* ids,
                        float* values, int32_t* counts) override {
    RETURN_IF_ERROR(
        GuardedBackend::TopKRows(x, rows, dim, k, temperature, capacity, ids, values, counts));
    if (nan_row_ < rows) counts[nan_row_] = -1;
    return absl::OkStatus();
  }
  absl::Status SoftmaxDenominators(const float* x, int64_t rows, int64_t dim,
                                   std::span<const float> temperature, double* sums) override {
    RETURN_IF_ERROR(GuardedBackend::SoftmaxDenominators(x, rows, dim, temperature, sums));
    for (int64_t r = 0; r < rows; ++r) sums[r] *= denominator_scale_;
    return absl::OkStatus();
  }

 private:
  int64_t nan_row_;
  double denominator_scale_;
};

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

// The rows reduced where the logits are (LogitsSelection): a greedy row's argmax, a top-k
// sampled row's candidates and a plainly sampled row's token come from the guarded backend's
// own reductions, equal to the host's over the logits, and only the row asked for whole
// crosses to the host.
TEST_F(DeviceMemoryTest, ForwardPagedReducesTheLogitsRowsWhereTheyAre) {
  const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
  const std::vector<int32_t> positions = {0, 1, 2, 3, 4, 0, 1, 2};
  const std::vector<int32_t> t0 = {2, 0}, t1 = {3};
  const std::vector<PagedSequence> seqs = {{0, 5, 5, t0}, {5, 3, 3, t1}};
  const std::vector<int64_t> logits_rows = {4, 6, 7, 3, 5};
  const PagedBatch batch{ids, positions, seqs, logits_rows};
  auto plain_cache = plain_->NewPagedKvCache(4, 4);
  auto guarded_cache = guarded_->NewPagedKvCache(4, 4);
  ASSERT_TRUE(plain_cache.ok() && guarded_cache.ok());
  using Kind = LogitsRowWant::Kind;
  LogitsSelection selection;
  selection.wants = {{.kind = Kind::kArgMax},
                     {.kind = Kind::kTopK, .top_k = 3, .temperature = 0.7f},
                     {.kind = Kind::kRow},
                     {.kind = Kind::kDraw, .temperature = 0.9f, .u = 0.625},
                     {.kind = Kind::kNucleus, .temperature = 1.2f, .top_p = 0.9, .min_p = 0.05}};
  std::vector<float> want, got = {1.0f};
  ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache, &want).ok());
  const int64_t copied_before = guarded_backend_.bytes_to_host();
  ASSERT_TRUE(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection).ok());
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  EXPECT_EQ(guarded_backend_.bytes_to_host() - copied_before,
            static_cast<int64_t>(vocab * sizeof(float)))
      << "only the whole row crosses to the host";
  ASSERT_EQ(selection.row_index, (std::vector<int64_t>{-1, -1, 0, -1, -1}));
  ASSERT_EQ(got.size(), vocab);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + 2 * vocab));
  const auto row = [&](size_t r) { return std::span<const float>(want.data() + r * vocab, vocab); };
  const auto row_begin = [&](size_t r) { return want.data() + r * vocab; };
  const RowArgMax host = ArgMaxOfRow(row(0));
  EXPECT_EQ(selection.argmax[0].index, host.index);
  EXPECT_EQ(selection.argmax[0].value, host.value);
  std::vector<float> scaled(row_begin(3), row_begin(3) + vocab);
  for (float& v : scaled) v /= 0.9f;
  EXPECT_EQ(selection.drawn[3], DrawFromRow(scaled, 0.625));
  // The nucleus row: its most likely tokens (here the whole small vocabulary) and its
  // softmax denominator at the temperature.
  double denominator = 0;
  float max = -INFINITY;
  for (float v : row(4)) max = std::max(max, v / 1.2f);
  for (float v : row(4)) denominator += std::exp(double(v / 1.2f) - max);
  EXPECT_DOUBLE_EQ(selection.denominators[4], denominator);
  for (size_t r : {size_t{1}, size_t{4}}) {
    const int64_t k = r == 4 ? kNucleusCandidates : selection.wants[r].top_k;
    const testing::RowCandidates top =
        testing::CandidatesOfRow(row(r), k, selection.wants[r].temperature);
    ASSERT_FALSE(top.ids.empty());
    EXPECT_EQ(selection.candidates[r].ids, top.ids) << "row " << r;
    EXPECT_EQ(selection.candidates[r].values, top.values) << "row " << r;
  }

  // A want per row is required, and a top-k row needs k > 0 and temperature > 0.
  selection.wants.pop_back();
  EXPECT_EQ(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection).code(),
            absl::StatusCode::kInvalidArgument);
  selection.wants = {{.kind = Kind::kRow},
                     {.kind = Kind::kTopK, .top_k = 0},
                     {.kind = Kind::kRow},
                     {.kind = Kind::kRow},
                     {.kind = Kind::kRow}};
  const absl::Status bad = guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("selection.wants[1]"), std::string::npos) << bad;
}

// Penalties and biases as per-token edits: applied where the logits are (one EditLogits
// call for the step), before the argmax, candidates and draw, and a whole row comes back
// edited. Results equal the host's selection over the rows it edits itself; rows that
// report logprobs get the raw row's (log-normalizer, most likely tokens, the values the
// edits replaced), a top-k row more of them than its k.
TEST_F(DeviceMemoryTest, EditsApplyWhereTheLogitsAre) {
  const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
  const std::vector<int32_t> positions = {0, 1, 2, 3, 4, 0, 1, 2};
  const std::vector<int32_t> t0 = {2, 0}, t1 = {3};
  const std::vector<PagedSequence> seqs = {{0, 5, 5, t0}, {5, 3, 3, t1}};
  const std::vector<int64_t> logits_rows = {4, 6, 7};
  const PagedBatch batch{ids, positions, seqs, logits_rows};
  auto plain_cache = plain_->NewPagedKvCache(4, 4);
  auto guarded_cache = guarded_->NewPagedKvCache(4, 4);
  ASSERT_TRUE(plain_cache.ok() && guarded_cache.ok());
  std::vector<float> want;
  ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache, &want).ok());
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  // Row 0's most likely token gets banned, so its argmax moves; row 1's gets a penalty and
  // others a bias; row 2 comes back whole with every kind of step.
  const auto argmax_of = [&](size_t r) {
    return ArgMaxOfRow(std::span<const float>(want.data() + r * vocab, vocab)).index;
  };
  const int32_t best0 = argmax_of(0), best1 = argmax_of(1);
  const auto edit = [](int32_t token, uint32_t steps) {
    return LogitEdit{.token = token, .steps = steps, .bias = 0.75f, .penalty = 1.7f,
                     .late_bias = -2.0f, .frequency = 0.3, .presence = 0.2};
  };

  using Kind = LogitsRowWant::Kind;
  LogitsSelection selection;
  selection.wants = {{.kind = Kind::kArgMax, .logprobs = 2},
                     {.kind = Kind::kTopK, .top_k = 4, .temperature = 0.8f, .logprobs = 6},
                     {.kind = Kind::kRow}};
  selection.wants[0].edits = {edit(best0, kEditNgramBan)};
  selection.wants[1].edits = {edit(std::min(best1, 0), kEditBias),
                              edit(std::max(best1, 1), kEditRepetition | kEditLateBias)};
  selection.wants[2].edits = {edit(2, kEditBias | kEditRepetition | kEditFrequencyPresence),
                              edit(5, kEditEndBan), edit(11, kEditLateBias)};
  std::vector<float> edited = want;
  for (size_t r = 0; r < 3; ++r) {
    for (const LogitEdit& e : selection.wants[r].edits) {
      float& l = edited[r * vocab + static_cast<size_t>(e.token)];
      l = ApplyLogitEdit(l, e);
    }
  }
  std::vector<float> got;
  const int64_t copied_before = guarded_backend_.bytes_to_host();
  const int64_t edits_before = guarded_backend_.edit_calls();
  ASSERT_TRUE(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection).ok());
  EXPECT_EQ(guarded_backend_.edit_calls() - edits_before, 1);
  EXPECT_EQ(guarded_backend_.bytes_to_host() - copied_before,
            static_cast<int64_t>(vocab * sizeof(float)))
      << "only the whole row crosses to the host";
  ASSERT_EQ(selection.row_index, (std::vector<int64_t>{-1, -1, 0}));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), edited.begin() + 2 * vocab));
  const std::span<const float> row0(edited.data(), vocab), row1(edited.data() + vocab, vocab);
  EXPECT_EQ(selection.argmax[0].index, ArgMaxOfRow(row0).index);
  EXPECT_NE(selection.argmax[0].index, best0);
  const testing::RowCandidates top = testing::CandidatesOfRow(row1, 4, 0.8f);
  ASSERT_FALSE(top.ids.empty());
  EXPECT_EQ(selection.candidates[1].ids, top.ids);
  EXPECT_EQ(selection.candidates[1].values, top.values);
  EXPECT_EQ(selection.edited, (std::vector<bool>{true, true, true}));
  for (size_t r = 0; r < 2; ++r) {
    SCOPED_TRACE(r);
    const std::span<const float> raw(want.data() + r * vocab, vocab);
    const int64_t n = selection.wants[r].logprobs;
    const testing::RowCandidates top = testing::CandidatesOfRow(raw, n, 1.0f);
    ASSERT_FALSE(top.ids.empty());
    EXPECT_EQ(selection.raw_candidates[r].ids, top.ids);
    EXPECT_EQ(selection.raw_candidates[r].values, top.values);
    const float max = *std::max_element(raw.begin(), raw.end());
    double sum = 0;
    for (float v : raw) sum += std::exp(static_cast<double>(v) - max);
    EXPECT_DOUBLE_EQ(selection.log_normalizers[r], max + std::log(sum));
    ASSERT_EQ(selection.unedited[r].size(), selection.wants[r].edits.size());
    for (size_t i = 0; i < selection.unedited[r].size(); ++i) {
      const int32_t token = selection.wants[r].edits[i].token;
      EXPECT_EQ(selection.unedited[r][i], raw[static_cast<size_t>(token)]);
      EXPECT_EQ(ReplacedLogit(selection, r, token), raw[static_cast<size_t>(token)]);
    }
  }
  EXPECT_EQ(ReplacedLogit(selection, 2, 3), std::nullopt) << "no edit of token 3";

  // Edits must be for ascending distinct tokens of the vocabulary.
  selection.wants[2].edits = {edit(5, kEditBias), edit(5, kEditRepetition)};
  absl::Status bad = guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("selection.wants[2].edits[1]"), std::string::npos) << bad;
  selection.wants[2].edits = {edit(static_cast<int32_t>(vocab), kEditBias)};
  bad = guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection);
  EXPECT_NE(bad.message().find("selection.wants[2].edits[0]"), std::string::npos) << bad;
}

// Rows whose candidates cannot be taken come back whole instead: a top-k row whose backend
// reports a NaN in it, and a top-p row whose nucleus reaches past its candidates (here the
// backend reports a denominator ten times the row's, as if most of the mass lay elsewhere).
TEST_F(DeviceMemoryTest, TopKRowsThatCannotBeTakenComeBackWhole) {
  MisreportingBackend backend(/*nan_row=*/0, /*denominator_scale=*/10);
  auto model = LlamaModel::Load(*store_, &backend);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> ids = {3, 1, 4}, positions = {0, 1, 2}, table = {0};
  const std::vector<PagedSequence> seqs = {{0, 3, 3, table}};
  const std::vector<int64_t> logits_rows = {1, 2, 0};
  const PagedBatch batch{ids, positions, seqs, logits_rows};
  auto cache = (*model)->NewPagedKvCache(1, 4);
  auto plain_cache = plain_->NewPagedKvCache(1, 4);
  ASSERT_TRUE(cache.ok() && plain_cache.ok());
  LogitsSelection selection;
  selection.wants = {{.kind = LogitsRowWant::Kind::kTopK, .top_k = 2},
                     {.kind = LogitsRowWant::Kind::kArgMax},
                     {.kind = LogitsRowWant::Kind::kNucleus, .top_p = 0.5}};
  std::vector<float> want, got;
  ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache, &want).ok());
  ASSERT_TRUE((*model)->ForwardPaged(batch, *cache, &got, nullptr, {}, &selection).ok());
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  EXPECT_EQ(selection.row_index, (std::vector<int64_t>{0, -1, 1}));
  EXPECT_TRUE(selection.candidates[0].ids.empty());
  EXPECT_TRUE(selection.candidates[2].ids.empty());
  ASSERT_EQ(got.size(), 2 * vocab);
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + vocab, want.begin()));
  EXPECT_TRUE(std::equal(got.begin() + vocab, got.end(), want.begin() + 2 * vocab));
}

// Greedy rows that report logprobs stay on the backend too: their argmax, log-normalizer and
// candidates give TokenLogprobOf and TopLogprobs of the host's row bit for bit; a row the
// backend reports a NaN in comes back whole, and so would a row with +inf (a denominator of
// 0). Plain draws and top-k rows report them alike. Logprobs on another kind of want, or
// past the limit, are refused.
TEST_F(DeviceMemoryTest, GreedyLogprobRowsStayOnTheBackend) {
  const std::vector<int32_t> ids = {3, 1, 4}, positions = {0, 1, 2}, table = {0};
  const std::vector<PagedSequence> seqs = {{0, 3, 3, table}};
  const std::vector<int64_t> logits_rows = {2, 0};
  const PagedBatch batch{ids, positions, seqs, logits_rows};
  auto plain_cache = plain_->NewPagedKvCache(1, 4);
  auto guarded_cache = guarded_->NewPagedKvCache(1, 4);
  ASSERT_TRUE(plain_cache.ok() && guarded_cache.ok());
  using Kind = LogitsRowWant::Kind;
  LogitsSelection selection;
  selection.wants = {{.kind = Kind::kArgMax, .logprobs = 3}, {.kind = Kind::kArgMax, .logprobs = 0}};
  std::vector<float> want, got = {1.0f};
  ASSERT_TRUE(plain_->ForwardPaged(batch, *plain_cache, &want).ok());
  const int64_t copied_before = guarded_backend_.bytes_to_host();
  const absl::Status status =
      guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(guarded_backend_.bytes_to_host(), copied_before) << "no row crosses to the host";
  EXPECT_TRUE(got.empty());
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  // Row r's logprob of `token` (raw logit `logit`) and its alternatives, from the selection's
  // log-normalizer and candidates: the host's over the whole row, bit for bit.
  const auto expect_raw_logprobs = [&](size_t r, int32_t token, float logit) {
    const std::span<const float> row(want.data() + r * vocab, vocab);
    const double normalizer = selection.log_normalizers[r];
    EXPECT_EQ(LogprobOf(logit, normalizer), TokenLogprobOf(row, token)) << r;
    const TopKCandidates& top = selection.candidates[r];
    const int64_t n = selection.wants[r].logprobs;
    EXPECT_EQ(TopLogprobsOfCandidates(top.ids, top.values, n, normalizer), TopLogprobs(row, n))
        << r;
  };
  for (size_t r = 0; r < 2; ++r) {
    const RowArgMax best = selection.argmax[r];
    EXPECT_EQ(best.index, ArgMaxOfRow({want.data() + r * vocab, vocab}).index);
    expect_raw_logprobs(r, best.index, best.value);
  }

  // A top-k row may report up to k alternatives (they are among its candidates).
  selection.wants = {{.kind = Kind::kTopK, .top_k = 2, .temperature = 0.5f, .logprobs = 2},
                     {.kind = Kind::kArgMax}};
  ASSERT_TRUE(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection).ok());
  EXPECT_EQ(guarded_backend_.bytes_to_host(), copied_before);
  EXPECT_EQ(LogprobOf(ArgMaxOfRow({want.data(), vocab}).value, selection.log_normalizers[0]),
            TokenLogprobOf({want.data(), vocab}, ArgMaxOfRow({want.data(), vocab}).index));
  // A top-p row's candidates and raw log-normalizer give the raw row's logprobs too (its
  // denominator at its own temperature stays what top-p reads).
  selection.wants = {{.kind = Kind::kNucleus, .temperature = 0.7f, .top_p = 0.9, .logprobs = 3},
                     {.kind = Kind::kNucleus, .temperature = 1.2f, .min_p = 0.1, .logprobs = 0}};
  ASSERT_TRUE(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection).ok());
  EXPECT_EQ(guarded_backend_.bytes_to_host(), copied_before);
  for (size_t r = 0; r < 2; ++r) {
    const TopKCandidates& top = selection.candidates[r];
    ASSERT_FALSE(top.ids.empty());
    expect_raw_logprobs(r, top.ids[0], top.values[0]);
  }
  {  // top-p's denominator is the one at 0.7
    const std::span<const float> row(want.data(), vocab);
    const float max = *std::max_element(row.begin(), row.end()) / 0.7f;
    double sum = 0.0;
    for (float v : row) sum += std::exp(double(v / 0.7f) - max);
    EXPECT_NEAR(selection.denominators[0], sum, 1e-9 * sum);
  }

  // A plain draw reports the raw row's logprobs: the drawn token's logit comes back with
  // the token (Backend::SampleRows), no copy of its own.
  for (const int64_t n : {0, 3}) {
    SCOPED_TRACE(n);
    selection.wants = {{.kind = Kind::kDraw, .temperature = 0.7f, .u = 0.375, .logprobs = n},
                       {.kind = Kind::kDraw, .temperature = 1.3f, .u = 0.875, .logprobs = n}};
    const int64_t before = guarded_backend_.bytes_to_host();
    ASSERT_TRUE(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection).ok());
    EXPECT_EQ(guarded_backend_.bytes_to_host() - before, 0);
    EXPECT_TRUE(got.empty());
    for (size_t r = 0; r < 2; ++r) {
      const int32_t token = selection.drawn[r];
      ASSERT_GE(token, 0);
      EXPECT_EQ(selection.drawn_logits[r], want[r * vocab + static_cast<size_t>(token)]);
      expect_raw_logprobs(r, token, selection.drawn_logits[r]);
    }
  }
  for (const LogitsRowWant& bad_want :
       {LogitsRowWant{.kind = Kind::kRow, .logprobs = 0},
        LogitsRowWant{.kind = Kind::kTopK, .top_k = 2, .logprobs = 3},
        LogitsRowWant{.kind = Kind::kDraw, .temperature = 1.0f, .u = 0.5,
                      .logprobs = kMaxLogprobCandidates + 1},
        LogitsRowWant{.kind = Kind::kNucleus, .temperature = 1.0f, .top_p = 0.5,
                      .logprobs = kNucleusCandidates + 1}}) {
    selection.wants = {bad_want, {.kind = Kind::kArgMax}};
    const absl::Status bad =
        guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection);
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bad.message().find("selection.wants[0]"), std::string::npos) << bad;
  }
  selection.wants = {{.kind = Kind::kArgMax, .logprobs = kMaxLogprobCandidates + 1},
                     {.kind = Kind::kArgMax}};
  EXPECT_EQ(guarded_->ForwardPaged(batch, *guarded_cache, &got, nullptr, {}, &selection).code(),
            absl::StatusCode::kInvalidArgument);
}

// The backend reports a NaN in the row: it comes back whole, for the host to decide on, and
// unedited (its raw logprobs cannot be taken on the backend).
TEST_F(DeviceMemoryTest, GreedyLogprobRowsWithANanComeBackWhole) {
  MisreportingBackend backend(/*nan_row=*/1, /*denominator_scale=*/1);
  auto model = LlamaModel::Load(*store_, &backend);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> ids = {3, 1, 4}, positions = {0, 1, 2}, table = {0};
  const std::vector<PagedSequence> seqs = {{0, 3, 3, table}};
  const std::vector<int64_t> logits_rows = {0, 2};
  auto cache = (*model)->NewPagedKvCache(1, 4);
  auto plain_cache = plain_->NewPagedKvCache(1, 4);
  ASSERT_TRUE(cache.ok() && plain_cache.ok());
  LogitsSelection selection;
  selection.wants = {{.kind = LogitsRowWant::Kind::kArgMax, .logprobs = 2},
                     {.kind = LogitsRowWant::Kind::kArgMax, .logprobs = 2}};
  LogitEdit ban;
  ban.token = 1;
  ban.steps = kEditEndBan;
  for (LogitsRowWant& w : selection.wants) w.edits = {ban};
  std::vector<float> want, got;
  ASSERT_TRUE(plain_->ForwardPaged({ids, positions, seqs, logits_rows}, *plain_cache, &want).ok());
  ASSERT_TRUE((*model)
                  ->ForwardPaged({ids, positions, seqs, logits_rows}, *cache, &got, nullptr, {},
                                 &selection)
                  .ok());
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  EXPECT_EQ(selection.row_index, (std::vector<int64_t>{-1, 0}));
  EXPECT_EQ(selection.edited, (std::vector<bool>{true, false}));
  ASSERT_EQ(got.size(), vocab);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + vocab));
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
