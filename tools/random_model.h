// `--model random:SHAPE[:DTYPE[:LAYERS]]` (e.g. random:llama-3-8b:bf16, random:tiny:q4_0:1):
// the commands that open a model through OpenModelSession (generate, serve, the batch and
// replica paths) synthesize a random-weight model of that shape (model/synthetic_model.h,
// seed 0, dtype bf16 unless given) into a temporary file under $TMPDIR, open it, and remove
// the file as soon as the model is loaded (the mapping keeps the bytes alive). Called from
// one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/synthetic_model.h"

namespace tessera {

inline constexpr std::string_view kRandomModelPrefix = "random:";

// True when `model` starts with "random:".
bool IsRandomModel(std::string_view model);

// The synthesis a random:... argument asks for; INVALID_ARGUMENT naming --model and listing
// the known shapes or dtypes otherwise.
absl::StatusOr<SynthesisOptions> ParseRandomModel(std::string_view model);

// A file that is removed when this object goes away.
class TempModelFile {
 public:
  explicit TempModelFile(std::string path) : path_(std::move(path)) {}
  TempModelFile(const TempModelFile&) = delete;
  TempModelFile& operator=(const TempModelFile&) = delete;
  ~TempModelFile();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// RESOURCE_EXHAUSTED naming `path` when its file system has less than `bytes` (plus 1%)
// free; OK when that cannot be told.
absl::Status CheckFreeSpace(const std::string& path, int64_t bytes);

// Parses `model` and writes the model to a fresh temporary .gguf (progress bar on stderr
// when `progress_bar`). INVALID_ARGUMENT from ParseRandomModel; INTERNAL naming the file on
// I/O failure or RESOURCE_EXHAUSTED when $TMPDIR lacks the space (nothing is left behind).
absl::StatusOr<std::unique_ptr<TempModelFile>> SynthesizeTempModel(std::string_view model,
                                                                   bool progress_bar);

}  // namespace tessera
