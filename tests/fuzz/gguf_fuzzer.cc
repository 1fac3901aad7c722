// libFuzzer target: GgufFile::Parse on arbitrary bytes, then every accessor on what it
// accepted. A crash, sanitizer report or out-of-bounds read is a bug; a Status is fine.
#include <cstddef>
#include <cstdint>

#include "formats/gguf_reader.h"
#include "formats/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Parse("fuzz.gguf", data, size);
  if (!file.ok()) return 0;
  const GgufFile& f = **file;
  for (const auto& [key, value] : f.metadata()) {
    (void)value.DebugString();
    (void)f.GetString(key);
    (void)f.GetInt(key);
    (void)f.GetFloat(key);
    (void)f.GetBool(key);
    (void)f.GetStringArray(key);
    (void)f.GetIntArray(key);
    (void)f.GetFloatArray(key);
  }
  // Every accepted tensor must lie inside the input: touch its first and last byte.
  volatile uint8_t sink = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    if (f.FindTensor(t.name) != &t) __builtin_trap();
    if (t.num_bytes > 0) {
      const auto* p = static_cast<const uint8_t*>(t.view.data);
      sink = sink ^ p[0] ^ p[t.num_bytes - 1];
    }
    if (t.view.NumBytes() != t.num_bytes) __builtin_trap();
  }
  (void)ModelConfigFromGguf(f);
  return 0;
}
