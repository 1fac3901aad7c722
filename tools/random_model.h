// `--model random:SHAPE[:DTYPE[:LAYERS]]` (tools/random_model_spec.h): the commands that open
// a model's weights (generate, serve, the batch and replica paths, tessera-worker, the
// benchmarks) synthesize a random-weight model of that shape (model/synthetic_model.h,
// seed 0, dtype bf16 unless given) into a temporary file under $TMPDIR, open it, and remove
// the file as soon as the model is loaded (the mapping keeps the bytes alive). Called from
// one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/synthetic_model.h"
#include "tools/random_model_spec.h"

namespace tessera {

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

// The file a model argument names: formats/model_locator.h's ResolveModelPath for a path or
// "default"; for random:..., a temporary file synthesized now (SynthesizeTempModel) that
// *temp owns (reset it once the file is mapped). Errors as those two.
absl::StatusOr<std::string> ModelFilePath(std::string_view model, bool progress_bar,
                                          std::unique_ptr<TempModelFile>* temp);

}  // namespace tessera
