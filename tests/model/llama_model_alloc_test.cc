// A decode step allocates no heap memory once the model has run one (scratch buffers and the
// logits vector are reused). Its own binary: it replaces the global operator new to count.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "formats/weight_store.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tests/model/tiny_llama.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(size_t size) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace tessera {
namespace {

// Does no arithmetic and allocates nothing, so that the count below is the model's own.
class InertBackend : public Backend {
 public:
  std::string_view name() const override { return "inert"; }
  absl::Status MatMul(const float*, int64_t n, int64_t, const TensorView& w, float* y) override {
    std::fill(y, y + n * w.dim(0), 0.0f);
    return absl::OkStatus();
  }
  absl::Status Embedding(const TensorView& t, std::span<const int32_t> ids, float* out) override {
    std::fill(out, out + static_cast<int64_t>(ids.size()) * t.dim(1), 0.0f);
    return absl::OkStatus();
  }
  void RmsNorm(const float*, const float*, int64_t, int64_t, float, float*) override {}
  void Rope(float*, int64_t, int64_t, std::span<const int32_t>, const RopeParams&) override {}
  void SiluMul(const float*, const float*, int64_t, float*) override {}
  void Add(const float*, const float*, int64_t, float*) override {}
  void Attention(const float*, int64_t, std::span<const int32_t>, const float*, const float*,
                 int64_t, const AttentionParams&, float*) override {}
  void Softmax(float*, int64_t, int64_t) override {}
};

// Heap allocations made by 5 decode steps after a prefill and one warm-up step.
int64_t AllocationsInDecode(Backend* backend) {
  testing::TinySpec spec;
  spec.dtype = DType::kQ8_0;
  const std::string path = testing::TempGgufPath("alloc");
  EXPECT_TRUE(testing::WriteTinyModel(spec, path).ok());
  auto store = OpenWeightStore(path);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return -1;
  auto model = LlamaModel::Load(**store, backend);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return -1;
  auto cache = (*model)->NewKvCache(16);
  EXPECT_TRUE(cache.ok());
  std::vector<float> logits;
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  EXPECT_TRUE((*model)->Forward(prompt, 0, *cache, false, &logits).ok());
  int32_t token[1] = {5};
  EXPECT_TRUE((*model)->Forward(token, 4, *cache, false, &logits).ok());  // warm-up step

  g_allocations = 0;
  g_counting = true;
  absl::Status s;
  for (int64_t pos = 5; pos < 10 && s.ok(); ++pos) {
    s = (*model)->Forward(token, pos, *cache, false, &logits);
  }
  g_counting = false;
  EXPECT_TRUE(s.ok()) << s;
  std::remove(path.c_str());
  return g_allocations.load();
}

TEST(LlamaModelAllocTest, DecodeStepDoesNotAllocate) {
  InertBackend backend;
  EXPECT_EQ(AllocationsInDecode(&backend), 0);
}

// The real backends are reported, not asserted: their allocation policy is the kernels'.
TEST(LlamaModelAllocTest, ReportsBackendAllocations) {
  for (const char* name : {"cpu-reference", "cpu"}) {
    auto backend = CreateBackend(name, 1);
    ASSERT_TRUE(backend.ok());
    const int64_t n = AllocationsInDecode(backend->get());
    EXPECT_GE(n, 0);
    RecordProperty(std::string(name) + "_allocations_in_5_steps", static_cast<int>(n));
    std::printf("%s: %lld heap allocations in 5 decode steps\n", name,
                static_cast<long long>(n));
  }
}

}  // namespace
}  // namespace tessera
