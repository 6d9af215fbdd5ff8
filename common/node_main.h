// The start-up every node binary (pice-cloud, pice-edge, pice-scheduler) shares: flags,
// --help, config loading, logging, the gRPC server, SIGTERM/SIGINT and the two-phase
// drain. A binary's main only says how to load its config and build its services:
//
//   int main(int argc, char** argv) {
//     return pice::RunNodeMain(argc, argv, kSpec, [](const pice::NodeFlags& f) { ... });
//   }
//
// Flags (one style, dashes; --port_file is read as --port-file):
//   --config FILE  --listen HOST:PORT  --port-file FILE  --log-level L  --drain-seconds S
//   [--node NAME when the binary has it]  --help
// Exit status: 0 after a clean shutdown or --help; 1 when the server cannot start
// (address in use); 2 for a bad flag or config (including a model or template the
// config names that cannot be loaded).
#ifndef PICE_COMMON_NODE_MAIN_H_
#define PICE_COMMON_NODE_MAIN_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/server.h"

namespace pice {

struct NodeSpec {
  const char* binary;       // "pice-cloud"
  const char* summary;      // one line: what it serves
  const char* config_name;  // "cloud.yaml"
  bool node_flag = false;   // accepts --node NAME (several edges from one file)
};

// The flags as given ("" / -1 when absent).
struct NodeFlags {
  std::string config;
  std::string listen;
  std::string port_file;
  std::string log_level;
  std::string node;
  double drain_seconds = -1;
};

// What a running node is: its services and how it drains. `owner` keeps them alive.
struct NodeServices {
  std::vector<ServiceEntry> services;
  std::function<void()> set_draining;  // new work: UNAVAILABLE
  std::function<bool()> idle;          // nothing running (the drain waits for it)
  std::function<void()> reload;        // optional: on SIGHUP (the scheduler: its policy)
  std::shared_ptr<void> owner;
};

// The loaded config: where to listen, how to log and drain, and how to build the
// services once logging is set up. Flags already override the file's values.
struct NodeSetup {
  std::string name;        // node name for logs
  std::string listen;
  ServerTls tls;  // the listener's `tls:` block
  std::string metrics_listen;  // "" = no /metrics
  std::string log_level;
  std::string log_format = "text";  // text | json (common/logging.h)
  double drain_seconds = 30;
  std::function<absl::StatusOr<NodeServices>()> create;
  std::function<void()> after_start;  // optional: a log line once serving
};

// Loads the config named by `flags` (errors name the file and key).
using NodeLoader = std::function<absl::StatusOr<NodeSetup>(const NodeFlags& flags)>;

// Parses the flags, loads, starts, serves until SIGTERM/SIGINT, drains; returns the exit
// status. Call first in main (it blocks the shutdown signals before any thread starts).
int RunNodeMain(int argc, char** argv, const NodeSpec& spec, const NodeLoader& load);

// The --help text of a node binary.
std::string NodeUsage(const NodeSpec& spec);

}  // namespace pice

#endif  // PICE_COMMON_NODE_MAIN_H_
