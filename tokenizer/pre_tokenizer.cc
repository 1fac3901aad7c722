#include "tokenizer/pre_tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

// The regex lists per family, as the reference implementation applies them (its case-
// insensitive "(?i:'s|…)" is already spelled out as classes there).
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr const char* kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kBloom = " ?[^(\\s|.,!?…。，、।۔،)]+";
constexpr const char* kCjk = "[一-龥ࠀ-一가-퟿]+";
// "Upper* lower+ | Upper+ lower*" over letters, as tiktoken-style patterns write it.
constexpr const char* kCaseSplit =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+";
constexpr const char* kCaseSplit2 =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*";
constexpr const char* kContractions = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

bool In(std::string_view value, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (value == n) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<PreTokenizerSpec> PreTokenizerSpecForName(std::string_view pre) {
  PreTokenizerSpec spec;
  spec.name = std::string(pre);
  auto& p = spec.patterns;
  if (pre == "default") {
    p = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else if (In(pre, {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                      "midm-2.0", "lfm2"})) {
    p = {kLlama3};
    spec.ignore_merges = true;
    spec.add_bos_default = true;
  } else if (In(pre, {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe", "chatglm4"})) {
    p = {kLlama3};
  } else if (pre == "deepseek-llm") {
    // Written with \u escapes where a character has a canonical singleton decomposition,
    // so that no editor normalises the ranges.
    p = {"[\r\n]",
         "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-"
         "Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1F7Dᾀ-ᾴᾶ-ᾼ\u1FBEῂ-ῄῆ-ῌῐ-\u1FD3ῖ-\u1FDBῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212A-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-"
         "ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
         "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", kCjk, "\\p{N}+"};
  } else if (In(pre, {"deepseek-v3", "hunyuan-dense"})) {
    p = {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
         "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}"
         "\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
  } else if (pre == "deepseek-coder") {
    p = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"};
  } else if (pre == "falcon") {
    p = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"};
  } else if (In(pre, {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
                      "minerva-7b", "minerva"})) {
    p = {"\\p{N}", kGpt2};
  } else if (In(pre, {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                      "jina-v2-de", "a.x-4.0", "mellum", "jina-v1-en", "jina-v2-code",
                      "roberta-bpe", "mpt", "olmo", "jais", "exaone4", "trillion",
                      "granite-docling"})) {
    p = {kGpt2};
  } else if (In(pre, {"qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen", "kormo", "stablelm2",
                      "megrez", "hunyuan", "grok-2"})) {
    p = {kQwen2};
  } else if (In(pre, {"poro-chat", "poro", "bloom", "gpt3-finnish"})) {
    p = {kBloom};
  } else if (pre == "viking") {
    p = {kBloom, "\\p{N}"};
  } else if (pre == "tekken") {
    p = {absl::StrFormat("%s|%s|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                         kCaseSplit, kCaseSplit2)};
    spec.ignore_merges = true;
    spec.add_bos_default = true;
  } else if (pre == "chameleon") {
    p = {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
         "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", kGpt2};
    spec.add_bos_default = true;
  } else if (In(pre, {"gpt-4o", "llama4", "minimax-m2"})) {
    p = {absl::StrFormat(
        "%s%s?|%s%s?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        kCaseSplit, kContractions, kCaseSplit2, kContractions)};
  } else if (In(pre, {"bailingmoe", "bailingmoe2", "llada-moe"})) {
    p = {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
         "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"};
  } else if (pre == "seed-coder") {
    p = {absl::StrFormat("%s|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|"
                         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                         kContractions)};
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "unsupported tokenizer.ggml.pre \"%s\" (pre-tokenizer family not known)", pre));
  }
  return spec;
}

absl::StatusOr<PreTokenizer> PreTokenizer::Create(const std::vector<std::string>& patterns) {
  PreTokenizer result;
  for (const std::string& pattern : patterns) {
    absl::StatusOr<SplitRegex> re = SplitRegex::Compile(pattern);
    if (!re.ok()) return re.status();
    result.regexes_.push_back(*std::move(re));
  }
  return result;
}

std::vector<std::pair<uint32_t, uint32_t>> PreTokenizer::Split(std::string_view text) const {
  const std::vector<CodepointSpan> decoded = DecodeUtf8Lenient(text);
  const size_t n = decoded.size() - 1;
  std::vector<uint32_t> cps(n), cats(n);
  for (size_t i = 0; i < n; ++i) {
    cps[i] = decoded[i].cp;
    cats[i] = CategoryBit(decoded[i].cp);
  }
  // Pieces as codepoint ranges, refined by each regex in turn.
  std::vector<std::pair<size_t, size_t>> pieces;
  if (n > 0) pieces.push_back({0, n});
  std::vector<std::pair<size_t, size_t>> next;
  for (const SplitRegex& re : regexes_) {
    next.clear();
    for (const auto& [begin, end] : pieces) {
      RegexSubject subject{cps.data(), cats.data(), begin, end};
      size_t pos = begin;
      size_t mb, me;
      while (pos < end && re.Find(subject, pos, &mb, &me)) {
        if (mb > pos) next.push_back({pos, mb});
        next.push_back({mb, me});
        pos = me;
      }
      if (pos < end) next.push_back({pos, end});
    }
    pieces.swap(next);
  }
  std::vector<std::pair<uint32_t, uint32_t>> out;
  out.reserve(pieces.size());
  for (const auto& [begin, end] : pieces) {
    out.push_back({decoded[begin].byte_offset, decoded[end].byte_offset});
  }
  return out;
}

}  // namespace tessera
