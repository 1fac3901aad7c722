#include "formats/model_locator.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_format.h"

namespace tessera {

std::string CacheDir() {
  if (const char* env = std::getenv("TESSERA_CACHE"); env != nullptr && *env != '\0') return env;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.cache/tessera";
}

absl::StatusOr<std::string> ResolveModelPath(std::string_view model) {
  namespace fs = std::filesystem;
  if (model.empty()) return absl::InvalidArgumentError("--model: empty model name or path");
  if (model == kDefaultModelName) {
    const std::string path = absl::StrFormat("%s/models/%s", CacheDir(), kDefaultModelFile);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return absl::NotFoundError(absl::StrFormat(
          "--model default: %s is not there yet; fetch it with `python3 scripts/fetch_model.py` "
          "(or run scripts/setup.sh)", path));
    }
    return path;
  }
  std::error_code ec;
  if (!fs::exists(std::string(model), ec)) {
    return absl::NotFoundError(absl::StrFormat("--model: no such file or directory: %s", model));
  }
  return std::string(model);
}

}  // namespace tessera
