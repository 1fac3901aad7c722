// AVX-512 VNNI + BF16 kernel table: the avx512vnni table, with BF16 weights multiplied by
// BF16-rounded activations through vdpbf16ps (x86_bf16_dots.inc).
#define TESSERA_ISA_NS avx512bf16
#define TESSERA_ISA_NAME "avx512bf16"
#define TESSERA_ISA_TABLE Avx512Bf16Kernels
#include "kernels/cpu/vec_dot_x86.inc"
