#include "coordinator/stop_text.h"

#include <utility>

#include "absl/status/statusor.h"
#include "decoding/stop_strings.h"

namespace tessera {

std::function<bool(std::span<const int32_t> generated)> StopsAtText(
    const Tokenizer* tokenizer, std::vector<std::string> stops) {
  return [tokenizer, stops = std::move(stops)](std::span<const int32_t> ids) {
    const absl::StatusOr<std::string> text = tokenizer->Decode(ids);
    return text.ok() && StopStringMatcher::FindFirst(*text, stops).has_value();
  };
}

void TrimAtStopString(const std::vector<std::string>& stops, std::string& text) {
  if (auto at = StopStringMatcher::FindFirst(text, stops); at.has_value()) text.resize(*at);
}

}  // namespace tessera
