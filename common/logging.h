// spdlog set-up shared by the binaries: one pattern, a level named in the config or a flag.
#ifndef PICE_COMMON_LOGGING_H_
#define PICE_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace pice {

// Sets the default logger (stderr) and its level: one of trace, debug, info, warn, error,
// off. `format` text: "<time> <level> <message>"; json: one object per line,
//   {"time":"2026-12-06T18:09:45.123+0000","level":"info","node":"edge-1",
//    "request_id":"6b7f548741edb2e9","msg":"expand 6b7f548741edb2e9: point 0: ..."}
// (request_id when the message is about one query or node call). INVALID_ARGUMENT for
// another level or format.
absl::Status InitLogging(const std::string& node_name, const std::string& level = "info",
                         const std::string& format = "text");

}  // namespace pice

#endif  // PICE_COMMON_LOGGING_H_
