// CHECK for broken invariants (never for user input: that gets an absl::Status).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace tessera::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond,
                                     const char* msg) {
  std::fprintf(stderr, "%s:%d: CHECK failed: %s %s\n", file, line, cond, msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}
}  // namespace tessera::internal

#define TESSERA_CHECK(cond)                                                     \
  do {                                                                          \
    if (!(cond)) ::tessera::internal::CheckFailed(__FILE__, __LINE__, #cond, nullptr); \
  } while (0)
#define TESSERA_CHECK_MSG(cond, msg)                                            \
  do {                                                                          \
    if (!(cond)) ::tessera::internal::CheckFailed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)
