// `tessera synthesize --shape NAME --output FILE.gguf`: writes a random-weight model in a named
// shape (model/synthetic_model.h) with a synthetic tokenizer, so that every other command can
// run at a real model's size where its weights cannot be fetched. A progress bar goes to
// stderr, one summary line to stdout. `--list` prints the known shapes.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "absl/strings/str_format.h"
#include "common/progress_bar.h"
#include "formats/model_shapes.h"
#include "model/synthetic_model.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/random_model.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "synthesize";

struct SynthesizeOptions {
  std::string shape;
  std::string dtype = "bf16";
  uint64_t seed = 0;
  int64_t layers = 0;
  std::string output;
  int threads = 0;
  bool list = false;
};

// "134.5M" / "8.03B".
std::string Count(int64_t n) {
  const double v = static_cast<double>(n);
  return v >= 1e9 ? absl::StrFormat("%.2fB", v / 1e9) : absl::StrFormat("%.1fM", v / 1e6);
}

void PrintShapes() {
  std::printf("%-14s %10s %7s %7s %6s %6s  %s\n", "shape", "params", "layers", "hidden",
              "heads", "kv", "copies");
  for (const ModelShape& s : KnownModelShapes()) {
    const ModelConfig& c = s.config;
    std::printf("%-14s %10s %7lld %7lld %6lld %6lld  %s\n", s.name.c_str(),
                Count(ParameterCount(c)).c_str(),
                static_cast<long long>(c.num_layers), static_cast<long long>(c.hidden_size),
                static_cast<long long>(c.num_heads), static_cast<long long>(c.num_kv_heads),
                s.description.c_str());
  }
}

int RunSynthesize(const SynthesizeOptions& o) {
  if (o.list) {
    PrintShapes();
    return kExitOk;
  }
  if (o.shape.empty()) return Fail(kName, "--shape is required (or --list)", kExitUsage);
  if (o.output.empty()) return Fail(kName, "--output is required", kExitUsage);
  SynthesisOptions s;
  auto shape = FindModelShape(o.shape);
  if (!shape.ok()) {
    return Fail(kName, absl::StrFormat("--shape: %s", shape.status().message()), kExitUsage);
  }
  s.shape = *std::move(shape);
  auto dtype = DTypeFromName(o.dtype);
  if (!dtype.ok() || !CanSynthesize(*dtype)) {
    return Fail(kName,
                absl::StrFormat("--dtype: cannot synthesize '%s' weights (supported: %s)",
                                o.dtype, SynthesisDTypeNames()),
                kExitUsage);
  }
  s.dtype = *dtype;
  s.seed = o.seed;
  s.layers = o.layers;
  s.num_threads = o.threads;
  auto config = SynthesizedConfig(s);
  if (!config.ok()) {
    return Fail(kName, absl::StrFormat("--shape %s: %s", o.shape, config.status().message()),
                kExitUsage);
  }
  auto total = SynthesizedTensorBytes(s);
  if (!total.ok()) return FailStatus(kName, total.status());

  // Written under a temporary name and renamed, so that FILE is either whole or absent.
  const std::string partial = o.output + ".partial";
  if (absl::Status space = CheckFreeSpace(o.output, *total); !space.ok()) {
    return Fail(kName, absl::StrFormat("--output %s", space.message()), kExitFailure);
  }
  const auto start = std::chrono::steady_clock::now();
  absl::Status written;
  {
    ProgressBar bar(absl::StrFormat("synthesizing %s %s", o.shape, DTypeName(s.dtype)), *total);
    written = SynthesizeModel(s, partial, [&bar](int64_t done, int64_t all) {
      if (done < all) bar.Update(done);  // Done() draws the last state once
    });
    if (written.ok()) bar.Done();
  }
  std::error_code ec;
  if (written.ok()) {
    std::filesystem::rename(partial, o.output, ec);
    if (ec) {
      written = absl::InternalError(
          absl::StrFormat("cannot rename %s to %s: %s", partial, o.output, ec.message()));
    }
  }
  if (!written.ok()) {
    std::filesystem::remove(partial, ec);
    return Fail(kName, absl::StrFormat("--output %s: %s", o.output, written.message()),
                kExitFailure);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto bytes = std::filesystem::file_size(o.output, ec);
  std::printf("wrote %s: %s, %lld layers, %s, %s parameters, %.2f GB in %.1f s\n",
              o.output.c_str(), o.shape.c_str(), static_cast<long long>(config->num_layers),
              std::string(DTypeName(s.dtype)).c_str(),
              Count(ParameterCount(*config)).c_str(),
              ec ? 0.0 : static_cast<double>(bytes) / 1e9, secs);
  return kExitOk;
}

}  // namespace

Command AddSynthesizeCommand(CLI::App& root) {
  auto o = std::make_shared<SynthesizeOptions>();
  CLI::App* app = root.add_subcommand(
      "synthesize", "Write a random-weight GGUF model in a named shape (see --list)");
  app->add_option("--shape", o->shape, "Model shape, e.g. smollm2-135m or llama-3-8b");
  app->add_option("--dtype", o->dtype,
                  "Weight type: f32, f16, bf16, q8_0, q5_0, q5_1, q4_0 or q4_1 (norms stay f32)")
      ->capture_default_str();
  app->add_option("--seed", o->seed, "Seed of the weights (same seed, same bytes)")
      ->capture_default_str();
  app->add_option("--layers", o->layers, "Number of layers instead of the shape's")
      ->check(CLI::PositiveNumber);
  app->add_option("--output,-o", o->output, "GGUF file to write");
  app->add_option("--threads", o->threads, "Generation threads (0: all hardware threads)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_flag("--list", o->list, "Print the known shapes and exit");
  return {app, [o] { return RunSynthesize(*o); }};
}

}  // namespace tessera
