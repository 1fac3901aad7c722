#include "tokenizer/unicode_text.h"

#include <array>

#include "utf8proc.h"

namespace tessera {

int Utf8SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

namespace {

// Decodes one sequence at `i`; returns its length, or 0 when it is invalid or truncated.
// `truncated` says whether the bytes so far are a valid prefix cut by the end of input.
int DecodeOne(std::string_view s, size_t i, uint32_t* cp, bool* truncated) {
  *truncated = false;
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  int len;
  uint32_t value;
  uint32_t min_value;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, value = b0 & 0x1F, min_value = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, value = b0 & 0x0F, min_value = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, value = b0 & 0x07, min_value = 0x10000;
  } else {
    return 0;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) {
      *truncated = true;
      return 0;
    }
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    value = (value << 6) | (b & 0x3F);
    // Reject overlong / surrogate / out-of-range prefixes as early as the reference decoders.
    if (k == 1) {
      if (len == 3 && ((b0 == 0xE0 && b < 0xA0) || (b0 == 0xED && b > 0x9F))) return 0;
      if (len == 4 && ((b0 == 0xF0 && b < 0x90) || (b0 == 0xF4 && b > 0x8F))) return 0;
    }
  }
  if (value < min_value) return 0;
  *cp = value;
  return len;
}

}  // namespace

std::vector<CodepointSpan> DecodeUtf8Lenient(std::string_view text) {
  std::vector<CodepointSpan> out;
  out.reserve(text.size() + 1);
  size_t i = 0;
  while (i < text.size()) {
    uint32_t cp = 0;
    bool truncated;
    const int len = DecodeOne(text, i, &cp, &truncated);
    if (len == 0) {
      out.push_back({kReplacementChar, static_cast<uint32_t>(i)});
      ++i;
    } else {
      out.push_back({cp, static_cast<uint32_t>(i)});
      i += len;
    }
  }
  out.push_back({0, static_cast<uint32_t>(text.size())});
  return out;
}

Utf8Prefix ValidUtf8Prefix(std::string_view bytes) {
  Utf8Prefix result;
  size_t i = 0;
  while (i < bytes.size()) {
    uint32_t cp;
    bool truncated;
    const int len = DecodeOne(bytes, i, &cp, &truncated);
    if (len == 0) {
      result.tail_incomplete = truncated;
      break;
    }
    i += len;
  }
  result.valid_bytes = i;
  return result;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t CategoryBit(uint32_t cp) {
  if (cp > 0x10FFFF) return 1u;  // Cn
  return 1u << static_cast<int>(utf8proc_category(static_cast<utf8proc_int32_t>(cp)));
}

bool IsUnicodeWhitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

namespace {

struct Gpt2ByteTables {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> from_cp{};  // codepoints 0..323 cover the whole image
  Gpt2ByteTables() {
    from_cp.fill(-1);
    // Printable Latin-1 bytes map to themselves; the rest go to U+0100 upwards in order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Gpt2ByteTables& Tables() {
  static const Gpt2ByteTables tables;
  return tables;
}

}  // namespace

uint32_t ByteToGpt2Codepoint(uint8_t byte) { return Tables().to_cp[byte]; }

int Gpt2CodepointToByte(uint32_t cp) {
  return cp < Tables().from_cp.size() ? Tables().from_cp[cp] : -1;
}

}  // namespace tessera
