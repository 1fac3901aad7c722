// What CudaBackend's source files (cuda_backend.cc, cuda_backend_weights.cc) share: the ops'
// tags in a recorded step's signature and the growth rule of its scratch buffers. Internal
// to kernels/cuda.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_ops.h"

namespace tessera::cuda_backend_internal {

// The ops' tags in a recorded step's signature (step_graphs.h).
enum class SignedOp : uint8_t {
  kCopyRows = 1, kZero, kMatMul, kEmbedding, kRmsNorm, kRope, kSiluMul, kSwiGluRows, kAdd,
  kSoftmax, kAttention, kWriteKv,
};

// *buffer holding at least `bytes`: a smaller one is freed first (scratch can be tens of
// MB; the two are never held at once), then a new one allocated.
absl::Status Reserve(DeviceBuffer* buffer, size_t bytes);

}  // namespace tessera::cuda_backend_internal
