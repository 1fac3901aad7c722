#include "tokenizer/special_token_matcher.h"

#include <algorithm>

namespace tessera {

SpecialTokenMatcher::SpecialTokenMatcher(const Vocabulary& vocab) : vocab_(&vocab) {
  for (size_t id = 0; id < vocab.types.size(); ++id) {
    const TokenType type = vocab.types[id];
    if (type != TokenType::kControl && type != TokenType::kUserDefined &&
        type != TokenType::kUnknown) {
      continue;
    }
    const std::string& text = vocab.tokens[id];
    if (text.empty()) continue;
    by_first_byte_[static_cast<uint8_t>(text[0])].push_back(static_cast<int32_t>(id));
  }
  for (auto& ids : by_first_byte_) {
    std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
      return vocab.tokens[a].size() > vocab.tokens[b].size();
    });
  }
}

std::vector<TextFragment> SpecialTokenMatcher::Partition(std::string_view text,
                                                         bool parse_special) const {
  std::vector<TextFragment> out;
  size_t raw_begin = 0;
  size_t i = 0;
  while (i < text.size()) {
    int32_t found = -1;
    for (int32_t id : by_first_byte_[static_cast<uint8_t>(text[i])]) {
      if (!parse_special && vocab_->types[id] != TokenType::kUserDefined) continue;
      const std::string& token = vocab_->tokens[id];
      if (text.compare(i, token.size(), token) == 0) {
        found = id;
        break;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    if (i > raw_begin) out.push_back({text.substr(raw_begin, i - raw_begin), -1});
    out.push_back({std::string_view(), found});
    i += vocab_->tokens[found].size();
    raw_begin = i;
  }
  if (raw_begin < text.size()) out.push_back({text.substr(raw_begin), -1});
  return out;
}

}  // namespace tessera
