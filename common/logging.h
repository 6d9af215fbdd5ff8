// spdlog set-up shared by the binaries: one pattern, a level named in the config or a flag.
#ifndef PICE_COMMON_LOGGING_H_
#define PICE_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace pice {

// Sets the default logger's pattern ("<time> <level> <node> <message>", to stderr) and
// level: one of trace, debug, info, warn, error, off. INVALID_ARGUMENT for another level.
absl::Status InitLogging(const std::string& node_name, const std::string& level = "info");

}  // namespace pice

#endif  // PICE_COMMON_LOGGING_H_
