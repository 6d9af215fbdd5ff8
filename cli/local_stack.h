// The embedded default: pice-cloud, pice-edge nodes and pice-scheduler in one process on
// loopback, on the bundled pice-arith models, from a built-in configuration (or a YAML
// file with the same sections as deploy/local.yaml).
#ifndef PICE_CLI_LOCAL_STACK_H_
#define PICE_CLI_LOCAL_STACK_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"
#include "scheduler/config.h"

namespace pice::cli {

struct LocalOptions {
  std::string config_path;  // "" = the built-in configuration
  int port = 50051;         // the scheduler's port on 127.0.0.1; 0 = a free port
  std::string models_dir;   // "" = search PICE_MODELS_DIR, ./models, <exe>/../models, ...
  int http_port = -1;       // the OpenAI HTTP API on 127.0.0.1; 0 = a free port; -1 = off
  std::string api_keys_file;  // "" = no keys (scheduler/api_keys.h)
  int metrics_port = -1;      // /metrics of the whole stack on 127.0.0.1; 0 = a free port
  std::string tls_dir;        // "" = plaintext; else mutual TLS on every link from
                              // DIR/{ca,server,server-key,client,client-key}.pem
};

// Where the bundled models are: `flag` when set (any directory: a --config may name
// other models in it), else $PICE_MODELS_DIR, ./models,
// <exe dir>/../models, <exe dir>/models, and the source tree's models/. NOT_FOUND lists
// the places tried.
absl::StatusOr<std::string> FindModelsDir(const std::string& flag);

// The built-in configuration (YAML; the same as deploy/local.yaml).
const char* DefaultLocalConfig();

class LocalStack {
 public:
  // Loads the models, starts every node and waits until the scheduler sees the edges.
  static absl::StatusOr<std::unique_ptr<LocalStack>> Start(const LocalOptions& options);
  virtual ~LocalStack() = default;

  // The scheduler's "127.0.0.1:port".
  virtual const std::string& address() const = 0;
  virtual const std::vector<std::string>& node_addresses() const = 0;
  virtual const scheduler::SchedulerOptions& scheduler_options() const = 0;
  // The OpenAI HTTP API's port on 127.0.0.1; -1 when off.
  virtual int http_port() const = 0;
  // /metrics' port on 127.0.0.1; -1 when off.
  virtual int metrics_port() const = 0;
  // The cloud model's tokenizer (benchmarks count answer tokens with it); null when the
  // cloud's model is remote.
  virtual const Tokenizer* cloud_tokenizer() const = 0;
  // Starts one more scheduler on the same nodes with `edit` applied to its options (for
  // sweeps); returns its address.
  virtual absl::StatusOr<std::string> AddScheduler(
      const std::function<void(scheduler::SchedulerOptions*)>& edit) = 0;
  // Drains the schedulers, then the nodes. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace pice::cli

#endif  // PICE_CLI_LOCAL_STACK_H_
