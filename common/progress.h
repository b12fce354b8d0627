/*
 * Progress display for long work (prepare, eval, training).
 *
 * On a terminal it redraws one status line in place (\r) at most a few times a second; when
 * stderr is a file or pipe (CI, Slurm logs) it prints a plain line at most every `log_seconds`
 * so logs stay readable. Only the primary rank prints. Rate and ETA come from wall time since
 * construction.
 */
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dape {

class ProgressBar {
 public:
  // total <= 0 means unknown (no bar, no ETA). `unit` names what is counted ("tok", "B", "chunk").
  // `initial` is the amount already done before this bar started (a resumed run): it counts
  // towards the bar but not towards the rate.
  ProgressBar(std::string label, int64_t total, std::string unit, double log_seconds = 30.0,
              int64_t initial = 0);
  ~ProgressBar();
  // Sets the amount done; `detail` is appended to the line (e.g. "loss 2.31").
  void update(int64_t done, const std::string& detail = "");
  // Prints the final line (always, also off-terminal) and stops redrawing.
  void finish(const std::string& detail = "");
  double elapsed_seconds() const;

 private:
  std::string render(int64_t done, const std::string& detail) const;
  std::string label_, unit_;
  int64_t total_, initial_;
  double log_seconds_;
  bool tty_, enabled_, finished_ = false;
  int64_t done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  size_t last_width_ = 0;
};

// "1.23 k", "4.56 M": a count with an SI prefix.
std::string si_format(double v);
// "1h02m", "3m05s", "12s".
std::string duration_format(double seconds);

}  // namespace dape
