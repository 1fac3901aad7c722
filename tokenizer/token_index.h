// Text -> id lookup over a vocabulary's token strings, built once. The index holds views
// into the strings it was built from, which must outlive it. Thread-safe for reads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace tessera {

class TokenIndex {
 public:
  TokenIndex() = default;
  explicit TokenIndex(const std::vector<std::string>& tokens) {
    map_.reserve(tokens.size());
    // On duplicate texts the later id wins, as in the reference loader.
    for (size_t i = 0; i < tokens.size(); ++i) {
      map_[std::string_view(tokens[i])] = static_cast<int32_t>(i);
    }
  }
  // -1 when absent.
  int32_t Find(std::string_view text) const {
    auto it = map_.find(text);
    return it == map_.end() ? -1 : it->second;
  }

 private:
  absl::flat_hash_map<std::string_view, int32_t> map_;
};

}  // namespace tessera
