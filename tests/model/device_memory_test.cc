// LlamaModel on a backend whose memory the host may not touch (as CUDA's): GuardedBackend
// wraps the "cpu" backend, and the buffers it allocates are mapped PROT_NONE except while
// one of its own calls runs. Any host read or write of activations, norm vectors or KV pools
// by the model outside the backend's calls and copies crashes the test. Through that the
// model must give exactly the wrapped backend's results: Forward, ForwardPaged with logits
// and hidden rows, and a pipeline stage's output rows. Tensor parallelism, whose
// collectives run on host buffers, is refused on such a backend.
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
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

class GuardedBackend : public Backend {
 public:
  GuardedBackend() : inner_(*CreateBackend("cpu", 1)) {}

  std::string_view name() const override { return "guarded-cpu"; }
  bool host_addressable() const override { return false; }

  absl::StatusOr<std::unique_ptr<BackendBuffer>> Allocate(size_t bytes, bool) override {
    auto buffer = std::make_unique<Region>(this, bytes);
    if (buffer->data() == nullptr) return absl::ResourceExhaustedError("mmap failed");
    return std::unique_ptr<BackendBuffer>(std::move(buffer));
  }
  absl::Status CopyToBackend(void* dst, const void* src, size_t bytes) override {
    Open open(this);
    return inner_->CopyToBackend(dst, src, bytes);
  }
  absl::Status CopyFromBackend(void* dst, const void* src, size_t bytes) override {
    Open open(this);
    return inner_->CopyFromBackend(dst, src, bytes);
  }
  absl::Status CopyRows(void* dst, int64_t dst_stride, const void* src, int64_t src_stride,
                        int64_t row_bytes, int64_t rows) override {
    Open open(this);
    return inner_->CopyRows(dst, dst_stride, src, src_stride, row_bytes, rows);
  }

  absl::Status MatMul(const float* x, int64_t n, int64_t k, const TensorView& w,
                      float* y) override {
    Open open(this);
    return inner_->MatMul(x, n, k, Inner(w), y);
  }
  // Every matrix gets a copy, as a device backend's must: the inner backend's packed one,
  // or none (then the inner backend reads the file's view).
  absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeights(
      std::span<const TensorView> parts) override {
    auto copy = std::make_unique<Copy>();
    if (parts.size() > 1) {
      ASSIGN_OR_RETURN(copy->inner, inner_->PackWeights(parts));
      if (copy->inner == nullptr) return std::unique_ptr<PackedWeight>();  // not stackable
    } else {
      ASSIGN_OR_RETURN(copy->inner, inner_->PackWeight(parts[0]));
    }
    ++copies_;
    return std::unique_ptr<PackedWeight>(std::move(copy));
  }
  absl::Status Embedding(const TensorView& table, std::span<const int32_t> ids,
                         float* out) override {
    Open open(this);
    return inner_->Embedding(Inner(table), ids, out);
  }
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override {
    Open open(this);
    inner_->RmsNorm(x, weight, n, dim, eps, out);
  }
  absl::Status RmsNormMatMul(const float* x, const float* norm_weight, int64_t n, int64_t k,
                             float eps, const TensorView& w, float* xn, float* y) override {
    Open open(this);
    return inner_->RmsNormMatMul(x, norm_weight, n, k, eps, Inner(w), xn, y);
  }
  void Rope(float* x, int64_t n_tokens, int64_t num_heads, std::span<const int32_t> positions,
            const RopeParams& params) override {
    Open open(this);
    inner_->Rope(x, n_tokens, num_heads, positions, params);
  }
  void SiluMul(const float* gate, const float* up, int64_t count, float* out) override {
    Open open(this);
    inner_->SiluMul(gate, up, count, out);
  }
  void Add(const float* a, const float* b, int64_t count, float* out) override {
    Open open(this);
    inner_->Add(a, b, count, out);
  }
  void Attention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                 const float* k_cache, const float* v_cache, int64_t cache_len,
                 const AttentionParams& params, float* out) override {
    Open open(this);
    inner_->Attention(q, n_tokens, positions, k_cache, v_cache, cache_len, params, out);
  }
  void Softmax(float* x, int64_t n, int64_t dim) override {
    Open open(this);
    inner_->Softmax(x, n, dim);
  }
  absl::Status WriteKv(const float* k, const float* v, std::span<const int32_t> slots,
                       const PagedKvLayout& layout, const KvPool& pool) override {
    Open open(this);
    return inner_->WriteKv(k, v, slots, layout, pool);
  }
  absl::Status PagedAttention(const float* q, int64_t n_tokens, std::span<const int32_t> positions,
                              std::span<const PagedSequence> sequences,
                              const PagedKvLayout& layout, const KvPool& pool,
                              const PagedAttentionParams& params, float* out) override {
    Open open(this);
    return inner_->PagedAttention(q, n_tokens, positions, sequences, layout, pool, params, out);
  }

  int64_t calls() const { return calls_; }
  int64_t copies() const { return copies_; }

 private:
  struct Copy : PackedWeight {
    std::unique_ptr<PackedWeight> inner;  // may be null: the view's own bytes
  };
  // The view the inner backend reads: its packed copy, or the file's bytes.
  static TensorView Inner(const TensorView& w) {
    TensorView v = w;
    if (w.packed != nullptr) v.packed = static_cast<const Copy*>(w.packed)->inner.get();
    return v;
  }

  // A page-aligned anonymous mapping (zeroed), closed unless one of the backend's calls runs.
  class Region : public BackendBuffer {
   public:
    Region(GuardedBackend* owner, size_t bytes) : owner_(owner), size_(bytes) {
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      mapped_ = std::max<size_t>((bytes + page - 1) / page * page, page);
      void* p = mmap(nullptr, mapped_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      data_ = p == MAP_FAILED ? nullptr : p;
      if (data_ != nullptr) owner_->regions_.push_back(this);
    }
    ~Region() override {
      if (data_ == nullptr) return;
      std::erase(owner_->regions_, this);
      munmap(data_, mapped_);
    }
    void* data() const override { return data_; }
    size_t size() const override { return size_; }
    void Protect(int prot) const { mprotect(data_, mapped_, prot); }

   private:
    GuardedBackend* owner_;
    void* data_ = nullptr;
    size_t size_ = 0, mapped_ = 0;
  };

  // Opens every region for the duration of one call.
  struct Open {
    explicit Open(GuardedBackend* b) : backend(b) {
      ++backend->calls_;
      for (const Region* r : backend->regions_) r->Protect(PROT_READ | PROT_WRITE);
    }
    ~Open() {
      for (const Region* r : backend->regions_) r->Protect(PROT_NONE);
    }
    GuardedBackend* backend;
  };

  std::unique_ptr<Backend> inner_;
  std::vector<const Region*> regions_;
  int64_t calls_ = 0, copies_ = 0;
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

TEST_F(DeviceMemoryTest, TensorParallelismIsRefused) {
  LocalCommunicator group;
  TensorParallelShard shard;
  shard.group = &group;
  const absl::StatusOr<std::unique_ptr<LlamaModel>> m =
      LlamaModel::Load(*store_, &guarded_backend_, nullptr, &shard);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition) << m.status();
  EXPECT_NE(m.status().message().find("tensor parallelism"), std::string::npos) << m.status();
}

}  // namespace
}  // namespace tessera
