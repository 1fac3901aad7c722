// Philox-4x32-10, the counter-based generator of Random123 (Salmon et al., SC'11) that
// curand and PyTorch's CUDA generator use, plus Random123's integer -> uniform float
// conversions. A draw is a pure function of (counter, key): the sampler keys it by
// (seed, sequence index within the request, position), so a seeded request gets the same
// numbers whatever batch it runs in, on whatever rank. Stateless; thread-safe.
#pragma once

#include <array>
#include <cstdint>

namespace tessera {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// The Philox-4x32 bijection with `rounds` rounds (10 is the standard, crush-resistant one).
PhiloxCounter Philox4x32(PhiloxCounter counter, PhiloxKey key, int rounds = 10);

// Random123's u01<float>(uint32): (x + 1/2) * 2^-32 rounded to float, in (0, 1] (float
// rounding makes the largest inputs 1.0f).
float U01Float(uint32_t x);
// Random123's u01<double>(uint32): (x + 1/2) * 2^-32 exactly, in (0, 1).
double U01Double(uint32_t x);
// 53 random bits (the high 53 of (hi << 32 | lo)) times 2^-53: uniform on [0, 1).
double Uniform53(uint32_t hi, uint32_t lo);

// The draw for one sampling decision: key = seed, counter = (position, sequence_index),
// both as little-endian pairs of 32-bit words.
PhiloxCounter PhiloxDraw(uint64_t seed, uint64_t sequence_index, uint64_t position);
// Uniform [0, 1) from PhiloxDraw's first two words.
double SamplingUniform(uint64_t seed, uint64_t sequence_index, uint64_t position);

}  // namespace tessera
