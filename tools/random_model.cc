#include "tools/random_model.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_format.h"
#include "common/progress_bar.h"
#include "common/status_macros.h"
#include "formats/model_locator.h"

namespace tessera {

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

absl::StatusOr<std::string> ModelFilePath(std::string_view model, bool progress_bar,
                                          std::unique_ptr<TempModelFile>* temp) {
  if (!IsRandomModel(model)) return ResolveModelPath(model);
  ASSIGN_OR_RETURN(*temp, SynthesizeTempModel(model, progress_bar));
  return (*temp)->path();
}

}  // namespace tessera
