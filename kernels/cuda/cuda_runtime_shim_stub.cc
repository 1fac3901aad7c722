// The shim for builds without CUDA: reports that no CUDA code is present.
#include <cstdio>

#include "kernels/cuda/cuda_runtime_shim.h"

namespace tessera::cuda_shim {
namespace {
constexpr int kNotBuilt = -1;
int NotBuilt(char* error, size_t error_len) {
  std::snprintf(error, error_len, "built without CUDA (configure with -DTESSERA_CUDA=ON)");
  return kNotBuilt;
}
}  // namespace

bool CompiledIn() { return false; }
int DeviceCount(int* count, char* error, size_t error_len) {
  *count = 0;
  return NotBuilt(error, error_len);
}
int DeviceInfo(int, char*, size_t, int*, int*, int*, size_t*, size_t*, char* error, size_t error_len) {
  return NotBuilt(error, error_len);
}
int SmokeTest(int, int, bool* ok, char* error, size_t error_len) {
  *ok = false;
  return NotBuilt(error, error_len);
}

}  // namespace tessera::cuda_shim
