/*
 * MetricsLog: JSON-lines files in the run directory (metrics.jsonl: one object per training
 * step; eval.jsonl: one object per evaluation), appended and flushed line by line so that a
 * crashed run keeps everything it logged.
 *
 * On resume from step S, lines for steps after S (written by the interrupted run after its last
 * checkpoint) are dropped first, so the file reads as one uninterrupted run.
 */
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace dape {

class MetricsLog {
 public:
  // A log that writes nowhere (on data-parallel ranks other than 0).
  MetricsLog() = default;
  // Opens `path` for appending. If keep_through_step >= 0, existing lines whose "step" exceeds
  // it are removed first; if it is < 0 the file is started afresh.
  MetricsLog(const std::string& path, int64_t keep_through_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  MetricsLog(MetricsLog&& o) noexcept;
  MetricsLog& operator=(MetricsLog&& o) noexcept;

  // Appends one JSON object (no trailing newline) as a line and flushes.
  void write(const std::string& json_object);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

}  // namespace dape
