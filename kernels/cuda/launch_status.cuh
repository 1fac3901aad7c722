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

// After a launch: the launch's error, else the kernel's (after waiting for it), else 0.
inline int FinishLaunch(Error* error) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  return err == cudaSuccess ? 0 : Fail(err, error);
}

}  // namespace tessera::cuda_shim
