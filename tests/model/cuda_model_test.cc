// LlamaModel end to end on the CUDA backend (label `gpu`; skipped, reported as skipped,
// without a CUDA device): tiny models with Q8_0 weights (the GEMV path) and F16 weights (the
// cuBLASLt path), tied and untied embeddings, against the "cpu-reference" backend on the
// same file. Forward's logits agree within 1e-4 of max(1, |logit|) for Q8_0 (float
// activations on both sides) and 5e-3 for F16 (the GEMM rounds activations to half); a
// greedy decode through ForwardPaged on an f16 cache picks the same 8 tokens (its decode
// steps are recorded and replayed as CUDA graphs). Recorded steps against eager ones. FP8
// weights against the float64 reference on the values they stand for.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "formats/weight_store.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_probe.h"
#include "model/llama_model.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/model/reference_llama.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

double MaxRelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double max_ref = 1.0, max_err = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(want[i])));
    max_err = std::max(max_err, std::fabs(double(got[i]) - want[i]));
  }
  return max_err / max_ref;
}

int32_t ArgMax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(CudaModelTest, GreedyTokensAndLogitsMatchTheCpuReference) {
  if (!CudaDeviceCount().ok()) GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
  for (const DType dtype : {DType::kQ8_0, DType::kF16}) {
    for (const bool tied : {true, false}) {
      SCOPED_TRACE(absl::StrFormat("%s, %s", DTypeName(dtype), tied ? "tied" : "untied"));
      testing::TinySpec spec;
      spec.dtype = dtype;
      spec.tied = tied;
      const std::string path = testing::TempGgufPath("cuda_model");
      auto ref = testing::LoadTinyModel(spec, path, "cpu-reference", 1);
      ASSERT_TRUE(ref.ok()) << ref.status();
      auto cuda = CudaBackend::Create();
      ASSERT_TRUE(cuda.ok()) << cuda.status();
      auto model = LlamaModel::Load(*ref->store, cuda->get());
      ASSERT_TRUE(model.ok()) << model.status();
      const double tolerance = dtype == DType::kQ8_0 ? 1e-4 : 5e-3;

      const std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2, 6};
      auto ref_cache = ref->model->NewKvCache(32);
      auto cuda_cache = (*model)->NewKvCache(32);
      ASSERT_TRUE(ref_cache.ok() && cuda_cache.ok());
      std::vector<float> want, got;
      ASSERT_TRUE(ref->model->Forward(prompt, 0, *ref_cache, /*all_logits=*/true, &want).ok());
      ASSERT_TRUE((*model)->Forward(prompt, 0, *cuda_cache, true, &got).ok());
      ASSERT_EQ(got.size(), want.size());
      EXPECT_LE(MaxRelativeError(got, want), tolerance);

      // Greedy decode, paged, f16 cache on both.
      auto ref_paged = ref->model->NewPagedKvCache(8, 4, DType::kF16);
      auto cuda_paged = (*model)->NewPagedKvCache(8, 4, DType::kF16);
      ASSERT_TRUE(ref_paged.ok() && cuda_paged.ok());
      const std::vector<int32_t> table = {5, 0, 7, 2, 6};
      std::vector<int32_t> tokens = prompt, positions(prompt.size());
      std::iota(positions.begin(), positions.end(), 0);
      int64_t context = 0;
      for (int step = 0; step < 9; ++step) {
        context += static_cast<int64_t>(tokens.size());
        const PagedSequence seq{0, static_cast<int64_t>(tokens.size()), context, table};
        const std::vector<int64_t> last = {static_cast<int64_t>(tokens.size()) - 1};
        const PagedBatch batch{tokens, positions, {&seq, 1}, last};
        ASSERT_TRUE(ref->model->ForwardPaged(batch, *ref_paged, &want).ok());
        ASSERT_TRUE((*model)->ForwardPaged(batch, *cuda_paged, &got).ok()) << "step " << step;
        ASSERT_EQ(ArgMax(got), ArgMax(want)) << "step " << step;
        tokens = {ArgMax(want)};
        positions = {static_cast<int32_t>(context)};
      }
      std::remove(path.c_str());
    }
  }
}

