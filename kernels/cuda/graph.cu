// graph_shim.h over the CUDA runtime.
#include <cuda_runtime.h>

#include "kernels/cuda/graph_shim.h"
#include "kernels/cuda/launch_status.cuh"

namespace tessera::cuda_shim {

int CaptureBegin(void* stream, Error* error) {
  // Thread-local: a call on this thread that would break the recording fails at once
  // (and invalidates it) instead of running unrecorded.
  const cudaError_t err = cudaStreamBeginCapture(static_cast<cudaStream_t>(stream),
                                                 cudaStreamCaptureModeThreadLocal);
  if (err == cudaSuccess) return 0;
  cudaGetLastError();  // reported here, not by the next launch
  return Fail(err, error);
}

int CaptureEnd(void* stream, void** graph, Error* error) {
  cudaGraph_t g = nullptr;
  const cudaError_t err = cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &g);
  if (err != cudaSuccess) {
    if (g != nullptr) cudaGraphDestroy(g);
    *graph = nullptr;
    cudaGetLastError();  // the failure is reported here, not by the next launch
    return Fail(err, error);
  }
  *graph = g;
  return 0;
}

int GraphInstantiate(void* graph, void** exec, Error* error) {
  cudaGraphExec_t e = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&e, static_cast<cudaGraph_t>(graph), 0);
  if (err != cudaSuccess) {
    *exec = nullptr;
    cudaGetLastError();  // reported here, not by the next launch
    return Fail(err, error);
  }
  *exec = e;
  return 0;
}

void GraphDestroy(void* graph) {
  if (graph != nullptr) cudaGraphDestroy(static_cast<cudaGraph_t>(graph));
}

int GraphLaunch(void* exec, void* stream, Error* error) {
  const cudaError_t err =
      cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), static_cast<cudaStream_t>(stream));
  if (err == cudaSuccess) return 0;
  cudaGetLastError();  // reported here, not by the next launch
  return Fail(err, error);
}

void GraphExecDestroy(void* exec) {
  if (exec != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

void ClearLastError() { cudaGetLastError(); }

int HostAlloc(void** ptr, size_t bytes, Error* error) {
  const cudaError_t err = cudaHostAlloc(ptr, bytes, cudaHostAllocDefault);
  if (err != cudaSuccess) {
    *ptr = nullptr;
    return Fail(err, error);
  }
  return 0;
}

void HostFree(void* ptr) {
  if (ptr != nullptr) cudaFreeHost(ptr);
}

}  // namespace tessera::cuda_shim
