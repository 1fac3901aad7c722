#include "common/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tessera {

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_) Done();
}

void ProgressBar::Update(int64_t done) {
  done_ = std::clamp<int64_t>(done, 0, total_);
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  } else {
    const int quarter = static_cast<int>(done_ * 4 / total_);
    if (quarter == last_quarter_) return;
    last_quarter_ = quarter;
  }
  last_draw_ = now;
  Draw(false);
}

void ProgressBar::Done() {
  if (finished_) return;
  finished_ = true;
  done_ = total_;
  Draw(true);
}

void ProgressBar::Draw(bool final) {
  if (!enabled_) return;
  constexpr int kWidth = 30;
  const double frac = static_cast<double>(done_) / static_cast<double>(total_);
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(kWidth, ' ');
  for (int i = 0; i < filled; ++i) bar[i] = '=';
  if (filled < kWidth) bar[filled] = '>';
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "%s%s [%s] %3d%% %.1fs%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
               static_cast<int>(frac * 100.0 + 0.5), secs, (final || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace tessera
