// Per-ISA inner kernels of the "cpu" backend: dot products of one weight row with one
// activation row, and the float helpers the other ops use. Each ISA's table is compiled in
// its own translation unit with that ISA's flags and chosen at run time (cpu_features.h), so
// a binary built here runs on any x86-64 (or non-x86) CPU.
//
// Activations: for integer-dot weight types, x is first quantized once per row with
// QuantizeRow(CpuKernels::activation_type(w), ...) (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for
// Q4_1/Q5_1, Q8_K for K-quants); for F32/F16/BF16 weights the activation row stays float32,
// except BF16 weights on the avx512bf16 table, whose activations are rounded to BF16.
// All functions are pure and thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/packed_weights.h"

namespace tessera {

// w_row: k elements of the weight dtype; act_row: k elements of ActivationType(dtype).
using VecDotFn = float (*)(int64_t k, const void* w_row, const void* act_row);

// Four dots of one weight row with activation rows act, act + act_stride, ... (bytes);
// out[0..3] receive them. Same arithmetic per dot as VecDotFn up to summation order.
using VecDot4Fn = void (*)(int64_t k, const void* w_row, const void* act, int64_t act_stride,
                           float* out);

// CpuKernels::tile_rows weight rows (row r at w + r * w_stride bytes) against four
// activation rows (row j at act + j * act_stride): out[r * 4 + j] receives their dot. Each
// weight block is unpacked once for the four activation rows and each activation block
// loaded once for the weight rows. Same arithmetic per dot as VecDotFn up to summation order.
using VecDotTileFn = void (*)(int64_t k, const void* w, int64_t w_stride, const void* act,
                              int64_t act_stride, float* out);

// Positions per CpuKernels::attend_run call.
inline constexpr int64_t kAttendMaxRun = 128;

// The running state of an online softmax of `nq` query vectors of `d` floats (one GQA group,
// or one head): per query the running max (start at -inf), the running sum of exp(score -
// max) and the unnormalized output acc (start at 0); `scores` is scratch of nq *
// kAttendMaxRun floats. The attention output of query i is acc[i] / sum[i].
struct AttentionAccumulator {
  int nq = 0;
  int64_t d = 0;
  float* max = nullptr;     // [nq]
  float* sum = nullptr;     // [nq]
  float* acc = nullptr;     // [nq * d]
  float* scores = nullptr;  // [nq * kAttendMaxRun]
};

// Owns an AttentionAccumulator's arrays; Reset starts a new softmax (reusing the memory, so
// a thread that keeps one allocates only when nq or d grows).
class AttentionWorkspace {
 public:
  AttentionAccumulator& Reset(int nq, int64_t d) {
    const size_t need = static_cast<size_t>(nq) * (2 + d + kAttendMaxRun);
    if (buf_.size() < need) buf_.resize(need);
    float* p = buf_.data();
    state_ = {.nq = nq, .d = d, .max = p, .sum = p + nq, .acc = p + 2 * nq,
              .scores = p + 2 * nq + nq * d};
    std::fill(p, p + nq, -std::numeric_limits<float>::infinity());
    std::fill(p + nq, p + 2 * nq + nq * d, 0.0f);
    return state_;
  }
  // out row i (i < nq, at out + i * d) = acc[i] / sum[i].
  void Finish(float* out) const { Finish(out, 0, state_.nq); }
  // The same for queries [first, first + count): out row i is query first + i's.
  void Finish(float* out, int first, int count) const {
    const int64_t d = state_.d;
    for (int i = 0; i < count; ++i) {
      const float inv = 1.0f / state_.sum[first + i];
      const float* acc = state_.acc + (first + i) * d;
      for (int64_t e = 0; e < d; ++e) out[i * d + e] = acc[e] * inv;
    }
  }
  // Queries [first, first + count) as a state of their own, sharing this one's memory (the
  // query rows of a tile each advance their own softmax over the same K/V).
  AttentionAccumulator Queries(int first, int count) const {
    return {.nq = count, .d = state_.d, .max = state_.max + first, .sum = state_.sum + first,
            .acc = state_.acc + first * state_.d, .scores = state_.scores + first * kAttendMaxRun};
  }

 private:
  std::vector<float> buf_;
  AttentionAccumulator state_;
};

// Advances `state` over n <= kAttendMaxRun key/value rows, row j at k + j * stride and
// v + j * stride: query i (at q + i * q_stride) scores scale · q_i · k_j. Each K and V row is
// read once for all the queries.
using AttendRunFn = void (*)(const float* q, int64_t q_stride, float scale, const float* k,
                             const float* v, int64_t stride, int64_t n,
                             AttentionAccumulator& state);

// The activation format that vec_dot expects for weight dtype `w` on every table but
// avx512bf16: kQ8_0, kQ8_1, kQ8_K, or kF32 (float activations; also for dtypes handled by
// dequantize + dot_f32).
DType ActivationType(DType w);

struct CpuKernels {
  std::string_view isa;  // "generic", "avx2", "avx512vnni", "avx512bf16"
  // The direct dot for weight dtype `w`, or nullptr when this ISA has none (the backend
  // then dequantizes the row and uses dot_f32).
  VecDotFn (*vec_dot)(DType w);
  // The four-row form for prefill, or nullptr (the backend then calls vec_dot four times).
  VecDot4Fn (*vec_dot4)(DType w);
  // The tile form for batches of four or more rows, or nullptr (then vec_dot4 is used).
  VecDotTileFn (*vec_dot_tile)(DType w);
  int tile_rows = 0;  // weight rows per vec_dot_tile call
  // The GEMM over weights packed by WeightPacker (packed_weights.h), or nullptr when this
  // ISA has none (the backend then keeps the GGUF layout and the kernels above).
  PackedGemmFn packed_gemm = nullptr;
  // The packed formats packed_gemm runs exactly; nullptr = all of them.
  bool (*packs_format)(PackedFormat format) = nullptr;
  // Quantizes k floats to activation dtype `type` with results identical to QuantizeRow;
  // false when this ISA has no fast path for `type` (the caller then uses QuantizeRow).
  bool (*quantize_act)(DType type, const float* x, void* out, int64_t k);
  // The activation dtype this table's vec_dot, vec_dot4 and vec_dot_tile read for weight
  // dtype `w` (the rows MatMul hands them are QuantizeRow(activation_type(w), x)).
  DType (*activation_type)(DType w) = ActivationType;
  // sum(a[i] * b[i]) over n floats.
  float (*dot_f32)(const float* a, const float* b, int64_t n);
  // y[i] += a * x[i].
  void (*axpy_f32)(float a, const float* x, float* y, int64_t n);
  // out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  // x[i] = exp(x[i] - max) in place; returns the sum of the new x[i].
  float (*exp_sum)(float* x, float max, int64_t n);
  // One run of online-softmax attention (attend_run.inc).
  AttendRunFn attend_run = nullptr;
  // IEEE half <-> float, bit-equal to common/half.h's FloatToFp16 (ties to even; finite x)
  // and Fp16ToFloat: how a kF16 paged KV cache is written and read.
  void (*f32_to_f16)(const float* x, uint16_t* out, int64_t n) = nullptr;
  void (*f16_to_f32)(const uint16_t* x, float* out, int64_t n) = nullptr;
};

// Tables per ISA; the x86 ones exist only in x86-64 builds and must only be used when
// cpu_features.h says the CPU supports them.
const CpuKernels& GenericKernels();
const CpuKernels& Avx2Kernels();
const CpuKernels& Avx512VnniKernels();
const CpuKernels& Avx512Bf16Kernels();

}  // namespace tessera
