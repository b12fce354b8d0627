/*
 * Errors.
 *
 * Two kinds, kept apart on purpose:
 *   - dape::Error: the user gave us something we cannot use (a bad config value, a truncated
 *     file, a token id out of range). The message says what and where: file, line or byte offset,
 *     field, the value and the range that was expected. The command line prints it and exits
 *     non-zero; it is never a crash.
 *   - DAPE_CHECK: an internal invariant. If it fires, dape has a bug; the message carries the
 *     source location so the bug can be found.
 * Both throw, so destructors run and partially written outputs are cleaned up.
 */
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace dape {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& what) : std::logic_error(what) {}
};

[[noreturn]] void throw_internal(const char* file, int line, const char* cond,
                                 const std::string& msg);

// Throws dape::Error with a formatted message.
template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dape

#define DAPE_CHECK(cond, ...)                                                                 \
  do {                                                                                        \
    if (!(cond)) ::dape::throw_internal(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)