// Deterministic mode: a prompt's logits computed in one 8-row Forward equal, bit for bit,
// those of the same tokens fed one at a time (row counts 8 and 1 give the same sums), for
// the GEMV path (Q8_0) and the F16 weights that otherwise go through cuBLASLt.
TEST(CudaModelTest, BatchInvariantModeGivesTheSameBitsForAnyRowCount) {
  if (!CudaDeviceCount().ok()) GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
  for (const DType dtype : {DType::kQ8_0, DType::kF16}) {
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    testing::TinySpec spec;
    spec.dtype = dtype;
    const std::string path = testing::TempGgufPath("cuda_invariant");
    auto ref = testing::LoadTinyModel(spec, path, "cpu-reference", 1);
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto cuda = CudaBackend::Create({.batch_invariant = true});
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    auto model = LlamaModel::Load(*ref->store, cuda->get());
    ASSERT_TRUE(model.ok()) << model.status();
    const std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2, 6};
    auto whole = (*model)->NewKvCache(32);
    auto one_by_one = (*model)->NewKvCache(32);
    ASSERT_TRUE(whole.ok() && one_by_one.ok());
    std::vector<float> all, one;
    ASSERT_TRUE((*model)->Forward(prompt, 0, *whole, /*all_logits=*/true, &all).ok());
    const size_t vocab = static_cast<size_t>(spec.vocab);
    for (size_t i = 0; i < prompt.size(); ++i) {
      ASSERT_TRUE((*model)
                      ->Forward({&prompt[i], 1}, static_cast<int64_t>(i), *one_by_one, false, &one)
                      .ok());
      for (size_t v = 0; v < vocab; ++v) {
        ASSERT_EQ(one[v], all[i * vocab + v]) << "position " << i << " token " << v;
      }
    }
    std::remove(path.c_str());
  }
}

// Recorded decode steps (CUDA graphs, Backend::RunStep): batches of 3 sequences (padded to
// 4 rows) and of 2 take turns, and their contexts cross a context bucket (256), so that keys
// warm up, are recorded and replayed, and recorded again; a longer prompt midway regrows the
// scratch buffers (stale recordings, recorded again); 60 sequences at once pad to 64 rows
// (the quantized weights' dequantized GEMM inside a recording). The model that records gives
// the same logits as one told not to (bit for bit in deterministic mode, where a row's
// result does not depend on the padding rows beside it; within rounding otherwise).
TEST(CudaModelTest, RecordedDecodeStepsGiveTheEagerLogits) {
  if (!CudaDeviceCount().ok()) GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
  for (const DType dtype : {DType::kQ8_0, DType::kF16}) {
    for (const bool invariant : {true, false}) {
      SCOPED_TRACE(absl::StrFormat("%s, %s", DTypeName(dtype),
                                   invariant ? "deterministic" : "default"));
      testing::TinySpec spec;
      spec.dtype = dtype;
      spec.context = 512;
      const std::string path = testing::TempGgufPath("cuda_recorded");
      auto ref = testing::LoadTinyModel(spec, path, "cpu-reference", 1);
      ASSERT_TRUE(ref.ok()) << ref.status();
      auto recording_backend = CudaBackend::Create({.batch_invariant = invariant});
      auto eager_backend = CudaBackend::Create({.batch_invariant = invariant});
      ASSERT_TRUE(recording_backend.ok() && eager_backend.ok());
      auto recording = LlamaModel::Load(*ref->store, recording_backend->get());
      auto eager = LlamaModel::Load(*ref->store, eager_backend->get());
      ASSERT_TRUE(recording.ok() && eager.ok());
      (*eager)->set_record_decode_steps(false);
      constexpr int64_t kBlock = 16;
      auto recording_cache = (*recording)->NewPagedKvCache(160, kBlock, DType::kF16);
      auto eager_cache = (*eager)->NewPagedKvCache(160, kBlock, DType::kF16);
      ASSERT_TRUE(recording_cache.ok() && eager_cache.ok());
      // Sequences 0-3 have 20 blocks each, 4-63 one block each.
      std::vector<std::vector<int32_t>> tables(64);
      for (int s = 0; s < 4; ++s) {
        for (int b = 0; b < 20; ++b) tables[s].push_back(s * 20 + b);
      }
      for (int s = 4; s < 64; ++s) tables[s] = {76 + s};
      std::vector<int64_t> lengths(64, 0);
      std::vector<float> want, got;
      const auto prefill = [&](int s, int64_t length) {
        std::vector<int32_t> ids(static_cast<size_t>(length)), positions(ids.size());
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7 + s) % spec.vocab);
        std::iota(positions.begin(), positions.end(), 0);
        const PagedSequence seq{0, length, length, tables[s]};
        const std::vector<int64_t> last = {length - 1};
        ASSERT_TRUE((*recording)->ForwardPaged({ids, positions, {&seq, 1}, last}, *recording_cache, &got).ok());
        ASSERT_TRUE((*eager)->ForwardPaged({ids, positions, {&seq, 1}, last}, *eager_cache, &want).ok());
        lengths[s] = length;
      };
      prefill(0, 240);
      prefill(1, 200);
      prefill(2, 100);
      std::vector<int> many(60);
      std::iota(many.begin(), many.end(), 4);
      for (int s : many) prefill(s, 3);
      for (int step = 0; step < 28; ++step) {
        if (step == 12) prefill(3, 300);  // longer than any prompt before: scratch regrows
        const std::vector<int> which = step >= 24       ? many
                                       : step % 8 < 4 ? std::vector<int>{0, 1, 2}
                                                      : std::vector<int>{2, 0};
        std::vector<int32_t> ids, positions;
        std::vector<PagedSequence> seqs;
        std::vector<int64_t> rows;
        for (int s : which) {
          const auto row = static_cast<int64_t>(ids.size());
          ids.push_back(static_cast<int32_t>((step * 5 + s) % spec.vocab));
          positions.push_back(static_cast<int32_t>(lengths[s]));
          seqs.push_back({row, 1, ++lengths[s], tables[s]});
          rows.push_back(row);
        }
        const PagedBatch batch{ids, positions, seqs, rows};
        ASSERT_TRUE((*recording)->ForwardPaged(batch, *recording_cache, &got).ok()) << step;
        ASSERT_TRUE((*eager)->ForwardPaged(batch, *eager_cache, &want).ok()) << step;
        ASSERT_EQ(got.size(), want.size());
        if (invariant) {
          ASSERT_EQ(got, want) << "step " << step;
        } else {
          ASSERT_LE(MaxRelativeError(got, want), dtype == DType::kQ8_0 ? 1e-4 : 5e-3) << step;
        }
      }
      const CudaBackend::StepGraphStats& stats = (*recording_backend)->step_graph_stats();
      EXPECT_EQ(stats.fallbacks, 0);
      EXPECT_GE(stats.recordings, 5) << "keys per batch size and context bucket, and again";
      EXPECT_GE(stats.stale, 1) << "the scratch regrown at step 12";
      EXPECT_GE(stats.replays, 10);
      EXPECT_EQ((*eager_backend)->step_graph_stats().warmups, 0);
      std::remove(path.c_str());
    }
  }
}

