// SplitRegex matching: backtracking over the node graph with continuations.
#include "tokenizer/split_regex.h"

#include "tokenizer/unicode_text.h"

namespace tessera {

bool SplitRegex::ClassMatches(int cls_index, uint32_t cp, uint32_t cat) const {
  const CharClass& cls = classes_[cls_index];
  bool in = (cls.cats & cat) != 0;
  if (!in && (cls.space || cls.not_space)) {
    const bool ws = IsUnicodeWhitespace(cp);
    in = (cls.space && ws) || (cls.not_space && !ws);
  }
  if (!in) {
    for (const auto& [lo, hi] : cls.ranges) {
      if (cp >= lo && cp <= hi) {
        in = true;
        break;
      }
    }
  }
  return in != cls.negated;
}

namespace {

// A non-owning reference to a callable bool(size_t): the continuation of the matcher.
class Continuation {
 public:
  template <typename F>
  Continuation(const F& f)  // NOLINT: implicit by design
      : object_(&f), call_([](const void* o, size_t p) { return (*static_cast<const F*>(o))(p); }) {}
  bool operator()(size_t pos) const { return call_(object_, pos); }

 private:
  const void* object_;
  bool (*call_)(const void*, size_t);
};

}  // namespace

class RegexMatcher {
 public:
  RegexMatcher(const SplitRegex& re, const RegexSubject& s) : re_(re), s_(s) {}

  // Whether single-char node `index` matches the codepoint at `pos`.
  bool SingleMatch(int index, size_t pos) const {
    if (pos >= s_.end) return false;
    const SplitRegex::Node& node = re_.nodes_[index];
    switch (node.kind) {
      case SplitRegex::Kind::kClass:
        return re_.ClassMatches(node.cls, s_.cps[pos], s_.cats[pos]);
      case SplitRegex::Kind::kAlt:
        for (int child : node.children) {
          if (SingleMatch(child, pos)) return true;
        }
        return false;
      case SplitRegex::Kind::kSeq:
        for (size_t i = 0; i + 1 < node.children.size(); ++i) {
          const SplitRegex::Node& look = re_.nodes_[node.children[i]];
          const bool hit = SingleMatch(look.children[0], pos);
          if (hit != (look.kind == SplitRegex::Kind::kLookahead)) return false;
        }
        return SingleMatch(node.children.back(), pos);
      default:
        return false;
    }
  }

  bool Match(int index, size_t pos, Continuation k) const {
    const SplitRegex::Node& node = re_.nodes_[index];
    if (node.single_char && node.kind != SplitRegex::Kind::kRepeat) {
      return SingleMatch(index, pos) && k(pos + 1);
    }
    switch (node.kind) {
      case SplitRegex::Kind::kSeq:
        return MatchSeq(node, 0, pos, k);
      case SplitRegex::Kind::kAlt:
        for (int child : node.children) {
          if (Match(child, pos, k)) return true;
        }
        return false;
      case SplitRegex::Kind::kRepeat: {
        const int child = node.children[0];
        if (re_.nodes_[child].single_char) {
          size_t n = 0;
          const size_t max = node.max < 0 ? s_.end - pos : static_cast<size_t>(node.max);
          while (n < max && SingleMatch(child, pos + n)) ++n;
          for (size_t c = n + 1; c-- > static_cast<size_t>(node.min);) {
            if (k(pos + c)) return true;
          }
          return false;
        }
        return MatchRepeat(node, 0, pos, k);
      }
      case SplitRegex::Kind::kLookahead:
      case SplitRegex::Kind::kNegLookahead: {
        const bool hit = Match(node.children[0], pos, [](size_t) { return true; });
        return hit == (node.kind == SplitRegex::Kind::kLookahead) && k(pos);
      }
      case SplitRegex::Kind::kStart:
        return pos == s_.begin && k(pos);
      case SplitRegex::Kind::kEnd:
        return pos == s_.end && k(pos);
      case SplitRegex::Kind::kClass:
        return false;  // handled by the single-char path
    }
    return false;
  }

 private:
  bool MatchSeq(const SplitRegex::Node& node, size_t i, size_t pos, Continuation k) const {
    if (i == node.children.size()) return k(pos);
    return Match(node.children[i], pos,
                 [&](size_t next) { return MatchSeq(node, i + 1, next, k); });
  }

  bool MatchRepeat(const SplitRegex::Node& node, int count, size_t pos, Continuation k) const {
    if (node.max < 0 || count < node.max) {
      const bool matched = Match(node.children[0], pos, [&](size_t next) {
        return next != pos && MatchRepeat(node, count + 1, next, k);
      });
      if (matched) return true;
    }
    return count >= node.min && k(pos);
  }

  const SplitRegex& re_;
  const RegexSubject& s_;
};

bool SplitRegex::Find(const RegexSubject& subject, size_t from, size_t* match_begin,
                      size_t* match_end) const {
  RegexMatcher matcher(*this, subject);
  for (size_t start = from; start < subject.end; ++start) {
    size_t end = start;
    const bool ok = matcher.Match(root_, start, [&](size_t p) {
      if (p == start) return false;
      end = p;
      return true;
    });
    if (ok) {
      *match_begin = start;
      *match_end = end;
      return true;
    }
    if (leading_run_ >= 0) {
      size_t run_end = start;
      while (matcher.SingleMatch(leading_run_, run_end)) ++run_end;
      if (run_end > start + 1) start = run_end - 1;
    }
  }
  return false;
}

}  // namespace tessera
