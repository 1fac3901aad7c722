// The CUDA runtime calls behind device_probe.h, compiled by nvcc.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/cuda/cuda_runtime_shim.h"

namespace tessera::cuda_shim {
namespace {

int Fail(cudaError_t err, char* error, size_t error_len) {
  std::snprintf(error, error_len, "%s: %s", cudaGetErrorName(err), cudaGetErrorString(err));
  return static_cast<int>(err);
}

__global__ void AddOne(int* data, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] += 1;
}

}  // namespace

bool CompiledIn() { return true; }

int DeviceCount(int* count, char* error, size_t error_len) {
  *count = 0;
  const cudaError_t err = cudaGetDeviceCount(count);
  if (err != cudaSuccess) {
    *count = 0;
    return Fail(err, error, error_len);
  }
  return 0;
}

int DeviceInfo(int ordinal, char* name, size_t name_len, int* major, int* minor,
               int* multiprocessors, size_t* free_bytes, size_t* total_bytes, char* error,
               size_t error_len) {
  cudaDeviceProp prop;
  cudaError_t err = cudaGetDeviceProperties(&prop, ordinal);
  if (err != cudaSuccess) return Fail(err, error, error_len);
  std::snprintf(name, name_len, "%s", prop.name);
  *major = prop.major;
  *minor = prop.minor;
  *multiprocessors = prop.multiProcessorCount;
  // cudaMemGetInfo reports the current device: switch to `ordinal` for it and back.
  int previous = 0;
  if ((err = cudaGetDevice(&previous)) != cudaSuccess) return Fail(err, error, error_len);
  if ((err = cudaSetDevice(ordinal)) != cudaSuccess) return Fail(err, error, error_len);
  err = cudaMemGetInfo(free_bytes, total_bytes);
  const cudaError_t restored = cudaSetDevice(previous);
  if (err == cudaSuccess) err = restored;
  return err == cudaSuccess ? 0 : Fail(err, error, error_len);
}

int SmokeTest(int ordinal, int n, bool* ok, char* error, size_t error_len) {
  *ok = false;
  cudaError_t err = cudaSetDevice(ordinal);
  if (err != cudaSuccess) return Fail(err, error, error_len);
  std::vector<int> host(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) host[i] = i;
  int* dev = nullptr;
  if ((err = cudaMalloc(&dev, sizeof(int) * n)) != cudaSuccess) return Fail(err, error, error_len);
  err = cudaMemcpy(dev, host.data(), sizeof(int) * n, cudaMemcpyHostToDevice);
  if (err == cudaSuccess) {
    AddOne<<<(n + 255) / 256, 256>>>(dev, n);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaMemcpy(host.data(), dev, sizeof(int) * n, cudaMemcpyDeviceToHost);
  cudaFree(dev);
  if (err != cudaSuccess) return Fail(err, error, error_len);
  *ok = true;
  for (int i = 0; i < n; ++i) *ok = *ok && host[i] == i + 1;
  return 0;
}

}  // namespace tessera::cuda_shim
