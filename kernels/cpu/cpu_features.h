// Run-time choice of the CPU kernel table (vec_dot.h): the best ISA this CPU supports, or a
// named one for tests. Thread-safe.
#pragma once

#include <string_view>
#include <vector>

#include "kernels/cpu/vec_dot.h"

namespace tessera {

// Every kernel table this CPU can run, best last ("generic" always first).
std::vector<const CpuKernels*> SupportedCpuKernels();
// The best of SupportedCpuKernels(); TESSERA_CPU_ISA=generic|avx2|avx512vnni|avx512bf16 in the
// environment caps the choice (a name that is not supported here is ignored).
const CpuKernels& BestCpuKernels();

}  // namespace tessera
