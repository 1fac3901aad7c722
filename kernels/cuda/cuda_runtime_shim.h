// Plain-C++ boundary between the nvcc-compiled file (cuda_runtime_shim.cu, or the stub when
// built without CUDA) and the rest of the library, so that no abseil header passes through
// nvcc. Return values are cudaError_t codes (0 = success); `error` receives the runtime's
// message on failure. Internal to kernels/.
#pragma once

#include <cstddef>

namespace tessera::cuda_shim {

bool CompiledIn();
int DeviceCount(int* count, char* error, size_t error_len);
int DeviceInfo(int ordinal, char* name, size_t name_len, int* major, int* minor,
               int* multiprocessors, size_t* free_bytes, size_t* total_bytes, char* error,
               size_t error_len);
// Fills n ints with i, adds 1 on the device, copies back; *ok = every value is i + 1.
int SmokeTest(int ordinal, int n, bool* ok, char* error, size_t error_len);

}  // namespace tessera::cuda_shim
