// How the .cu files of kernels/cuda turn CUDA runtime results into the shims' error codes
// (elementwise_shim.h): the code as an int, the runtime's name and message in `error`.
// Included by nvcc-compiled files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>

#include "kernels/cuda/elementwise_shim.h"

namespace tessera::cuda_shim {

inline int Fail(cudaError_t err, Error* error) {
  std::snprintf(error->text, sizeof(error->text), "%s: %s", cudaGetErrorName(err),
                cudaGetErrorString(err));
  return static_cast<int>(err);
}

inline cudaStream_t StreamOf(const Launch& launch) {
  return static_cast<cudaStream_t>(launch.stream);
}

// After queuing work on launch.stream: the launch's error, else (when the call waits) the
// work's, else 0.
inline int FinishLaunch(Error* error, const Launch& launch = {}) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && launch.wait) err = cudaStreamSynchronize(StreamOf(launch));
  return err == cudaSuccess ? 0 : Fail(err, error);
}

// The same for a call that returned `err` (a copy or memset).
inline int FinishCall(cudaError_t err, Error* error, const Launch& launch) {
  if (err == cudaSuccess && launch.wait) err = cudaStreamSynchronize(StreamOf(launch));
  return err == cudaSuccess ? 0 : Fail(err, error);
}

}  // namespace tessera::cuda_shim
