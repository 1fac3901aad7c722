// LlamaModel::ForwardPaged against the contiguous Forward of each sequence alone (and the
// independent float64 reference): several sequences of different lengths in one batch,
// block tables drawn from a shuffled pool, prefill split into chunks across calls, then
// decode steps; on both CPU backends, with float and block-quantized weights.
//
// Tolerance, relative to max(1, max |logit|): against the contiguous Forward 1e-5 (the same
// kernels run on the same rows; only the attention kernel differs, contiguous vs paged);
// against the float64 reference the bounds of llama_model_test.cc (5e-6 cpu-reference,
// 1e-4 cpu with float weights, 5e-2 cpu with quantized weights).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <ostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "model/paged_kv_cache.h"
#include "tests/model/reference_llama.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

struct Param {
  DType dtype;
  std::string backend;
};

void PrintTo(const Param& p, std::ostream* os) { *os << DTypeName(p.dtype) << " on " << p.backend; }

double MaxRelativeError(std::span<const float> got, std::span<const float> want) {
  double max_ref = 1.0, max_err = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i])));
    max_err = std::max(max_err, std::abs(static_cast<double>(got[i]) - want[i]));
  }
  return max_err / max_ref;
}

double MaxRelativeError(std::span<const float> got, std::span<const double> want) {
  double max_ref = 1.0, max_err = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(want[i]));
    max_err = std::max(max_err, std::abs(static_cast<double>(got[i]) - want[i]));
  }
  return max_err / max_ref;
}

class LlamaModelPagedTest : public ::testing::TestWithParam<Param> {
 protected:
  static constexpr int64_t kBlockSize = 4;
  static constexpr int64_t kNumBlocks = 24;

