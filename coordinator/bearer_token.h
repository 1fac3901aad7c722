// The bearer-token check both front ends share (gRPC metadata, HTTP header).
#pragma once

#include <string>
#include <string_view>

namespace tessera {

// True when `header` is exactly "Bearer <token>". Constant time in the expected length:
// no early exit on the first differing byte.
inline bool BearerTokenMatches(std::string_view header, std::string_view token) {
  const std::string expected = std::string("Bearer ") + std::string(token);
  unsigned char diff = header.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(expected[i] ^ (i < header.size() ? header[i] : 0));
  }
  return diff == 0;
}

}  // namespace tessera
