#include "core/train/metrics.h"

#include <cerrno>
#include <cstring>
#include <sstream>

#include "common/check.h"
#include "common/file_util.h"

namespace dape {

namespace {

// The value of the top-level "step" field of one JSON line, or -1.
int64_t step_of(const std::string& line) {
  const auto k = line.find("\"step\":");
  if (k == std::string::npos) return -1;
  return std::strtoll(line.c_str() + k + 7, nullptr, 10);
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) : path_(path) {
  std::string kept;
  if (keep_through_step >= 0 && path_exists(path)) {
    std::istringstream in(read_file(path));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (step_of(line) <= keep_through_step) kept += line + "\n";
    }
  }
  write_file_atomic(path, kept);
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) fail("cannot open '{}' for appending: {}", path, std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

MetricsLog::MetricsLog(MetricsLog&& o) noexcept {
  *this = std::move(o);
}

MetricsLog& MetricsLog::operator=(MetricsLog&& o) noexcept {
  if (this != &o) {
    if (f_) std::fclose(f_);
    path_ = std::move(o.path_);
    f_ = o.f_;
    o.f_ = nullptr;
  }
  return *this;
}

void MetricsLog::write(const std::string& json_object) {
  if (path_.empty()) return;  // the log of a rank that does not write
  DAPE_CHECK(f_, "metrics log is not open");
  if (std::fprintf(f_, "%s\n", json_object.c_str()) < 0 || std::fflush(f_) != 0)
    fail("cannot write to '{}': {}", path_, std::strerror(errno));
}

}  // namespace dape
