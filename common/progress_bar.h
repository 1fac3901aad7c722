// A progress bar on stderr for long work (downloads, model loading).
// On a terminal it redraws one line; otherwise it prints a line at each 25% so that logs
// stay short. Not thread-safe: one thread updates it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tessera {

class ProgressBar {
 public:
  // `total` in `unit`s (e.g. bytes); `label` is printed before the bar.
  ProgressBar(std::string label, int64_t total, bool enabled = true);
  ~ProgressBar();  // finishes the line if Done() was not called

  void Update(int64_t done);
  void Done();

 private:
  void Draw(bool final);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  int last_quarter_ = -1;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace tessera
