// Plain-C++ boundary of the CUDA element-wise and quantized kernels (elementwise.cu and
// quantized.cu, or elementwise_stub.cc without CUDA), so that no abseil header passes through nvcc; the
// abseil-facing API is cuda_ops.h. Pointers are device pointers. Each call launches on the
// stream its Launch names (the default stream, waiting, unless told otherwise) and returns a
// cudaError_t code (0 = success) with the runtime's message in `error`. Internal to kernels/.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/weight_element.h"  // WeightType
#include "kernels/logit_edit.h"

namespace tessera::cuda_shim {

struct Error {
  char text[256] = {};
};

// Where a call's kernels and copies go: `stream` (a cudaStream_t; nullptr is the legacy
// default stream), and whether the call waits for its work (`wait`, the default: the op
// tests' synchronous calls) or returns once the work is queued (the backend, which waits
// only where the host reads results; a queued kernel's failure surfaces at the next wait).
struct Launch {
  void* stream = nullptr;
  bool wait = true;
};

int StreamCreate(void** stream, Error* error);
void StreamDestroy(void* stream);
int StreamSynchronize(void* stream, Error* error);

int Malloc(void** ptr, size_t bytes, Error* error);
void Free(void* ptr);
int CopyToDevice(void* dst, const void* src, size_t bytes, Error* error);
int CopyToHost(void* dst, const void* src, size_t bytes, Error* error);
// Any direction (cudaMemcpyDefault: host or device pointers on either side).
int Copy(void* dst, const void* src, size_t bytes, Error* error, const Launch& launch = {});
// `height` rows of `width` bytes at pitches dpitch / spitch (cudaMemcpy2D, any direction).
int Copy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
           Error* error, const Launch& launch = {});
// Zeroes `bytes` of device memory.
int Zero(void* ptr, size_t bytes, Error* error, const Launch& launch = {});

// As Backend::RmsNorm, SiluMul, Add, Softmax and Rope (kernels/ops.h); positions and
// inv_freq are device arrays; `halves` selects RopeStyle::kHalves.
int RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* out,
            Error* error, const Launch& launch = {});
int SiluMul(const float* gate, const float* up, int64_t count, float* out, Error* error,
            const Launch& launch = {});
// As Backend::SwiGluRows: out [rows, width] from gate_up [rows, 2 * width].
int SwiGluRows(const float* gate_up, int64_t rows, int64_t width, float* out, Error* error,
               const Launch& launch = {});
int Add(const float* a, const float* b, int64_t count, float* out, Error* error,
        const Launch& launch = {});
int Softmax(float* x, int64_t n, int64_t dim, Error* error, const Launch& launch = {});
int Rope(float* x, int64_t n_tokens, int64_t num_heads, const int32_t* positions,
         int64_t head_dim, int64_t rope_dim, const float* inv_freq, float mscale, bool halves,
         Error* error, const Launch& launch = {});

// As Backend::ArgMaxRows (the rule of common/row_argmax.h): out[r] for each of `rows` rows of
// x [rows, dim]; `out` is device memory of `rows` pairs.
struct ArgMaxPair {
  int32_t index;
  float value;
};
int ArgMaxRows(const float* x, int64_t rows, int64_t dim, ArgMaxPair* out, Error* error,
               const Launch& launch = {});
// As Backend::TopKRows (the rule of common/row_top_k.h; sampling.cu) with every array in device
// memory: k and temperature `rows` entries, ids and values [rows, capacity], counts `rows`.
int TopKRows(const float* x, int64_t rows, int64_t dim, const int32_t* k,
             const float* temperature, int64_t capacity, int32_t* ids, float* values,
             int32_t* counts, Error* error, const Launch& launch = {});
// As Backend::SoftmaxDenominators (sampling.cu) with every array in device memory
// (temperature and sums `rows` entries).
int SoftmaxDenominators(const float* x, int64_t rows, int64_t dim, const float* temperature,
                        double* sums, Error* error, const Launch& launch = {});
// As Backend::SampleRows (the rule of common/row_sample.h; sampling.cu) with every array in
// device memory: temperature, u, tokens and token_logits (null: not written) `rows` entries.
int DrawRows(const float* x, int64_t rows, int64_t dim, const float* temperature,
             const double* u, int32_t* tokens, float* token_logits, Error* error,
             const Launch& launch = {});
// As Backend::EditLogits (sampling.cu) with the `count` edits and `previous` (null, or one
// float per edit) in device memory, the edits already checked (CheckEditLogitsArgs):
// x[e.row * dim + e.token] = ApplyLogitEdit(that, e).
int EditLogits(float* x, int64_t dim, const LogitEdit* edits, int64_t count, float* previous,
               Error* error, const Launch& launch = {});

// The functions that read weight rows take `row_scales`: device floats, one per row of the
// matrix, that multiply its rows; required for kWF8E4M3 rows (fp8_e4m3.h), nullptr for every
// other type (whose blocks carry their own scales).

// As Backend::Embedding: out[i, :] = row ids[i] of table [rows, cols] (device) dequantized;
// ids are device ints already checked to lie in [0, rows).
int Embedding(const void* table, int type, const float* row_scales, int64_t cols,
              const int32_t* ids, int64_t n, float* out, Error* error, const Launch& launch = {});
// out [rows, k] (F16, device) = the first `rows` rows of W [*, k] of `type` dequantized and
// rounded to nearest (k a multiple of 8), for a cuBLASLt GEMM over many activation rows.
int DequantizeToF16(const void* w, int type, const float* row_scales, int64_t rows, int64_t k,
                    void* out, Error* error, const Launch& launch = {});
// y[j, r] = x[j, :] · W[r, :] for W [m, k] of `type` and float activations x [n, k]
// (decode-sized n <= 8; one warp per weight row, dequantizing as it reads); `accumulate`:
// y[j, r] += instead.
int Gemv(const void* w, int type, const float* row_scales, int64_t m, int64_t k, const float* x,
         int64_t n, float* y, bool accumulate, Error* error, const Launch& launch = {});
// The rows of src [rows, k] of `type` (any readable type but FP8 itself; F32 for
// activations) as FP8: scales[r] = Fp8RowScale(max |row r|) and out[r, c] =
// FloatToFp8E4M3(src[r, c] / scales[r]), bit for bit as the host computes them.
int QuantizeRowsFp8(const void* src, int type, int64_t rows, int64_t k, uint8_t* out,
                    float* scales, Error* error, const Launch& launch = {});

}  // namespace tessera::cuda_shim
