// MappedFile: a released range reads back from the file unchanged (the checkpoint loader releases
// each piece after copying it and may read it again for another box).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <string>

#include "common/file_util.h"

namespace dape {
namespace {

std::string pattern(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

TEST(MappedFile, ReleasedRangesReadBackFromTheFile) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const std::string contents = pattern(5 * page + 123);
  const std::string path = ::testing::TempDir() + "mapped_file_release.bin";
  write_file_atomic(path, contents);
  MappedFile f(path);
  ASSERT_EQ(f.size(), contents.size());
  auto same = [&] { return std::string(reinterpret_cast<const char*>(f.data()), f.size()); };
  ASSERT_EQ(same(), contents);
  f.release(page + 17, 2 * page);  // unaligned at both ends
  EXPECT_EQ(same(), contents);
  f.release(4 * page, 10 * page);  // past the end of the file
  EXPECT_EQ(same(), contents);
  f.release(0, f.size());
  EXPECT_EQ(same(), contents);
  f.release(f.size(), 1);  // empty ranges are no-ops
  f.release(0, 0);
  EXPECT_EQ(same(), contents);
}

}  // namespace
}  // namespace dape
