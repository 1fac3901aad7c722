// Plain-C++ boundary of CUDA graphs and pinned host memory (graph.cu, or
// elementwise_stub.cc without CUDA), for the backend's recorded decode steps
// (step_graphs.h). Handles are the runtime's cudaGraph_t / cudaGraphExec_t as void*; same
// conventions and error codes as elementwise_shim.h. Internal to kernels/.
#pragma once

#include <cstddef>

#include "kernels/cuda/elementwise_shim.h"

namespace tessera::cuda_shim {

// Starts recording `stream`'s work instead of running it. Calls on this thread that cannot
// be recorded (a synchronizing copy, a wait) fail, and the recording with them.
int CaptureBegin(void* stream, Error* error);
// Ends the recording; *graph is the recorded graph (nullptr on failure, e.g. a call in
// between that could not be recorded).
int CaptureEnd(void* stream, void** graph, Error* error);
// The executable form of a recorded graph; the graph itself may be destroyed afterwards.
int GraphInstantiate(void* graph, void** exec, Error* error);
void GraphDestroy(void* graph);
// Queues the executable graph on `stream`.
int GraphLaunch(void* exec, void* stream, Error* error);
void GraphExecDestroy(void* exec);

// Clears the runtime's last error (a failed capture, instantiation, launch or copy), so that
// the launches after it report their own.
void ClearLastError();

// Page-locked host memory, which copies on a stream read when they run (and a recording may
// copy from); freed with HostFree.
int HostAlloc(void** ptr, size_t bytes, Error* error);
void HostFree(void* ptr);

}  // namespace tessera::cuda_shim
