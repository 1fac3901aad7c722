// elementwise_shim.h, attention_shim.h, gemm_shim.h and graph_shim.h for builds without
// CUDA: every call reports that no CUDA code is present.
#include <cstdio>

#include "kernels/cuda/attention_shim.h"
#include "kernels/cuda/elementwise_shim.h"
#include "kernels/cuda/gemm_shim.h"
#include "kernels/cuda/graph_shim.h"

namespace tessera::cuda_shim {
namespace {
constexpr int kNotBuilt = -1;
int NotBuilt(Error* error) {
  std::snprintf(error->text, sizeof(error->text),
                "built without CUDA (configure with -DTESSERA_CUDA=ON)");
  return kNotBuilt;
}
}  // namespace

int StreamCreate(void** stream, Error* error) {
  *stream = nullptr;
  return NotBuilt(error);
}
void StreamDestroy(void*) {}
int StreamSynchronize(void*, Error* error) { return NotBuilt(error); }
int Malloc(void** ptr, size_t, Error* error) {
  *ptr = nullptr;
  return NotBuilt(error);
}
void Free(void*) {}
int CopyToDevice(void*, const void*, size_t, Error* error) { return NotBuilt(error); }
int CopyToHost(void*, const void*, size_t, Error* error) { return NotBuilt(error); }
int Copy(void*, const void*, size_t, Error* error, const Launch&) { return NotBuilt(error); }
int Copy2D(void*, size_t, const void*, size_t, size_t, size_t, Error* error, const Launch&) {
  return NotBuilt(error);
}
int Zero(void*, size_t, Error* error, const Launch&) { return NotBuilt(error); }
int RmsNorm(const float*, const float*, int64_t, int64_t, float, float*, Error* error,
            const Launch&) {
  return NotBuilt(error);
}
int SiluMul(const float*, const float*, int64_t, float*, Error* error, const Launch&) {
  return NotBuilt(error);
}
int SwiGluRows(const float*, int64_t, int64_t, float*, Error* error, const Launch&) {
  return NotBuilt(error);
}
int Add(const float*, const float*, int64_t, float*, Error* error, const Launch&) {
  return NotBuilt(error);
}
int Softmax(float*, int64_t, int64_t, Error* error, const Launch&) { return NotBuilt(error); }
int Rope(float*, int64_t, int64_t, const int32_t*, int64_t, int64_t, const float*, float, bool,
         Error* error, const Launch&) {
  return NotBuilt(error);
}

int ArgMaxRows(const float*, int64_t, int64_t, ArgMaxPair*, Error* error, const Launch&) {
  return NotBuilt(error);
}
int TopKRows(const float*, int64_t, int64_t, const int32_t*, const float*, int64_t, int32_t*,
             float*, int32_t*, Error* error, const Launch&) {
  return NotBuilt(error);
}
int DrawRows(const float*, int64_t, int64_t, const float*, const double*, int32_t*, float*,
             Error* error, const Launch&) {
  return NotBuilt(error);
}
int EditLogits(float*, int64_t, const LogitEdit*, int64_t, float*, Error* error, const Launch&) {
  return NotBuilt(error);
}
int SoftmaxDenominators(const float*, int64_t, int64_t, const float*, double*, Error* error,
                        const Launch&) {
  return NotBuilt(error);
}
int Embedding(const void*, int, const float*, int64_t, const int32_t*, int64_t, float*,
              Error* error, const Launch&) {
  return NotBuilt(error);
}
int Gemv(const void*, int, const float*, int64_t, int64_t, const float*, int64_t, float*,
         bool, Error* error, const Launch&) {
  return NotBuilt(error);
}
int DequantizeToF16(const void*, int, const float*, int64_t, int64_t, void*, Error* error,
                    const Launch&) {
  return NotBuilt(error);
}
int QuantizeRowsFp8(const void*, int, int64_t, int64_t, uint8_t*, float*, Error* error,
                    const Launch&) {
  return NotBuilt(error);
}

int PagedAttentionDecode(const PagedAttentionArgs&, Error* error, const Launch&) {
  return NotBuilt(error);
}
int PagedAttentionPrefill(const PagedAttentionArgs&, Error* error, const Launch&) {
  return NotBuilt(error);
}
int WriteKv(const float*, const float*, const int32_t*, int64_t, int64_t, void*, void*, bool,
            Error* error, const Launch&) {
  return NotBuilt(error);
}

int Gemm16(const float*, int64_t, int64_t, const void*, int, int64_t, float*, Error* error,
           const Launch&, int64_t, bool) {
  return NotBuilt(error);
}
int GemmFp8(const float*, int64_t, int64_t, const void*, const float*, int64_t, float*,
            Error* error, const Launch&, int64_t) {
  return NotBuilt(error);
}
uint64_t GemmScratchGeneration(void*) { return 0; }
int CaptureBegin(void*, Error* error) { return NotBuilt(error); }
int CaptureEnd(void*, void** graph, Error* error) {
  *graph = nullptr;
  return NotBuilt(error);
}
int GraphInstantiate(void*, void** exec, Error* error) {
  *exec = nullptr;
  return NotBuilt(error);
}
void GraphDestroy(void*) {}
int GraphLaunch(void*, void*, Error* error) { return NotBuilt(error); }
void GraphExecDestroy(void*) {}
int HostAlloc(void** ptr, size_t, Error* error) {
  *ptr = nullptr;
  return NotBuilt(error);
}
void ClearLastError() {}
void HostFree(void*) {}

}  // namespace tessera::cuda_shim
