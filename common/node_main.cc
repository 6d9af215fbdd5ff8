#include "common/node_main.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/args.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "spdlog/spdlog.h"

namespace pice {
namespace {

int Fail(const NodeSpec& spec, absl::string_view message, int code) {
  std::fprintf(stderr, "%s: %.*s\n", spec.binary, static_cast<int>(message.size()),
               message.data());
  return code;
}

}  // namespace

std::string NodeUsage(const NodeSpec& spec) {
  std::string out = absl::StrCat("usage: ", spec.binary, " --config ", spec.config_name,
                                 " [flags]\n", spec.summary, "\n\nflags:\n");
  absl::StrAppend(&out, "  --config FILE         the node's YAML file (required)\n",
                  "  --listen HOST:PORT    where to serve; overrides the file's listen\n",
                  "  --port-file FILE      write the bound port there once serving (for port 0)\n",
                  "  --log-level L         trace|debug|info|warn|error|off; overrides the file\n",
                  "  --drain-seconds S     on SIGTERM: time running calls get to finish;\n"
                  "                        overrides the file\n");
  if (spec.node_flag) {
    absl::StrAppend(&out, "  --node NAME           node name; overrides the file's node (several\n",
                    "                        nodes from one file)\n");
  }
  absl::StrAppend(&out, "  --help                this text\n\n",
                  "On SIGTERM or SIGINT the node drains: health NOT_SERVING, new work refused\n",
                  "with UNAVAILABLE, running work finishes (up to the drain time), exit 0.\n",
                  "exit status: 0 after a clean shutdown or --help, 1 when the server cannot\n",
                  "start (address in use), 2 for a bad flag or config\n");
  return out;
}

int RunNodeMain(int argc, char** argv, const NodeSpec& spec, const NodeLoader& load) {
  BlockShutdownSignals();
  std::set<std::string> value_flags = {"config", "listen", "port-file", "log-level",
                                       "drain-seconds"};
  if (spec.node_flag) value_flags.insert("node");
  auto args = Args::Parse(std::vector<std::string>(argv + 1, argv + argc), value_flags, {});
  if (!args.ok()) return Fail(spec, absl::StrCat(args.status().message(), " (--help)"), 2);
  if (args->Help()) {
    std::fputs(NodeUsage(spec).c_str(), stdout);
    return 0;
  }
  if (!args->positional().empty()) {
    return Fail(spec, absl::StrCat("unexpected argument '", args->positional()[0], "' (--help)"),
                2);
  }
  NodeFlags flags;
  flags.config = args->Str("config");
  flags.listen = args->Str("listen");
  flags.port_file = args->Str("port-file");
  flags.log_level = args->Str("log-level");
  flags.node = args->Str("node");
  auto drain = args->Float("drain-seconds", -1, 0, 86400);
  if (!drain.ok()) return Fail(spec, drain.status().message(), 2);
  flags.drain_seconds = *drain;
  if (flags.config.empty()) {
    return Fail(spec, absl::StrCat("--config ", spec.config_name, " is required (--help)"), 2);
  }

  auto setup = load(flags);
  if (!setup.ok()) return Fail(spec, setup.status().message(), 2);
  if (!flags.listen.empty()) setup->listen = flags.listen;
  if (!flags.log_level.empty()) setup->log_level = flags.log_level;
  if (flags.drain_seconds >= 0) setup->drain_seconds = flags.drain_seconds;
  if (auto s = ValidateListenAddress(setup->listen, "--listen"); !s.ok()) {
    return Fail(spec, s.message(), 2);
  }
  if (auto s = InitLogging(setup->name, setup->log_level, setup->log_format); !s.ok()) {
    return Fail(spec, std::string(s.message()), 2);
  }
  auto node = setup->create();
  if (!node.ok()) {
    spdlog::error("{}", std::string(node.status().message()));
    return 2;
  }
  ServerOptions so;
  so.listen = setup->listen;
  so.tls = setup->tls;
  so.port_file = flags.port_file;
  so.drain_seconds = setup->drain_seconds;
  so.name = setup->name;
  auto server = GrpcServer::Start(so, node->services);
  if (!server.ok()) {
    spdlog::error("{}", std::string(server.status().message()));
    return 1;
  }
  if (!setup->metrics_listen.empty()) {
    if (auto port = Metrics::Get().Serve(setup->metrics_listen); !port.ok()) {
      spdlog::error("{}", std::string(port.status().message()));
      return 1;
    }
  }
  if (setup->after_start) setup->after_start();
  WaitForShutdownSignal(node->reload);
  // Draining: new work is refused, health and Load say so, running work finishes (up to
  // the drain time), then the server stops and the process exits 0.
  node->set_draining();
  (*server)->Shutdown(-1, node->idle);
  server->reset();
  spdlog::info("drained; exiting");
  return 0;
}

}  // namespace pice
