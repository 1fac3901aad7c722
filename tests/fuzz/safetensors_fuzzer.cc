// libFuzzer target: SafetensorsFile::Parse on arbitrary bytes; accepted tensors must lie
// inside the input.
#include <cstddef>
#include <cstdint>

#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Parse("fuzz.safetensors", data, size);
  if (!file.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const SafetensorsTensor& t : (*file)->tensors()) {
    if ((*file)->Find(t.name) != &t) __builtin_trap();
    const int64_t n = t.view.NumBytes();
    if (n != static_cast<int64_t>(t.end - t.begin)) __builtin_trap();
    if (n > 0) {
      const auto* p = static_cast<const uint8_t*>(t.view.data);
      sink = sink ^ p[0] ^ p[n - 1];
    }
  }
  return 0;
}
