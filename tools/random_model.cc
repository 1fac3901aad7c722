#include "tools/random_model.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/progress_bar.h"
#include "common/status_macros.h"
#include "formats/model_shapes.h"

namespace tessera {

bool IsRandomModel(std::string_view model) { return model.starts_with(kRandomModelPrefix); }

absl::StatusOr<SynthesisOptions> ParseRandomModel(std::string_view model) {
  const auto bad = [model](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--model %s: %s (expected random:SHAPE[:DTYPE[:LAYERS]])", model, what));
  };
  if (!IsRandomModel(model)) return bad("not a random: model");
  const std::vector<std::string> parts =
      absl::StrSplit(std::string(model.substr(kRandomModelPrefix.size())), ':');
  if (parts.empty() || parts.size() > 3) return bad("wrong number of fields");
  SynthesisOptions o;
  auto shape = FindModelShape(parts[0]);
  if (!shape.ok()) return bad(std::string(shape.status().message()));
  o.shape = *std::move(shape);
  if (parts.size() >= 2) {
    auto dtype = DTypeFromName(parts[1]);
    if (!dtype.ok() || !CanSynthesize(*dtype)) {
      return bad(absl::StrFormat("cannot synthesize '%s' weights (supported: %s)", parts[1],
                                 SynthesisDTypeNames()));
    }
    o.dtype = *dtype;
  }
  if (parts.size() == 3) {
    int64_t layers = 0;
    if (!absl::SimpleAtoi(parts[2], &layers) || layers <= 0) {
      return bad(absl::StrFormat("layer count '%s' is not a positive integer", parts[2]));
    }
    o.layers = layers;
  }
  if (absl::StatusOr<ModelConfig> c = SynthesizedConfig(o); !c.ok()) {
    return bad(std::string(c.status().message()));
  }
  return o;
}

absl::Status CheckFreeSpace(const std::string& path, int64_t bytes) {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  if (ec) return absl::OkStatus();
  const std::filesystem::space_info space = std::filesystem::space(dir, ec);
  if (ec) return absl::OkStatus();  // e.g. the directory does not exist: the write says so
  const double needed = static_cast<double>(bytes) * 1.01;
  if (static_cast<double>(space.available) < needed) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: needs %.2f GB, %s has %.2f GB free", path, needed / 1e9, dir.string(),
        static_cast<double>(space.available) / 1e9));
  }
  return absl::OkStatus();
}

TempModelFile::~TempModelFile() {
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

absl::StatusOr<std::unique_ptr<TempModelFile>> SynthesizeTempModel(std::string_view model,
                                                                   bool progress_bar) {
  ASSIGN_OR_RETURN(const SynthesisOptions o, ParseRandomModel(model));
  ASSIGN_OR_RETURN(const int64_t total, SynthesizedTensorBytes(o));
  static std::atomic<int> counter{0};
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  auto file = std::make_unique<TempModelFile>(
      (dir / absl::StrFormat("tessera_random_%s_%d_%d.gguf", o.shape.name, getpid(),
                             counter++))
          .string());
  RETURN_IF_ERROR(CheckFreeSpace(file->path(), total));
  ProgressBar bar(absl::StrFormat("synthesizing %s", model), total, progress_bar);
  RETURN_IF_ERROR(SynthesizeModel(o, file->path(), [&bar](int64_t done, int64_t all) {
    if (done < all) bar.Update(done);
  }));
  bar.Done();
  return file;
}

}  // namespace tessera
