// LlamaModel's error paths: missing tensors, wrong shapes, tokens outside the vocabulary,
// KV cache overflow and misuse. Each asserts the status code, that the message names the
// offending field, and that a failed Forward leaves the cache as it was.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/kv_cache.h"
#include "model/llama_model.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Delegates to a real store but hides one tensor or reports a different shape for it.
class AlteredStore : public WeightStore {
 public:
  AlteredStore(const WeightStore& inner, std::string name,
               std::optional<std::vector<int64_t>> shape,
               std::optional<DType> dtype = std::nullopt)
      : inner_(inner), name_(std::move(name)), shape_(std::move(shape)), dtype_(dtype) {}
  const ModelConfig& config() const override { return inner_.config(); }
  absl::StatusOr<TensorView> Get(std::string_view name) const override {
    if (name == name_ && !shape_) return absl::NotFoundError(std::string(name));
    auto view = inner_.Get(name);
    if (view.ok() && name == name_) {
      view->shape = *shape_;
      if (dtype_) view->dtype = *dtype_;
    }
    return view;
  }
  bool Has(std::string_view name) const override {
    return (name == name_ && !shape_) ? false : inner_.Has(name);
  }
  std::vector<std::string> TensorNames() const override { return inner_.TensorNames(); }
  int64_t TotalBytes() const override { return inner_.TotalBytes(); }

 private:
  const WeightStore& inner_;
  std::string name_;
  std::optional<std::vector<int64_t>> shape_;
  std::optional<DType> dtype_;
};

class LlamaModelErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::TempGgufPath("errors");
    spec_.dtype = DType::kQ8_0;
    auto w = testing::WriteTinyModel(spec_, path_);
    ASSERT_TRUE(w.ok()) << w.status();
    auto store = OpenWeightStore(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto backend = CreateBackend("cpu-reference");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  std::unique_ptr<LlamaModel> LoadOrDie() {
    auto model = LlamaModel::Load(*store_, backend_.get());
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? std::move(*model) : nullptr;
  }

  testing::TinySpec spec_;
  std::string path_;
  std::unique_ptr<WeightStore> store_;
  std::unique_ptr<Backend> backend_;
};

TEST_F(LlamaModelErrorsTest, MissingTensorIsInvalidArgumentNamingIt) {
  AlteredStore altered(*store_, "blk.1.attn_k.weight", std::nullopt);
  auto model = LlamaModel::Load(altered, backend_.get());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              AllOf(HasSubstr("missing tensor blk.1.attn_k.weight"), HasSubstr("[32, 64]")));
}

TEST_F(LlamaModelErrorsTest, MissingNormIsInvalidArgument) {
  AlteredStore altered(*store_, "output_norm.weight", std::nullopt);
  auto model = LlamaModel::Load(altered, backend_.get());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("output_norm.weight"));
}

TEST_F(LlamaModelErrorsTest, WrongShapeIsInvalidArgumentWithBothShapes) {
  AlteredStore altered(*store_, "blk.0.ffn_down.weight", std::vector<int64_t>{96, 64});
  auto model = LlamaModel::Load(altered, backend_.get());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              AllOf(HasSubstr("blk.0.ffn_down.weight"), HasSubstr("expected shape [64, 96]"),
                    HasSubstr("got [96, 64]")));
}

TEST_F(LlamaModelErrorsTest, NonWeightDtypeIsInvalidArgument) {
  AlteredStore altered(*store_, "blk.0.attn_v.weight", std::vector<int64_t>{32, 64}, DType::kI32);
  auto model = LlamaModel::Load(altered, backend_.get());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              AllOf(HasSubstr("blk.0.attn_v.weight"), HasSubstr("i32")));
}

TEST_F(LlamaModelErrorsTest, QuantizedNormIsInvalidArgument) {
  AlteredStore altered(*store_, "blk.1.ffn_norm.weight", std::vector<int64_t>{64}, DType::kQ8_0);
  auto model = LlamaModel::Load(altered, backend_.get());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              AllOf(HasSubstr("blk.1.ffn_norm.weight"), HasSubstr("q8_0")));
}

