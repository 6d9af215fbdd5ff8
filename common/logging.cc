#include "common/logging.h"

#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace pice {
namespace {

void AppendJsonString(std::string_view s, spdlog::memory_buf_t& out) {
  static const char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out.append(std::string_view("\\\"")); break;
      case '\\': out.append(std::string_view("\\\\")); break;
      case '\n': out.append(std::string_view("\\n")); break;
      case '\r': out.append(std::string_view("\\r")); break;
      case '\t': out.append(std::string_view("\\t")); break;
      default:
        if (c < 0x20) {
          const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          out.append(esc, esc + 6);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

// `"request_id":"…",` for a message about one query or node call ("query <id>: …",
// "sketch <id>: …", "generate <id>: …", "expand <id>: …"), then `"msg":"…"`, escaped.
class JsonFields final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    for (std::string_view kind : {"query ", "sketch ", "generate ", "expand "}) {
      if (text.substr(0, kind.size()) != kind) continue;
      const size_t colon = text.find(':', kind.size());
      const std::string_view id = text.substr(kind.size(), colon - kind.size());
      if (colon != std::string_view::npos && !id.empty() && id.find(' ') == std::string_view::npos) {
        dest.append(std::string_view("\"request_id\":"));
        AppendJsonString(id, dest);
        dest.push_back(',');
      }
      break;
    }
    dest.append(std::string_view("\"msg\":"));
    AppendJsonString(text, dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonFields>();
  }
};

}  // namespace

absl::Status InitLogging(const std::string& node_name, const std::string& level,
                         const std::string& format) {
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
  if (format != "text" && format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("log format: expected text or json, got \"", format, "\""));
  }
  // Not registered by name, so that several nodes in one process (pice local) may call this.
  auto logger = std::make_shared<spdlog::logger>(
      node_name.empty() ? "pice" : node_name,
      std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (format == "json") {
    // One JSON object per line for log shippers.
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<JsonFields>('*').set_pattern(
        "{\"time\":\"%Y-%m-%dT%H:%M:%S.%e%z\",\"level\":\"%l\",\"node\":\"%n\",%*}");
    logger->set_formatter(std::move(f));
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
  return absl::OkStatus();
}

}  // namespace pice
