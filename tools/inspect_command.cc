// `tessera inspect FILE`: a GGUF file's header, metadata (arrays abbreviated) and tensor
// table. Shapes are printed row-major (outermost first), as Tessera's TensorView holds them;
// GGML's ne order is the reverse.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "formats/gguf_reader.h"
#include "formats/model_locator.h"
#include "tools/cli_util.h"
#include "tools/command.h"

namespace tessera {
namespace {

struct InspectOptions {
  std::string file;
  int max_items = 8;
  bool no_tensors = false;
};

int RunInspect(const InspectOptions& o) {
  constexpr std::string_view kName = "inspect";
  auto path = ResolveModelPath(o.file);
  if (!path.ok()) return FailStatus(kName, path.status());
  auto opened = GgufFile::Open(*path);
  if (!opened.ok()) return Fail(kName, std::string(opened.status().message()), kExitFailure);
  const GgufFile& f = **opened;
  std::printf("file: %s\n", f.path().c_str());
  std::printf("gguf version: %u, alignment: %llu, data offset: %llu\n", f.version(),
              static_cast<unsigned long long>(f.alignment()),
              static_cast<unsigned long long>(f.data_offset()));
  std::printf("metadata: %zu keys\n", f.metadata().size());
  for (const auto& [key, value] : f.metadata()) {
    std::printf("  %s: %s = %s\n", key.c_str(), std::string(GgufTypeName(value.type)).c_str(),
                value.DebugString(static_cast<size_t>(o.max_items)).c_str());
  }
  int64_t total = 0;
  for (const GgufTensorInfo& t : f.tensors()) total += t.num_bytes;
  std::printf("tensors: %zu, %lld bytes\n", f.tensors().size(), static_cast<long long>(total));
  if (o.no_tensors) return kExitOk;
  std::printf("  %-32s %-6s %-16s %12s %12s\n", "name", "dtype", "shape", "offset", "bytes");
  for (const GgufTensorInfo& t : f.tensors()) {
    const std::string shape = absl::StrFormat("[%s]", absl::StrJoin(t.view.shape, ", "));
    std::printf("  %-32s %-6s %-16s %12llu %12lld\n", t.name.c_str(),
                std::string(DTypeName(t.dtype)).c_str(), shape.c_str(),
                static_cast<unsigned long long>(t.offset), static_cast<long long>(t.num_bytes));
  }
  return kExitOk;
}

}  // namespace

Command AddInspectCommand(CLI::App& root) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* app = root.add_subcommand("inspect", "Print a GGUF file's metadata and tensors");
  app->add_option("file", o->file, "GGUF file, or 'default'")->required();
  app->add_option("--max-items", o->max_items, "Array items shown per metadata value")
      ->check(CLI::PositiveNumber);
  app->add_flag("--no-tensors", o->no_tensors, "Print only the header and metadata");
  return {app, [o] { return RunInspect(*o); }};
}

}  // namespace tessera
