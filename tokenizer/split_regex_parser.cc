// SplitRegex::Compile: the recursive-descent parser from pattern text to the node graph.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

// Limits that keep matching bounded in stack depth and, for the repetition of groups,
// away from the classic exponential-backtracking shapes such as (a+)+.
constexpr int kMaxGroupDepth = 32;      // nested ( ... )
constexpr int kMaxRepeatCount = 1000;   // n and m of {n,m}
constexpr int kMaxGroupRepeat = 16;     // m of a repeated multi-codepoint group

}  // namespace

class RegexParser {
 public:
  RegexParser(SplitRegex* re, std::string_view pattern) : re_(re) {
    const auto decoded = DecodeUtf8Lenient(pattern);
    for (size_t i = 0; i + 1 < decoded.size(); ++i) cps_.push_back(decoded[i].cp);
  }

  absl::Status Parse() {
    re_->root_ = ParseAlt();
    if (!error_.empty()) return Error(error_);
    if (pos_ != cps_.size()) return Error("unbalanced ')'");
    for (size_t i = 0; i < re_->nodes_.size(); ++i) ComputeSingleChar(static_cast<int>(i));
    // The matcher recurses once per repetition of a group that is not a single codepoint
    // (single-codepoint repeats run in a loop), so such repeats must be short and bounded.
    for (const Node& node : re_->nodes_) {
      if (node.kind == Kind::kRepeat && !re_->nodes_[node.children[0]].single_char &&
          (node.max < 0 || node.max > kMaxGroupRepeat)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "pre-tokenizer regex \"%s\": a group that is not a single codepoint may repeat at "
            "most {0,%d} times (unbounded repetition of groups is not supported)",
            re_->pattern_, kMaxGroupRepeat));
      }
    }
    const Node& root = re_->nodes_[re_->root_];
    if (root.kind == Kind::kSeq && !root.children.empty()) {
      const Node& first = re_->nodes_[root.children[0]];
      if (first.kind == Kind::kRepeat && first.min >= 1 && first.max < 0 &&
          re_->nodes_[first.children[0]].single_char) {
        re_->leading_run_ = first.children[0];
      }
    }
    return absl::OkStatus();
  }

 private:
  using Node = SplitRegex::Node;
  using Kind = SplitRegex::Kind;
  using CharClass = SplitRegex::CharClass;

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pre-tokenizer regex \"%s\": %s at codepoint %d", re_->pattern_, what, pos_));
  }
  bool AtEnd() const { return pos_ >= cps_.size(); }
  uint32_t Peek(size_t ahead = 0) const {
    return pos_ + ahead < cps_.size() ? cps_[pos_ + ahead] : 0;
  }
  void Fail(const std::string& what) {
    if (error_.empty()) error_ = what;
    pos_ = cps_.size();
  }
  int AddNode(Node node) {
    re_->nodes_.push_back(std::move(node));
    return static_cast<int>(re_->nodes_.size()) - 1;
  }
  int AddClass(CharClass cls) {
    re_->classes_.push_back(std::move(cls));
    Node node;
    node.kind = Kind::kClass;
    node.cls = static_cast<int>(re_->classes_.size()) - 1;
    return AddNode(std::move(node));
  }

  int ParseAlt() {
    std::vector<int> alts{ParseSeq()};
    while (!AtEnd() && Peek() == '|') {
      ++pos_;
      alts.push_back(ParseSeq());
    }
    if (alts.size() == 1) return alts[0];
    Node node;
    node.kind = Kind::kAlt;
    node.children = std::move(alts);
    return AddNode(std::move(node));
  }

  int ParseSeq() {
    std::vector<int> items;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') items.push_back(ParseQuantified());
    if (items.size() == 1) return items[0];
    Node node;
    node.kind = Kind::kSeq;
    node.children = std::move(items);
    return AddNode(std::move(node));
  }

  int ParseNumber() {
    int value = 0;
    bool any = false;
    while (!AtEnd() && Peek() >= '0' && Peek() <= '9') {
      value = value * 10 + static_cast<int>(Peek() - '0');
      ++pos_;
      any = true;
      if (value > kMaxRepeatCount) {
        Fail(absl::StrFormat("repeat count above %d", kMaxRepeatCount));
        return 0;
      }
    }
    if (!any) Fail("expected a number in {}");
    return value;
  }

  int ParseQuantified() {
    const int atom = ParseAtom();
    if (AtEnd()) return atom;
    int min = -1, max = -1;
    const uint32_t c = Peek();
    if (c == '?') {
      min = 0, max = 1, ++pos_;
    } else if (c == '*') {
      min = 0, max = -1, ++pos_;
    } else if (c == '+') {
      min = 1, max = -1, ++pos_;
    } else if (c == '{' && Peek(1) >= '0' && Peek(1) <= '9') {
      ++pos_;
      min = ParseNumber();
      max = min;
      if (Peek() == ',') {
        ++pos_;
        max = Peek() == '}' ? -1 : ParseNumber();
      }
      if (Peek() != '}') Fail("expected '}'");
      ++pos_;
      if (max >= 0 && max < min) Fail("{n,m} with m < n");
    } else {
      return atom;
    }
    if (!AtEnd() && (Peek() == '?' || Peek() == '+')) Fail("lazy/possessive quantifiers");
    Node node;
    node.kind = Kind::kRepeat;
    node.children = {atom};
    node.min = min;
    node.max = max;
    return AddNode(std::move(node));
  }

  int ParseAtom() {
    const uint32_t c = Peek();
    ++pos_;
    switch (c) {
      case '(': {
        Kind kind = Kind::kSeq;
        if (Peek() == '?') {
          if (Peek(1) == ':') {
            pos_ += 2;
          } else if (Peek(1) == '=') {
            kind = Kind::kLookahead, pos_ += 2;
          } else if (Peek(1) == '!') {
            kind = Kind::kNegLookahead, pos_ += 2;
          } else {
            Fail("unsupported group syntax");
            return AddNode(Node{});
          }
        }
        if (++depth_ > kMaxGroupDepth) {
          Fail(absl::StrFormat("groups nested deeper than %d", kMaxGroupDepth));
          return AddNode(Node{});
        }
        const int inner = ParseAlt();
        --depth_;
        if (Peek() != ')') {
          Fail("missing ')'");
          return inner;
        }
        ++pos_;
        if (kind == Kind::kSeq) return inner;
        Node node;
        node.kind = kind;
        node.children = {inner};
        return AddNode(std::move(node));
      }
      case '[':
        return ParseClass();
      case '.': {
        CharClass cls;
        cls.negated = true;
        cls.ranges = {{'\n', '\n'}, {'\r', '\r'}};
        return AddClass(std::move(cls));
      }
      case '^':
      case '$': {
        Node node;
        node.kind = c == '^' ? Kind::kStart : Kind::kEnd;
        return AddNode(std::move(node));
      }
      case '\\': {
        CharClass cls;
        ParseEscape(&cls, false);
        return AddClass(std::move(cls));
      }
      case ')':
      case '*':
      case '+':
      case '?':
        Fail("misplaced metacharacter");
        return AddNode(Node{});
      default: {
        CharClass cls;
        cls.ranges = {{c, c}};
        return AddClass(std::move(cls));
      }
    }
  }

  // After a backslash: adds what the escape denotes to `cls` (a class being built, or a
  // fresh one for an escape outside brackets). Returns the literal codepoint when the
  // escape is a single character (usable as a range end), else -1.
  int64_t ParseEscape(CharClass* cls, bool in_class) {
    if (AtEnd()) {
      Fail("trailing backslash");
      return -1;
    }
    const uint32_t e = Peek();
    ++pos_;
    uint32_t literal;
    switch (e) {
      case 's': cls->space = true; return -1;
      case 'S':
        if (!in_class) {
          cls->space = true, cls->negated = true;
        } else {
          cls->not_space = true;
        }
        return -1;
      case 'd': cls->ranges.push_back({'0', '9'}); return -1;
      case 'p': {
        if (Peek() != '{') {
          Fail("expected '{' after \\p");
          return -1;
        }
        ++pos_;
        std::string name;
        while (!AtEnd() && Peek() != '}') name.push_back(static_cast<char>(Peek())), ++pos_;
        if (AtEnd()) {
          Fail("missing '}' after \\p{");
          return -1;
        }
        ++pos_;
        const uint32_t bits = CategoryBits(name);
        if (bits == 0) Fail("unsupported category \\p{" + name + "}");
        cls->cats |= bits;
        return -1;
      }
      case 'r': literal = '\r'; break;
      case 'n': literal = '\n'; break;
      case 't': literal = '\t'; break;
      case 'f': literal = '\f'; break;
      case 'v': literal = '\v'; break;
      default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
          Fail("unsupported escape");
          return -1;
        }
        literal = e;
    }
    cls->ranges.push_back({literal, literal});
    return literal;
  }

  static uint32_t CategoryBits(const std::string& name) {
    if (name == "L") return kCatLetter;
    if (name == "N") return kCatNumber;
    if (name == "P") return kCatPunct;
    if (name == "S") return kCatSymbol;
    if (name == "M") return kCatMark;
    if (name == "Z") return kCatSeparator;
    if (name == "C") return kCatOther;
    static constexpr const char* kTwoLetter[] = {
        "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
        "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
    for (int i = 0; i < 30; ++i) {
      if (name == kTwoLetter[i]) return 1u << i;
    }
    return 0;
  }

  int ParseClass() {
    CharClass cls;
    if (Peek() == '^') cls.negated = true, ++pos_;
    bool first = true;
    while (!AtEnd() && (Peek() != ']' || first)) {
      first = false;
      uint32_t lo = Peek();
      ++pos_;
      if (lo == '\\') {
        const int64_t lit = ParseEscape(&cls, true);
        if (lit < 0) continue;
        cls.ranges.pop_back();
        lo = static_cast<uint32_t>(lit);
      }
      if (Peek() == '-' && Peek(1) != ']' && pos_ + 1 < cps_.size()) {
        ++pos_;
        uint32_t hi = Peek();
        ++pos_;
        if (hi == '\\') {
          CharClass tmp;
          const int64_t lit = ParseEscape(&tmp, true);
          if (lit < 0) {
            Fail("bad range end");
            break;
          }
          hi = static_cast<uint32_t>(lit);
        }
        if (hi < lo) Fail("reversed range");
        cls.ranges.push_back({lo, hi});
      } else {
        cls.ranges.push_back({lo, lo});
      }
    }
    if (Peek() != ']') Fail("missing ']'");
    ++pos_;
    return AddClass(std::move(cls));
  }

  // A node is single-char when it is a class, an alternation of single-char nodes, or a
  // sequence of lookaheads over single-char nodes followed by exactly one single-char node.
  bool ComputeSingleChar(int index) {
    Node& node = re_->nodes_[index];
    switch (node.kind) {
      case Kind::kClass:
        node.single_char = true;
        break;
      case Kind::kAlt: {
        bool all = true;
        for (int child : node.children) all = all && ComputeSingleChar(child);
        node.single_char = all;
        break;
      }
      case Kind::kSeq: {
        bool ok = !node.children.empty();
        for (size_t i = 0; ok && i < node.children.size(); ++i) {
          const int child = node.children[i];
          const Kind kind = re_->nodes_[child].kind;
          if (i + 1 < node.children.size()) {
            ok = (kind == Kind::kLookahead || kind == Kind::kNegLookahead) &&
                 ComputeSingleChar(re_->nodes_[child].children[0]);
          } else {
            ok = ComputeSingleChar(child);
          }
        }
        re_->nodes_[index].single_char = ok;
        break;
      }
      default:
        break;
    }
    return re_->nodes_[index].single_char;
  }

  SplitRegex* re_;
  std::vector<uint32_t> cps_;
  size_t pos_ = 0;
  int depth_ = 0;  // current ( ... ) nesting
  std::string error_;
};

absl::StatusOr<SplitRegex> SplitRegex::Compile(std::string_view pattern) {
  SplitRegex re;
  re.pattern_ = std::string(pattern);
  RegexParser parser(&re, pattern);
  if (absl::Status status = parser.Parse(); !status.ok()) return status;
  return re;
}

}  // namespace tessera
