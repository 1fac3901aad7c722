// AVX2 + FMA + F16C kernel table (compiled with those flags only; chosen at run time).
#define TESSERA_ISA_NS avx2
#define TESSERA_ISA_NAME "avx2"
#define TESSERA_ISA_TABLE Avx2Kernels
#include "kernels/cpu/vec_dot_x86.inc"
