#include "decoding/philox.h"

namespace tessera {
namespace {

constexpr uint32_t kMul0 = 0xD2511F53;
constexpr uint32_t kMul1 = 0xCD9E8D57;
constexpr uint32_t kWeyl0 = 0x9E3779B9;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85;  // sqrt(3) - 1

inline void MulHiLo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

inline PhiloxCounter Round(const PhiloxCounter& c, const PhiloxKey& k) {
  uint32_t hi0, lo0, hi1, lo1;
  MulHiLo(kMul0, c[0], hi0, lo0);
  MulHiLo(kMul1, c[2], hi1, lo1);
  return {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
}

}  // namespace

PhiloxCounter Philox4x32(PhiloxCounter counter, PhiloxKey key, int rounds) {
  for (int r = 0; r < rounds; ++r) {
    if (r > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    counter = Round(counter, key);
  }
  return counter;
}

float U01Float(uint32_t x) {
  constexpr float kFactor = 1.0f / 4294967296.0f;
  constexpr float kHalf = 0.5f * kFactor;
  return static_cast<float>(x) * kFactor + kHalf;
}

double U01Double(uint32_t x) {
  constexpr double kFactor = 1.0 / 4294967296.0;
  return static_cast<double>(x) * kFactor + 0.5 * kFactor;
}

double Uniform53(uint32_t hi, uint32_t lo) {
  const uint64_t bits = (static_cast<uint64_t>(hi) << 32 | lo) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

PhiloxCounter PhiloxDraw(uint64_t seed, uint64_t sequence_index, uint64_t position) {
  const PhiloxCounter counter = {
      static_cast<uint32_t>(position), static_cast<uint32_t>(position >> 32),
      static_cast<uint32_t>(sequence_index), static_cast<uint32_t>(sequence_index >> 32)};
  const PhiloxKey key = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  return Philox4x32(counter, key);
}

double SamplingUniform(uint64_t seed, uint64_t sequence_index, uint64_t position) {
  const PhiloxCounter r = PhiloxDraw(seed, sequence_index, position);
  return Uniform53(r[0], r[1]);
}

}  // namespace tessera
