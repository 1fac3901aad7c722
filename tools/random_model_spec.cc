#include "tools/random_model_spec.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "formats/model_shapes.h"
#include "tokenizer/synthetic_vocab.h"

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

absl::StatusOr<std::unique_ptr<Tokenizer>> RandomModelTokenizer(std::string_view model) {
  ASSIGN_OR_RETURN(const SynthesisOptions o, ParseRandomModel(model));
  ASSIGN_OR_RETURN(const ModelConfig config, SynthesizedConfig(o));
  ASSIGN_OR_RETURN(Vocabulary vocab, SyntheticVocabulary(config.vocab_size));
  return Tokenizer::FromVocabulary(std::move(vocab));
}

}  // namespace tessera
