#include "common/logging.h"

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace pice {

absl::Status InitLogging(const std::string& node_name, const std::string& level) {
  spdlog::level::level_enum lvl;
  if (level == "trace") lvl = spdlog::level::trace;
  else if (level == "debug") lvl = spdlog::level::debug;
  else if (level == "info") lvl = spdlog::level::info;
  else if (level == "warn") lvl = spdlog::level::warn;
  else if (level == "error") lvl = spdlog::level::err;
  else if (level == "off") lvl = spdlog::level::off;
  else {
    return absl::InvalidArgumentError(absl::StrCat(
        "log level: expected one of trace, debug, info, warn, error, off, got \"", level, "\""));
  }
  // Not registered by name, so that several nodes in one process (pice local) may call this.
  auto logger = std::make_shared<spdlog::logger>(
      node_name.empty() ? "pice" : node_name,
      std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ %v");
  spdlog::set_level(lvl);
  return absl::OkStatus();
}

}  // namespace pice
