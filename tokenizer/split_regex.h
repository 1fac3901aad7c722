// A small backtracking regular-expression engine over Unicode codepoints, with the subset
// of syntax that GGUF pre-tokenizer patterns use: alternation, (…), (?:…), lookahead
// (?=…) / (?!…), greedy ?, *, +, {n}, {n,}, {n,m}, character classes with ranges and
// negation, \s \S \d \D \r \n \t \f \v, \p{L} \p{N} \p{P} \p{S} \p{M} \p{Z} \p{C} and
// the two-letter categories (\p{Lu}, …), ., ^ and $. Semantics are ECMAScript's
// leftmost-first (the first alternative that leads to a match wins). \s is the
// pre-tokenizer whitespace set of unicode_text.h.
//
// Cost: repetition of a single codepoint (a class, or an alternation / lookahead sequence
// of classes) runs in a loop, so stack depth depends on the pattern only. Any other group
// may repeat at most {0,16} times (Compile rejects more), which keeps recursion bounded
// and rules out (a+)+-style exponential backtracking; group nesting is limited to 32 and
// {n,m} counts to 1000. Backtracking can still be slow for arbitrary patterns; the
// pre-tokenizer families of pre_tokenizer.h are linear in the input
// (tests/tokenizer/pre_tokenizer_test.cc runs each on long adversarial runs).
//
// A compiled SplitRegex is immutable and may be used from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

// The text a regex runs over: codepoints and their category bits (CategoryBit), with a
// window [begin, end) that ^, $ and lookahead treat as the whole input.
struct RegexSubject {
  const uint32_t* cps = nullptr;
  const uint32_t* cats = nullptr;
  size_t begin = 0;
  size_t end = 0;
};

class SplitRegex {
 public:
  // INVALID_ARGUMENT naming the pattern for syntax outside the supported subset or the
  // limits above.
  static absl::StatusOr<SplitRegex> Compile(std::string_view pattern);

  // Leftmost non-empty match starting at or after `from` inside the subject's window.
  // Returns false when there is none; else sets [*match_begin, *match_end).
  bool Find(const RegexSubject& subject, size_t from, size_t* match_begin,
            size_t* match_end) const;

  const std::string& pattern() const { return pattern_; }

 private:
  friend class RegexParser;
  friend class RegexMatcher;

  struct CharClass {
    bool negated = false;
    bool space = false;      // \s
    bool not_space = false;  // \S inside a class
    uint32_t cats = 0;       // category bits
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive
  };
  enum class Kind { kClass, kSeq, kAlt, kRepeat, kLookahead, kNegLookahead, kStart, kEnd };
  struct Node {
    Kind kind = Kind::kSeq;
    int cls = -1;               // kClass
    std::vector<int> children;  // kSeq, kAlt; kRepeat / lookahead use children[0]
    int min = 0, max = -1;      // kRepeat; max -1 = unbounded
    bool single_char = false;   // always consumes exactly one codepoint, no backtracking
  };

  bool ClassMatches(int cls, uint32_t cp, uint32_t cat) const;

  std::string pattern_;
  std::vector<CharClass> classes_;
  std::vector<Node> nodes_;
  int root_ = -1;
  // When the pattern is "X+ rest" with X single-char: a failed attempt at a position
  // inside a run of X fails at every later position of that run too (each later attempt
  // tries a subset of the same continuations), so Find skips the run. -1 otherwise.
  int leading_run_ = -1;
};

}  // namespace tessera
