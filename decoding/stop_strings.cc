#include "decoding/stop_strings.h"

#include <algorithm>
#include <utility>

namespace tessera {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::optional<size_t> StopStringMatcher::FindFirst(std::string_view text,
                                                   const std::vector<std::string>& stops) {
  std::optional<size_t> first;
  for (const std::string& stop : stops) {
    const size_t at = text.find(stop);
    if (at != std::string_view::npos && (!first.has_value() || at < *first)) first = at;
  }
  return first;
}

StopStringMatcher::Result StopStringMatcher::Feed(std::string_view piece) {
  Result out;
  if (stopped_) return out;
  pending_.append(piece);
  if (const std::optional<size_t> at = FindFirst(pending_, stops_); at.has_value()) {
    out.text = pending_.substr(0, *at);
    out.stopped = stopped_ = true;
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    const size_t max = std::min(stop.size() - 1, pending_.size());
    for (size_t k = max; k > hold; --k) {
      if (std::string_view(pending_).substr(pending_.size() - k) ==
          std::string_view(stop).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  out.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace tessera
