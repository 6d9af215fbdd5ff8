// Running a gRPC server the way every PICE node does: bind host:port (port 0 picks a free
// port), serve grpc.health.v1.Health and server reflection, report the bound port (log +
// optional port file), and drain on shutdown: health turns NOT_SERVING, new calls are
// refused, running calls get up to a drain timeout to finish, then the rest are cancelled.
//
// A binary's main does:
//   BlockShutdownSignals();                       // first, before any thread starts
//   ... parse flags, load the config, build the services ...
//   auto server = GrpcServer::Start(options, {{Cloud::service_full_name(), &service}});
//   WaitForShutdownSignal();                      // SIGTERM or SIGINT
//   service.SetDraining();                        // new work: UNAVAILABLE
//   server->Shutdown(-1, [&] { return service.Idle(); });  // returns when drained
#ifndef PICE_COMMON_SERVER_H_
#define PICE_COMMON_SERVER_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tls.h"
#include "grpcpp/server.h"

namespace pice {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0 = a free port chosen by the OS
  std::string port_file;               // when set, the bound port is written here (atomically)
  double drain_seconds = 30;           // on Shutdown: time running calls get to finish
  int max_message_bytes = 4 << 20;     // largest request accepted
  std::string name = "pice";           // for logs
  ServerTls tls;                       // TLS / mutual TLS (common/tls.h); default plaintext
};

struct ServiceEntry {
  std::string name;        // full service name for health ("pice.v1.Cloud")
  grpc::Service* service;  // not owned; must outlive the server
};

class GrpcServer {
 public:
  // Builds and starts the server. UNAVAILABLE when the address cannot be bound,
  // INVALID_ARGUMENT for a malformed address, INTERNAL when the port file cannot be written.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const ServerOptions& options,
                                                           const std::vector<ServiceEntry>& services);
  ~GrpcServer();  // Shutdown() if not done yet
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  int port() const { return port_; }
  // "host:port" with the bound port.
  const std::string& address() const { return address_; }
  grpc::Server* server() { return server_.get(); }

  // Drains and stops: every service's health turns NOT_SERVING at once; while `idle`
  // (when given) returns false the server keeps accepting calls (so health checkers and
  // Load pollers see the node draining; the services refuse new work themselves), up to
  // the drain timeout (drain_seconds, or `drain_seconds` >= 0 when given); then it stops
  // accepting calls, gives running ones what is left of the timeout, cancels the rest
  // and returns when the server is stopped. Idempotent; thread-safe.
  void Shutdown(double drain_seconds = -1, const std::function<bool()>& idle = nullptr);

 private:
  GrpcServer() = default;
  ServerOptions options_;
  std::vector<std::string> service_names_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  std::once_flag shutdown_once_;
};

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and in every thread it starts
// later. Call first in main, before threads exist, so that WaitForShutdownSignal gets them.
void BlockShutdownSignals();
// Waits until SIGTERM or SIGINT arrives (see BlockShutdownSignals); returns its number.
// Each SIGHUP meanwhile calls `on_hup` (when given: reload what can be) and waits on.
int WaitForShutdownSignal(const std::function<void()>& on_hup = nullptr);

// Splits "host:port" ("[::1]:50051", "0.0.0.0:0"); INVALID_ARGUMENT naming `field` when
// malformed or the port is outside [0, 65535].
absl::Status ValidateListenAddress(const std::string& address, const std::string& field);

// Writes `content` to `path` via a temporary file and rename, so that readers never see
// a partial file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

}  // namespace pice

#endif  // PICE_COMMON_SERVER_H_