  void SetUp() override {
    spec_.dtype = GetParam().dtype;
    spec_.vocab = 40;
    path_ = testing::TempGgufPath("paged");
    auto tiny = testing::LoadTinyModel(spec_, path_, GetParam().backend, 2);
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    tiny_ = std::move(*tiny);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  double ReferenceTolerance() const {
    if (GetParam().backend == "cpu-reference") return 5e-6;
    const DType d = GetParam().dtype;
    return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 ? 1e-4 : 5e-2;
  }

  // Logits [tokens.size(), vocab] of the contiguous Forward of `tokens` alone.
  std::vector<float> ContiguousLogits(const std::vector<int32_t>& tokens) {
    auto cache = tiny_.model->NewKvCache(static_cast<int64_t>(tokens.size()));
    EXPECT_TRUE(cache.ok()) << cache.status();
    std::vector<float> logits;
    EXPECT_TRUE(tiny_.model->Forward(tokens, 0, *cache, /*all_logits=*/true, &logits).ok());
    return logits;
  }

  // Runs the streams below through ForwardPaged on a cache of `kv_dtype` and compares each
  // sequence's logits with its contiguous Forward alone and the float64 reference.
  void RunBatchedStreams(DType kv_dtype, double alone_tolerance, double reference_tolerance);

  testing::TinySpec spec_;
  std::string path_;
  testing::LoadedTinyModel tiny_;
};

// A sequence being fed to ForwardPaged in chunks.
struct Stream {
  std::vector<int32_t> tokens;       // all of its tokens
  std::vector<int32_t> block_table;  // enough blocks for all of them
  std::vector<int64_t> chunks;       // tokens fed per call (0 = not in that call)
  int64_t done = 0;
};

TEST_P(LlamaModelPagedTest, BatchedChunkedPrefillAndDecodeMatchForwardAlone) {
  RunBatchedStreams(DType::kF32, 1e-5, ReferenceTolerance());
}

// A half cache rounds every K and V element to 11 significant bits (relative error <= 2^-12).
// With float weights that moves these logits by < 1e-3 of the largest, so 2e-3 bounds it,
// while one wrong row read from the cache moves them by O(0.1). With block-quantized weights
// the cpu backend quantizes activations to 8 bits, and a rounded cache moves some of them
// across a quantization step (~1e-2 here): the quantized bound against float64 (5e-2) applies.
TEST_P(LlamaModelPagedTest, HalfCacheStaysCloseToForwardAlone) {
  const double tolerance = std::max(2e-3, ReferenceTolerance());
  RunBatchedStreams(DType::kF16, tolerance, ReferenceTolerance() + 2e-3);
}

void LlamaModelPagedTest::RunBatchedStreams(DType kv_dtype, double alone_tolerance,
                                            double reference_tolerance) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(spec_.vocab - 1));
  std::vector<int32_t> free_blocks(kNumBlocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);

  // Lengths 9, 15, 5, 3; per call: chunked prefills, whole prefills, then two decodes each.
  std::vector<Stream> streams = {{{}, {}, {4, 5, 1, 1}},
                                 {{}, {}, {6, 0, 9, 1}},
                                 {{}, {}, {3, 2, 0, 1}},
                                 {{}, {}, {0, 2, 1, 1}}};
  size_t next_block = 0;
  for (Stream& s : streams) {
    const int64_t len = std::accumulate(s.chunks.begin(), s.chunks.end(), int64_t{0});
    for (int64_t i = 0; i < len; ++i) s.tokens.push_back(token(rng));
    for (int64_t b = 0; b < (len + kBlockSize - 1) / kBlockSize; ++b) {
      s.block_table.push_back(free_blocks[next_block++]);
    }
  }
  ASSERT_LE(next_block, free_blocks.size());

  auto cache = tiny_.model->NewPagedKvCache(kNumBlocks, kBlockSize, kv_dtype);
  ASSERT_TRUE(cache.ok()) << cache.status();
  ASSERT_EQ(cache->layout().dtype, kv_dtype);
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  std::vector<std::vector<float>> paged(streams.size());  // every row's logits, in order
  for (size_t call = 0; call < streams[0].chunks.size(); ++call) {
    std::vector<int32_t> ids, positions;
    std::vector<PagedSequence> seqs;
    std::vector<int64_t> rows;
    std::vector<size_t> owner;
    for (size_t i = 0; i < streams.size(); ++i) {
      Stream& s = streams[i];
      const int64_t m = s.chunks[call];
      if (m == 0) continue;
      seqs.push_back({static_cast<int64_t>(ids.size()), m, s.done + m, s.block_table});
      for (int64_t j = 0; j < m; ++j) {
        rows.push_back(static_cast<int64_t>(ids.size()));
        owner.push_back(i);
        ids.push_back(s.tokens[static_cast<size_t>(s.done + j)]);
        positions.push_back(static_cast<int32_t>(s.done + j));
      }
      s.done += m;
    }
    std::vector<float> logits;
    const PagedBatch batch{ids, positions, seqs, rows};
    ASSERT_TRUE(tiny_.model->ForwardPaged(batch, *cache, &logits).ok()) << "call " << call;
    ASSERT_EQ(logits.size(), rows.size() * vocab);
    for (size_t r = 0; r < rows.size(); ++r) {
      auto& out = paged[owner[r]];
      out.insert(out.end(), logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
    }
  }

  for (size_t i = 0; i < streams.size(); ++i) {
    const std::vector<float> alone = ContiguousLogits(streams[i].tokens);
    ASSERT_EQ(paged[i].size(), alone.size());
    EXPECT_LE(MaxRelativeError(paged[i], alone), alone_tolerance) << "sequence " << i;
    const std::vector<double> ref = testing::ReferenceForward(tiny_.weights, streams[i].tokens);
    EXPECT_LE(MaxRelativeError(paged[i], ref), reference_tolerance) << "sequence " << i;
    if (kv_dtype == DType::kF16) {  // rounding the cache must show (it is not a float cache)
      EXPECT_GT(MaxRelativeError(paged[i], alone), 0.0) << "sequence " << i;
    }
  }
}

TEST_P(LlamaModelPagedTest, LastRowLogitsOnlyAndNoLogits) {
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9};
  const std::vector<int32_t> table = {5, 2};
  auto cache = tiny_.model->NewPagedKvCache(kNumBlocks, kBlockSize);
  ASSERT_TRUE(cache.ok());
  std::vector<int32_t> positions(tokens.size());
  std::iota(positions.begin(), positions.end(), 0);
  const PagedSequence seq{0, 6, 6, table};
  std::vector<float> logits = {1.0f};
  ASSERT_TRUE(tiny_.model->ForwardPaged({tokens, positions, {&seq, 1}, {}}, *cache, &logits).ok());
  EXPECT_TRUE(logits.empty());
  const std::vector<int64_t> last = {5};
  ASSERT_TRUE(
      tiny_.model->ForwardPaged({tokens, positions, {&seq, 1}, last}, *cache, &logits).ok());
  const std::vector<float> alone = ContiguousLogits(tokens);
  const size_t vocab = static_cast<size_t>(spec_.vocab);
  ASSERT_EQ(logits.size(), vocab);
  EXPECT_LE(MaxRelativeError(logits, std::span(alone).subspan(5 * vocab)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Backends, LlamaModelPagedTest,
                         ::testing::Values(Param{DType::kF32, "cpu-reference"},
                                           Param{DType::kF32, "cpu"},
                                           Param{DType::kQ8_0, "cpu-reference"},
                                           Param{DType::kQ4_1, "cpu"}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           std::string name = std::string(DTypeName(info.param.dtype)) + "_" +
                                              info.param.backend;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace tessera
