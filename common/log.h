/*
 * Logging: one spdlog logger, the only global mutable state in dape.
 *
 * Under mpirun only rank 0 prints at info level unless asked otherwise (set_log_rank); other
 * ranks print warnings and errors, prefixed with their rank, so a failure on any rank is seen.
 */
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace dape {

// Configure the logger. `level` is one of trace|debug|info|warn|error.
void init_logging(const std::string& level = "info");
// Tell the logger which rank this process is and whether this rank should print info lines.
void set_log_rank(int rank, int world_size, bool all_ranks_print);
bool log_is_primary();

}  // namespace dape

#define DAPE_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define DAPE_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define DAPE_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
#define DAPE_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
