// The scheduler's HTTP front door: OpenAI's API (scheduler/openai.h) over HTTP/1.1 with
// server-sent events, on Boost.Beast/Asio from Debian's libboost-dev. Why Beast: it is
// asynchronous (one io_context, a few threads, any number of connections: a stream held
// open for minutes costs a socket and a buffer, not a thread — cpp-httplib and civetweb
// give each connection a thread from a fixed pool), and it is a maintained HTTP parser
// with a body limit, so hostile input meets tested code.
//
//   POST /v1/chat/completions, POST /v1/completions   (stream: true -> text/event-stream)
//   GET  /v1/models, GET /health (503 while draining), GET /metrics (Prometheus, the
//   process's registry: the scheduler's series over this port's TLS)
// Errors are OpenAI's error JSON with the status a client acts on: 400 naming the
// parameter (malformed JSON, wrong types, invalid UTF-8, bad values), 404 (unknown path
// or model), 405, 413 (body over max_body_bytes), 429 + Retry-After (limits), 503
// (draining). A client that disconnects cancels its query on every node.
// Queries count against the same limits as gRPC ones, as the same client: the API key
// (`Authorization: Bearer K` or `x-api-key`), else the peer's address.
#ifndef PICE_SCHEDULER_HTTP_SERVER_H_
#define PICE_SCHEDULER_HTTP_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls.h"
#include "scheduler/service.h"

namespace pice::scheduler {

struct HttpOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0 = a free port
  size_t max_body_bytes = 1 << 20;     // larger bodies: 413
  int threads = 2;                     // event-loop threads
  ServerTls tls;                       // https (and client certificates with client_ca);
                                       // reloaded as common/tls.h says
};

class HttpServer {
 public:
  // Binds and starts serving; UNAVAILABLE when the address cannot be bound,
  // INVALID_ARGUMENT for a malformed one. `service` must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpOptions& options,
                                                           PiceService* service);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;
  // Stops accepting, cancels the queries still running for HTTP clients, closes every
  // connection and joins the threads. Idempotent.
  void Stop();

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_HTTP_SERVER_H_
