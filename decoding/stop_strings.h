// Stop strings on generated text (transformers' `stop_strings`, OpenAI's `stop`), with
// streaming hold-back: text is released only once it can no longer be the start of a stop
// string, so a client never sees part of one. The stop string itself is not part of the
// output. Works on bytes (UTF-8 text in, UTF-8 text out when pieces are whole characters).
//
// Not thread-safe; one matcher per generated sequence.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

class StopStringMatcher {
 public:
  // `stops` must be non-empty strings (GenerationConfig::Validate checks them).
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string completed; nothing more will be emitted
  };
  // Adds the next piece of generated text. After `stopped`, further calls return nothing.
  Result Feed(std::string_view piece);
  // The text held back, once generation ends without a stop string.
  std::string Flush();

  bool stopped() const { return stopped_; }
  bool empty() const { return stops_.empty(); }

  // Where the first stop string starts in `text`, if one occurs.
  static std::optional<size_t> FindFirst(std::string_view text,
                                         const std::vector<std::string>& stops);

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace tessera
