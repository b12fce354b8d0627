#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "common/check.h"

namespace dape {
namespace {
bool g_primary = true;
}

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("dape");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%^[%H:%M:%S %L]%$ %v");
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    fail("--log-level: '{}' is not one of trace|debug|info|warn|error|off", level);
  spdlog::set_level(lvl);
}

void set_log_rank(int rank, int world_size, bool all_ranks_print) {
  g_primary = rank == 0;
  if (world_size > 1) {
    spdlog::set_pattern(fmt::format("%^[%H:%M:%S %L rank {}]%$ %v", rank));
    if (!g_primary && !all_ranks_print) spdlog::set_level(spdlog::level::warn);
  }
}

bool log_is_primary() {
  return g_primary;
}

}  // namespace dape