TEST_F(LlamaModelErrorsTest, LoadReportsProgressUpToTotal) {
  std::vector<std::pair<int64_t, int64_t>> calls;
  auto model = LlamaModel::Load(*store_, backend_.get(), [&](int64_t done, int64_t total) {
    calls.emplace_back(done, total);
  });
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_GE(calls.size(), 2u);
  EXPECT_EQ(calls.front().first, 0);
  EXPECT_EQ(calls.back().first, calls.back().second);
  EXPECT_GT(calls.back().second, 0);
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_GE(calls[i].first, calls[i - 1].first);
}

TEST_F(LlamaModelErrorsTest, TokenOutsideVocabularyIsInvalidArgument) {
  auto model = LoadOrDie();
  ASSERT_NE(model, nullptr);
  auto cache = model->NewKvCache(8);
  ASSERT_TRUE(cache.ok());
  std::vector<float> logits;
  for (int32_t bad : {-1, static_cast<int32_t>(spec_.vocab)}) {
    const std::vector<int32_t> tokens = {1, bad};
    const absl::Status s = model->Forward(tokens, 0, *cache, false, &logits);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), AllOf(HasSubstr("tokens[1]"), HasSubstr("[0, 48)")));
    EXPECT_EQ(cache->num_tokens(), 0);
  }
}

TEST_F(LlamaModelErrorsTest, PrefillLongerThanCacheIsOutOfRange) {
  auto model = LoadOrDie();
  ASSERT_NE(model, nullptr);
  auto cache = model->NewKvCache(4);
  ASSERT_TRUE(cache.ok());
  std::vector<float> logits;
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  const absl::Status s = model->Forward(tokens, 0, *cache, false, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("5 tokens"), HasSubstr("capacity of 4")));
  EXPECT_EQ(cache->num_tokens(), 0);
}

TEST_F(LlamaModelErrorsTest, DecodePastCapacityIsOutOfRange) {
  auto model = LoadOrDie();
  ASSERT_NE(model, nullptr);
  auto cache = model->NewKvCache(3);
  ASSERT_TRUE(cache.ok());
  std::vector<float> logits;
  const std::vector<int32_t> tokens = {1, 2, 3};
  ASSERT_TRUE(model->Forward(tokens, 0, *cache, false, &logits).ok());
  const std::vector<int32_t> next = {4};
  const absl::Status s = model->Forward(next, 3, *cache, false, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("4 tokens"), HasSubstr("capacity of 3")));
  EXPECT_EQ(cache->num_tokens(), 3);
}

TEST_F(LlamaModelErrorsTest, GapAfterCachedTokensIsInvalidArgument) {
  auto model = LoadOrDie();
  ASSERT_NE(model, nullptr);
  auto cache = model->NewKvCache(8);
  ASSERT_TRUE(cache.ok());
  std::vector<float> logits;
  const std::vector<int32_t> tokens = {1, 2};
  for (int64_t start : {int64_t{-1}, int64_t{1}}) {
    const absl::Status s = model->Forward(tokens, start, *cache, false, &logits);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("start_pos"));
  }
}

TEST_F(LlamaModelErrorsTest, EmptyTokensAndMismatchedCacheAreInvalidArgument) {
  auto model = LoadOrDie();
  ASSERT_NE(model, nullptr);
  std::vector<float> logits;
  auto cache = model->NewKvCache(8);
  ASSERT_TRUE(cache.ok());
  const absl::Status empty = model->Forward({}, 0, *cache, false, &logits);
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.message(), HasSubstr("tokens"));

  auto other = KvCache::Create(spec_.layers + 1, 8, spec_.kv_heads, spec_.head_dim);
  ASSERT_TRUE(other.ok());
  const std::vector<int32_t> tokens = {1};
  const absl::Status mismatch = model->Forward(tokens, 0, *other, false, &logits);
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.message(), HasSubstr("KV cache geometry"));
}

TEST_F(LlamaModelErrorsTest, NewKvCacheDefaultsToContextLength) {
  auto model = LoadOrDie();
  ASSERT_NE(model, nullptr);
  auto cache = model->NewKvCache();
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(cache->max_tokens(), spec_.context);
  EXPECT_EQ(cache->num_layers(), spec_.layers);
  EXPECT_EQ(cache->row_size(), spec_.kv_heads * spec_.head_dim);
}

}  // namespace
}  // namespace tessera
