// GuardedBackend: the "cpu" backend with memory the host may not touch (as CUDA's): the
// buffers it allocates are mapped PROT_NONE except while one of its own calls runs, so any
// host read or write of them outside the backend's calls and copies crashes the test. Used
// by tests/model/device_memory_test.cc, device_tensor_parallel_test.cc and
// recorded_steps_test.cc. It can also play a backend that records decode steps
// (RecordSteps: Backend::RunStep's padding and rules).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status_macros.h"
#include "kernels/ops.h"
#include "kernels/registry.h"

namespace tessera::testing {

class GuardedBackend : public Backend {
 public:
  explicit GuardedBackend(BackendOptions options = {})
      : inner_(*CreateBackend("cpu", 1, options)) {}

  // From now on, plays a backend that records decode steps: GraphRows pads to multiples of
  // `multiple` rows up to `max_rows`, and RunStep runs each body twice (as a backend that
  // checks a replay and runs the step again would), refusing inside it every call that
  // Backend::RunStep forbids. The steps' shapes are kept (steps()).
  void RecordSteps(int64_t multiple, int64_t max_rows) {
    step_multiple_ = multiple;
    step_max_rows_ = max_rows;
  }
  int64_t GraphRows(int64_t rows) const override {
    if (step_multiple_ == 0 || rows < 1) return 0;
    const int64_t padded = (rows + step_multiple_ - 1) / step_multiple_ * step_multiple_;
    return padded <= step_max_rows_ ? padded : 0;
  }
  absl::Status RunStep(const StepShape& shape, absl::FunctionRef<absl::Status()> body) override {
    if (step_multiple_ == 0) return body();
    steps_.push_back(shape);
    in_step_ = true;
    absl::Status status = body();
    if (status.ok()) status = body();
    in_step_ = false;
    return status;
  }
  const std::vector<StepShape>& steps() const { return steps_; }

  std::string_view name() const override { return "guarded-cpu"; }
  bool host_addressable() const override { return false; }

  absl::StatusOr<std::unique_ptr<BackendBuffer>> Allocate(size_t bytes, bool) override {
    RETURN_IF_ERROR(OutsideStep("Allocate"));
    auto buffer = std::make_unique<Region>(this, bytes);
    if (buffer->data() == nullptr) return absl::ResourceExhaustedError("mmap failed");
    return std::unique_ptr<BackendBuffer>(std::move(buffer));
  }
  absl::Status CopyToBackend(void* dst, const void* src, size_t bytes) override {
    RETURN_IF_ERROR(OutsideStep("CopyToBackend"));
    Open open(this);
    return inner_->CopyToBackend(dst, src, bytes);
  }
  absl::Status CopyFromBackend(void* dst, const void* src, size_t bytes) override {
    RETURN_IF_ERROR(OutsideStep("CopyFromBackend"));
    Open open(this);
    bytes_to_host_ += static_cast<int64_t>(bytes);
    return inner_->CopyFromBackend(dst, src, bytes);
  }
  absl::Status CopyRows(void* dst, int64_t dst_stride, const void* src, int64_t src_stride,
                        int64_t row_bytes, int64_t rows) override {
    Open open(this);
    return inner_->CopyRows(dst, dst_stride, src, src_stride, row_bytes, rows);
  }
  absl::Status Zero(void* dst, size_t bytes) override {
    Open open(this);
    return inner_->Zero(dst, bytes);
  }
  // Few rows per stacked MatMul, as a device's 512 would be for a long prompt: the model's
  // passes over a batch's rows, and their tails, are exercised by short batches.
  int64_t stacked_rows_per_call() const override { return 3; }
  absl::Status Synchronize() override {
    RETURN_IF_ERROR(OutsideStep("Synchronize"));
    ++synchronizes_;
    return absl::OkStatus();
  }

  // The row reductions run "on the device" (results to host memory, as CUDA's do), not
  // through the default's row copies.
  absl::Status ArgMaxRows(const float* x, int64_t rows, int64_t dim, RowArgMax* out) override {
    RETURN_IF_ERROR(OutsideStep("ArgMaxRows"));
    Open open(this);
    return inner_->ArgMaxRows(x, rows, dim, out);
  }
  absl::Status TopKRows(const float* x, int64_t rows, int64_t dim, std::span<const int32_t> k,
                        std::span<const float> temperature, int64_t capacity, int32_t* ids,
                        float* values, int32_t* counts) override {
    RETURN_IF_ERROR(OutsideStep("TopKRows"));
    Open open(this);
    return inner_->TopKRows(x, rows, dim, k, temperature, capacity, ids, values, counts);
  }
  absl::Status SoftmaxDenominators(const float* x, int64_t rows, int64_t dim,
                                   std::span<const float> temperature, double* sums) override {
    RETURN_IF_ERROR(OutsideStep("SoftmaxDenominators"));
    Open open(this);
    return inner_->SoftmaxDenominators(x, rows, dim, temperature, sums);
  }
  absl::Status SampleRows(const float* x, int64_t rows, int64_t dim,
                          std::span<const float> temperature, std::span<const double> u,
                          int32_t* tokens, float* token_logits) override {
    RETURN_IF_ERROR(OutsideStep("SampleRows"));
    Open open(this);
    return inner_->SampleRows(x, rows, dim, temperature, u, tokens, token_logits);
  }
  absl::Status EditLogits(float* x, int64_t rows, int64_t dim, std::span<const LogitEdit> edits,
                          float* previous) override {
    RETURN_IF_ERROR(OutsideStep("EditLogits"));
    ++edit_calls_;
    Open open(this);
    return inner_->EditLogits(x, rows, dim, edits, previous);
  }
  // EditLogits calls so far.
  int64_t edit_calls() const { return edit_calls_; }

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
  void SwiGluRows(const float* gate_up, int64_t n, int64_t width, float* out) override {
    Open open(this);
    inner_->SwiGluRows(gate_up, n, width, out);
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
  int64_t synchronizes() const { return synchronizes_; }
  int64_t bytes_to_host() const { return bytes_to_host_; }
  // Opens (or closes again) every buffer of this backend: for a test communicator that
  // plays the part of NCCL, which reads and writes device memory itself.
  void OpenAll() const {
    for (const Region* r : regions_) r->Protect(PROT_READ | PROT_WRITE);
  }
  void CloseAll() const {
    for (const Region* r : regions_) r->Protect(PROT_NONE);
  }

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

  absl::Status OutsideStep(const char* op) const {
    if (!in_step_) return absl::OkStatus();
    return absl::FailedPreconditionError(std::string(op) + " inside a recorded step");
  }

  std::unique_ptr<Backend> inner_;
  std::vector<const Region*> regions_;
  int64_t step_multiple_ = 0, step_max_rows_ = 0;
  bool in_step_ = false;
  std::vector<StepShape> steps_;
  int64_t calls_ = 0, copies_ = 0, synchronizes_ = 0, bytes_to_host_ = 0, edit_calls_ = 0;
};

}  // namespace tessera::testing
