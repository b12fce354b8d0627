/*
 * Helpers shared by the unit tests: random inputs, error measures, a central finite-difference
 * gradient checker in double precision, scratch directories, and error-message checks.
 */
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/file_util.h"
#include "common/rng.h"

namespace dape::test {

inline std::vector<double> random_vector(size_t n, uint64_t seed, double lo = -1.0,
                                         double hi = 1.0) {
  Rng r(seed, 17);
  std::vector<double> v(n);
  for (auto& x : v) x = r.uniform(lo, hi);
  return v;
}

template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

template <class A>
double max_abs(const std::vector<A>& a) {
  double m = 0;
  for (auto x : a) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// max |a - b| / max(1, max |b|): the golden files' error measure.
template <class A, class B>
double scaled_error(const std::vector<A>& a, const std::vector<B>& b) {
  return max_abs_diff(a, b) / std::max(1.0, max_abs(b));
}

// Central finite differences of a scalar function of x (double), one coordinate at a time:
// g[i] ≈ (f(x + h e_i) − f(x − h e_i)) / 2h. `loss` may read x freely; x is restored.
inline std::vector<double> finite_difference_gradient(std::vector<double>& x,
                                                      const std::function<double()>& loss,
                                                      double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double fp = loss();
    x[i] = saved - h;
    const double fm = loss();
    x[i] = saved;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// Asserts analytic ≈ numeric: |a − n| ≤ atol + rtol·|n| element-wise, reporting the worst.
inline void expect_gradients_close(const std::vector<double>& analytic,
                                   const std::vector<double>& numeric, double rtol, double atol,
                                   const std::string& what) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  size_t worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < analytic.size(); ++i) {
    double excess = std::fabs(analytic[i] - numeric[i]) - (atol + rtol * std::fabs(numeric[i]));
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  EXPECT_LE(worst_excess, 0.0) << what << ": element " << worst << " analytic " << analytic[worst]
                               << " vs finite difference " << numeric[worst];
}

// Losses by step from a run's metrics.jsonl, as written (%.17g: comparing them is bitwise).
inline std::map<int64_t, std::string> losses_as_written(const std::string& path) {
  std::map<int64_t, std::string> out;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    const auto s = line.find("\"step\":"), l = line.find("\"loss\":");
    if (s == std::string::npos || l == std::string::npos) continue;
    out[std::stoll(line.substr(s + 7))] = line.substr(l + 7, line.find(',', l) - (l + 7));
  }
  return out;
}

// A fresh directory under testing::TempDir(), removed with everything in it at scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = std::filesystem::path(testing::TempDir()) / "dape_test_XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    if (!made) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = made;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return join_path(path_, name); }

 private:
  std::string path_;
};

// Runs `f`, expects dape::Error (or a subclass), and checks that its message contains every
// string in `parts`. Returns the message.
inline std::string expect_error(const std::function<void()>& f,
                                const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
    return msg;
  }
  ADD_FAILURE() << "expected dape::Error";
  return "";
}

// The message of the dape::Error that `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace dape::test
