// AVX-512 VNNI (+VL/BW) kernel table: the AVX2 bodies with vpdpbusd for u8·s8 sums.
#define TESSERA_ISA_NS avx512vnni
#define TESSERA_ISA_NAME "avx512vnni"
#define TESSERA_ISA_TABLE Avx512VnniKernels
#include "kernels/cpu/vec_dot_x86.inc"