// The values `m`'s rows stand for once packed as FP8 (CudaBackendOptions::fp8_weights).
void RoundRowsToFp8(testing::Matrix* m) {
  const std::vector<float> dense(m->data.begin(), m->data.end());  // the file's F32: exact
  const std::vector<float> rounded =
      testing::DequantizedFp8(testing::QuantizedToFp8(dense, m->rows, m->cols), m->rows, m->cols);
  m->data.assign(rounded.begin(), rounded.end());
}

// fp8_weights on an F32 model: every layer matrix packed as FP8 rows (the embedding table
// and LM head stay F32, read by the GEMV), against the float64 reference forward
// (reference_llama.h) over the same model with each layer matrix replaced by the values its
// FP8 rows stand for. 8 prompt tokens go through the GEMV with float activations: 1e-4, as
// Q8_0. 24 go through the FP8 tensor-core GEMM on Ada and later, which rounds activations
// to FP8 too (3 significant bits): 0.1 there, where a wrong scale or row is off by its
// whole size.
TEST(CudaModelTest, Fp8WeightsGiveTheLogitsOfTheirFp8Values) {
  if (!CudaDeviceCount().ok()) GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
  absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(0);
  ASSERT_TRUE(info.ok()) << info.status();
  const bool tensor_cores = info->compute_major * 10 + info->compute_minor >= 89;
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    testing::TinySpec spec;
    spec.dtype = DType::kF32;
    spec.tied = tied;
    const std::string path = testing::TempGgufPath("cuda_fp8");
    auto ref = testing::LoadTinyModel(spec, path, "cpu-reference", 1);
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto cuda = CudaBackend::Create({.fp8_weights = true});
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    auto model = LlamaModel::Load(*ref->store, cuda->get());
    ASSERT_TRUE(model.ok()) << model.status();
    testing::TinyWeights rounded = ref->weights;  // the vocabulary matrices stay F32
    for (testing::TinyLayer& layer : rounded.layers) {
      for (testing::Matrix* m : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate,
                                 &layer.w_up, &layer.w_down}) {
        RoundRowsToFp8(m);
      }
    }
    for (const int64_t length : {8, 24}) {
      SCOPED_TRACE(absl::StrFormat("%d tokens", length));
      std::vector<int32_t> prompt(static_cast<size_t>(length));
      for (int64_t i = 0; i < length; ++i) prompt[i] = static_cast<int32_t>((i * 11 + 3) % spec.vocab);
      const std::vector<double> want64 = testing::ReferenceForward(rounded, prompt);
      const std::vector<float> want(want64.begin(), want64.end());
      auto cache = (*model)->NewKvCache(32);
      ASSERT_TRUE(cache.ok()) << cache.status();
      std::vector<float> got;
      ASSERT_TRUE((*model)->Forward(prompt, 0, *cache, /*all_logits=*/true, &got).ok());
      ASSERT_EQ(got.size(), want.size());
      EXPECT_LE(MaxRelativeError(got, want), length > 8 && tensor_cores ? 0.1 : 1e-4);
    }
    std::remove(path.c_str());
  }
}

}  // namespace
}  // namespace tessera
