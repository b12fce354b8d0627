#include "common/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "common/log.h"

namespace dape {

std::string si_format(double v) {
  const char* prefixes[] = {"", " k", " M", " G", " T"};
  int i = 0;
  while (std::fabs(v) >= 1000.0 && i < 4) {
    v /= 1000.0;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f}", v) : fmt::format("{:.2f}{}", v, prefixes[i]);
}

std::string duration_format(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto total = static_cast<int64_t>(s + 0.5);
  int64_t h = total / 3600, m = (total % 3600) / 60, sec = total % 60;
  if (h > 0) return fmt::format("{}h{:02d}m", h, m);
  if (m > 0) return fmt::format("{}m{:02d}s", m, sec);
  return fmt::format("{}s", sec);
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, double log_seconds,
                         int64_t initial)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      initial_(initial),
      log_seconds_(log_seconds),
      tty_(::isatty(STDERR_FILENO) == 1),
      enabled_(log_is_primary()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (enabled_ && tty_ && !finished_ && last_width_ > 0) std::fputc('\n', stderr);
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string ProgressBar::render(int64_t done, const std::string& detail) const {
  double t = elapsed_seconds();
  double rate = t > 0 ? (done - initial_) / t : 0;
  std::string s = label_ + " ";
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done) / total_);
    constexpr int kWidth = 24;
    int fill = static_cast<int>(frac * kWidth);
    s += fmt::format("[{:#<{}}{:.<{}}] ", "", fill, "", kWidth - fill);
    s += fmt::format("{:5.1f}% {}/{} {}", 100 * frac, si_format(done), si_format(total_), unit_);
    double eta = rate > 0 ? (total_ - done) / rate : NAN;
    s += fmt::format(" | {} {}/s | {} elapsed, ETA {}", si_format(rate), unit_, duration_format(t),
                     done >= total_ ? "0s" : duration_format(eta));
  } else {
    s += fmt::format("{} {} | {} {}/s | {}", si_format(done), unit_, si_format(rate), unit_,
                     duration_format(t));
  }
  if (!detail.empty()) s += " | " + detail;
  return s;
}

void ProgressBar::update(int64_t done, const std::string& detail) {
  done_ = done;
  if (!enabled_ || finished_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_) {
    if (since < 0.2) return;
    std::string line = render(done, detail);
    size_t w = line.size();
    if (w < last_width_) line += std::string(last_width_ - w, ' ');
    std::fprintf(stderr, "\r%s", line.c_str());
    std::fflush(stderr);
    last_width_ = w;
  } else {
    if (since < log_seconds_) return;
    std::fprintf(stderr, "%s\n", render(done, detail).c_str());
    std::fflush(stderr);
  }
  last_draw_ = now;
}

void ProgressBar::finish(const std::string& detail) {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::string line = render(total_ > 0 ? total_ : done_, detail);
  if (tty_) {
    if (line.size() < last_width_) line += std::string(last_width_ - line.size(), ' ');
    std::fprintf(stderr, "\r%s\n", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace dape
