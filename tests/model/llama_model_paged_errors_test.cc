// LlamaModel::ForwardPaged's argument errors: each asserts INVALID_ARGUMENT, that the
// message names the field, and that nothing was written to the cache.
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "model/paged_kv_cache.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

class ForwardPagedErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.vocab = 40;
    path_ = testing::TempGgufPath("paged_errors");
    auto tiny = testing::LoadTinyModel(spec_, path_, "cpu-reference", 1);
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    tiny_ = std::move(*tiny);
    auto cache = tiny_.model->NewPagedKvCache(4, 4);
    ASSERT_TRUE(cache.ok());
    cache_ = std::make_unique<PagedKvCache>(std::move(*cache));
  }
  void TearDown() override { std::remove(path_.c_str()); }

  // Expects INVALID_ARGUMENT mentioning `field` and an untouched (all-zero) cache.
  void ExpectInvalid(const PagedBatch& batch, const std::string& field) {
    std::vector<float> logits;
    const absl::Status status = tiny_.model->ForwardPaged(batch, *cache_, &logits);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(field));
    for (const KvPool& pool : cache_->pools()) {
      const auto* k = static_cast<const float*>(pool.k);
      for (int64_t i = 0; i < cache_->layout().pool_elems(); ++i) {
        ASSERT_EQ(k[i], 0.0f) << field << ": cache written at " << i;
      }
    }
  }

  testing::TinySpec spec_;
  std::string path_;
  testing::LoadedTinyModel tiny_;
  std::unique_ptr<PagedKvCache> cache_;
  std::vector<int32_t> tokens_ = {1, 2, 3};
  std::vector<int32_t> positions_ = {0, 1, 2};
  std::vector<int32_t> table_ = {3};
  std::vector<int64_t> last_ = {2};
};

TEST_F(ForwardPagedErrorsTest, BadBatchFields) {
  const PagedSequence seq{0, 3, 3, table_};
  ExpectInvalid({{}, {}, {&seq, 1}, {}}, "token_ids is empty");
  const std::vector<int32_t> short_positions = {0, 1};
  ExpectInvalid({tokens_, short_positions, {&seq, 1}, last_}, "batch.positions");
  const std::vector<int32_t> bad_tokens = {1, 40, 3};
  ExpectInvalid({bad_tokens, positions_, {&seq, 1}, last_}, "batch.token_ids[1]");
  const std::vector<int64_t> bad_rows = {3};
  ExpectInvalid({tokens_, positions_, {&seq, 1}, bad_rows}, "batch.logits_rows[0]");
  const std::vector<int64_t> too_many_rows = {0, 1, 2, 2};
  ExpectInvalid({tokens_, positions_, {&seq, 1}, too_many_rows}, "logits_rows");
  const std::vector<int32_t> bad_table = {9};  // only 4 blocks
  const PagedSequence bad_block{0, 3, 3, bad_table};
  ExpectInvalid({tokens_, positions_, {&bad_block, 1}, last_}, "block_table");
  const PagedSequence too_long{0, 3, spec_.context + 1, table_};
  ExpectInvalid({tokens_, positions_, {&too_long, 1}, last_}, "context_len");
}

TEST_F(ForwardPagedErrorsTest, CacheGeometryMismatchAndNullLogits) {
  auto other = PagedKvCache::Create(spec_.layers, 4, 4, spec_.kv_heads + 1, spec_.head_dim);
  ASSERT_TRUE(other.ok());
  const PagedSequence seq{0, 3, 3, table_};
  std::vector<float> logits;
  absl::Status status = tiny_.model->ForwardPaged({tokens_, positions_, {&seq, 1}, last_}, *other,
                                             &logits);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("geometry"));
  status = tiny_.model->ForwardPaged({tokens_, positions_, {&seq, 1}, last_}, *cache_, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("logits"));
}

}  // namespace
}  // namespace tessera
