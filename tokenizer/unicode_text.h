// Unicode helpers for the tokenizers: lenient UTF-8 decoding that keeps byte offsets,
// general categories (via utf8proc) and the whitespace set the pre-tokenizers use, and
// GPT-2's byte <-> printable-codepoint mapping. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

// One decoded codepoint and where it starts in the source bytes. A byte that does not
// start a valid UTF-8 sequence decodes to U+FFFD covering just that byte, so that every
// input byte belongs to exactly one codepoint and pieces map back to the exact input.
struct CodepointSpan {
  uint32_t cp;
  uint32_t byte_offset;
};

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Decodes `text`; the result has one sentinel entry at the end whose byte_offset is
// text.size() (cp 0), so entry i spans bytes [offset[i], offset[i+1]).
std::vector<CodepointSpan> DecodeUtf8Lenient(std::string_view text);

// Length of the UTF-8 sequence that starts with `lead` (1 for an invalid lead byte).
int Utf8SequenceLength(uint8_t lead);

// Length in bytes of the longest prefix of `bytes` made of complete, valid UTF-8 sequences,
// and whether what follows could still become valid (an incomplete but so far valid tail).
struct Utf8Prefix {
  size_t valid_bytes = 0;
  bool tail_incomplete = false;  // bytes after valid_bytes are a valid but unfinished sequence
};
Utf8Prefix ValidUtf8Prefix(std::string_view bytes);

void AppendUtf8(uint32_t cp, std::string* out);

// General category bit of `cp`: 1u << utf8proc_category(cp) (0..29).
uint32_t CategoryBit(uint32_t cp);

// Category masks for \p{..} classes.
inline constexpr uint32_t kCatLetter = (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5);
inline constexpr uint32_t kCatMark = (1u << 6) | (1u << 7) | (1u << 8);
inline constexpr uint32_t kCatNumber = (1u << 9) | (1u << 10) | (1u << 11);
inline constexpr uint32_t kCatPunct = 0x7Fu << 12;
inline constexpr uint32_t kCatSymbol = 0xFu << 19;
inline constexpr uint32_t kCatSeparator = 0x7u << 23;
inline constexpr uint32_t kCatOther = 1u | (0xFu << 26);

// The whitespace set of the reference pre-tokenizers (\s): ASCII \t\n\v\f\r and space,
// U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool IsUnicodeWhitespace(uint32_t cp);

// GPT-2's reversible mapping of the 256 byte values to printable codepoints.
uint32_t ByteToGpt2Codepoint(uint8_t byte);
// The byte a GPT-2 codepoint stands for, or -1 if `cp` is not one of the 256.
int Gpt2CodepointToByte(uint32_t cp);

}  // namespace tessera
