#include "kernels/cpu/cpu_features.h"

#include <cstdlib>
#include <string>

namespace tessera {

std::vector<const CpuKernels*> SupportedCpuKernels() {
  std::vector<const CpuKernels*> out = {&GenericKernels()};
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx2) out.push_back(&Avx2Kernels());
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
    out.push_back(&Avx512VnniKernels());
    if (__builtin_cpu_supports("avx512bf16")) out.push_back(&Avx512Bf16Kernels());
  }
#endif
  return out;
}

const CpuKernels& BestCpuKernels() {
  static const CpuKernels* best = [] {
    std::vector<const CpuKernels*> all = SupportedCpuKernels();
    const char* cap = std::getenv("TESSERA_CPU_ISA");
    if (cap != nullptr) {
      for (const CpuKernels* k : all) {
        if (k->isa == std::string(cap)) return k;
      }
    }
    return all.back();
  }();
  return *best;
}

}  // namespace tessera
