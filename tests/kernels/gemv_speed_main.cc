// Prints MatMul timings (n = 1 decode GEMV and an n = 32 prefill GEMM) for the shapes of the
// default model (SmolLM2-135M: hidden 576, ffn 1536, 3 KV heads x 64, vocab 49152), per
// weight dtype, for the "cpu" backend at 1 and 2 threads. A measurement aid, not a test.
// Usage: kernels_gemv_speed [iterations] [decode_tokens]
// The second part times a synthetic decode step: the MatMuls of all 30 layers (Q4_1) plus
// the Q8_0 LM head, mean over `decode_tokens` steps, wall and CPU time.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/half.h"
#include "kernels/cpu/cpu_backend.h"

namespace tessera {
namespace {

std::vector<uint8_t> RandomRows(DType t, int64_t m, int64_t k, std::mt19937& rng) {
  const DTypeTraits& tr = Traits(t);
  std::vector<uint8_t> w(static_cast<size_t>(m * k / tr.block_elems * tr.block_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  if (tr.quantized) {  // sane fp16 scale in the first two bytes of each block (Q4_x/Q8_0)
    for (size_t off = 0; off < w.size(); off += tr.block_bytes) {
      const uint16_t h = FloatToFp16(0.01f);
      std::memcpy(&w[off], &h, 2);
      std::memcpy(&w[off + 2], &h, 2);
    }
  } else if (t == DType::kF32) {
    for (size_t i = 0; i < w.size(); i += 4) { const float f = 0.01f; std::memcpy(&w[i], &f, 4); }
  }
  return w;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  using namespace tessera;
  const int iters = argc > 1 ? std::atoi(argv[1]) : 200;
  struct Shape { const char* name; int64_t m, k; };
  const Shape shapes[] = {{"q/o 576x576", 576, 576}, {"k/v 192x576", 192, 576},
                          {"gate/up 1536x576", 1536, 576}, {"down 576x1536", 576, 1536},
                          {"lm_head 49152x576", 49152, 576}};
  const DType types[] = {DType::kQ4_1, DType::kQ8_0, DType::kQ4_0, DType::kF16, DType::kF32};
  std::mt19937 rng(1);
  for (int threads : {1, 2}) {
    CpuBackend be(threads);
    std::printf("isa=%s threads=%d\n", std::string(be.isa()).c_str(), threads);
    for (DType t : types) {
      for (const Shape& s : shapes) {
        if (s.m == 49152 && t != DType::kQ8_0) continue;
        const std::vector<uint8_t> w = RandomRows(t, s.m, s.k, rng);
        const TensorView wv{t, {s.m, s.k}, w.data()};
        for (int64_t n : {1, 32}) {
          std::vector<float> x(n * s.k, 0.5f), y(n * s.m);
          (void)be.MatMul(x.data(), n, s.k, wv, y.data());
          // The fastest single call: this machine is shared, and the minimum is the figure
          // least disturbed by other processes.
          const int reps = std::max(3, static_cast<int>(iters / n));
          double us = 1e30;
          for (int r = 0; r < reps; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            (void)be.MatMul(x.data(), n, s.k, wv, y.data());
            us = std::min(us, std::chrono::duration<double, std::micro>(
                                  std::chrono::steady_clock::now() - t0).count());
          }
          const double gbs = static_cast<double>(w.size()) / (us * 1e3);
          std::printf("  %-5s %-18s n=%-3lld %9.1f us  %6.2f GB/s of weights\n",
                      std::string(DTypeName(t)).c_str(), s.name, static_cast<long long>(n), us, gbs);
        }
      }
    }
  }
  const int tokens = argc > 2 ? std::atoi(argv[2]) : 50;
  struct Layer { std::vector<uint8_t> q, k, v, o, gate, up, down; };
  std::vector<Layer> layers(30);
  for (Layer& l : layers) {
    l.q = RandomRows(DType::kQ4_1, 576, 576, rng);
    l.k = RandomRows(DType::kQ4_1, 192, 576, rng);
    l.v = RandomRows(DType::kQ4_1, 192, 576, rng);
    l.o = RandomRows(DType::kQ4_1, 576, 576, rng);
    l.gate = RandomRows(DType::kQ4_1, 1536, 576, rng);
    l.up = RandomRows(DType::kQ4_1, 1536, 576, rng);
    l.down = RandomRows(DType::kQ4_1, 576, 1536, rng);
  }
  const std::vector<uint8_t> head = RandomRows(DType::kQ8_0, 49152, 576, rng);
  std::vector<float> x(1536, 0.25f), y(49152);
  for (int threads : {1, 2}) {
    CpuBackend be(threads);
    auto step = [&] {
      for (Layer& l : layers) {
        auto mm = [&](const std::vector<uint8_t>& w, int64_t m, int64_t k) {
          (void)be.MatMul(x.data(), 1, k, TensorView{DType::kQ4_1, {m, k}, w.data()}, y.data());
        };
        mm(l.q, 576, 576); mm(l.k, 192, 576); mm(l.v, 192, 576); mm(l.o, 576, 576);
        mm(l.gate, 1536, 576); mm(l.up, 1536, 576); mm(l.down, 576, 1536);
      }
      (void)be.MatMul(x.data(), 1, 576, TensorView{DType::kQ8_0, {49152, 576}, head.data()}, y.data());
    };
    step();
    timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < tokens; ++t) step();
    const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / tokens;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    const double cpu_ms = ((c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6) / tokens;
    std::printf("decode MatMuls (30 x Q4_1 layers + Q8_0 head), threads=%d: %.2f ms/token wall "
                "(%.1f tokens/s), %.2f ms CPU\n", threads, wall_ms, 1e3 / wall_ms, cpu_ms);
  }
  return 0;
}
