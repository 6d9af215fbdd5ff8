// A grpc.health.v1.Health/Check client on a generic stub (Debian's gRPC ships no
// generated health client): asks whether a node serves a service, without blocking.
#ifndef PICE_SCHEDULER_HEALTH_CHECK_H_
#define PICE_SCHEDULER_HEALTH_CHECK_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"

namespace pice::scheduler {

// What Health/Check answered.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// The lifetime rule for every client call made with gRPC's callback API in PICE:
//
//   The state of a call (its ClientContext, request, response, stub) is owned by the code
//   that started the call, never by the completion callback, and that owner destroys it on
//   its own thread after the callback has signalled. The callback only records the outcome
//   and signals.
//
// Why: a ClientContext holds a reference to its grpc::Channel. If the callback owned the
// call, the channel's last reference could go with it, on gRPC's callback thread, and
// ~Channel would release gRPC's shared callback completion queue from a thread that queue
// runs ("assertion failed: prior > 0" in grpc_cq_internal_unref, or a use-after-free).
// Long-lived channels (the NodeRegistry's) are safe only while everything that holds a
// ClientContext on them ends before the registry does; see QueryRun's RunToken.

// One Health/Check(`service`) call on `channel` with `deadline`, following that rule: it
// starts in the constructor and the destructor waits for it to end. `service` "" asks about
// the server as a whole. Not copyable; Wait() may be called from any thread.
class HealthCheck {
 public:
  HealthCheck(std::shared_ptr<grpc::Channel> channel, const std::string& service,
              std::chrono::system_clock::time_point deadline);
  ~HealthCheck();
  HealthCheck(const HealthCheck&) = delete;
  HealthCheck& operator=(const HealthCheck&) = delete;

  // Blocks until the call has ended (at the latest at its deadline).
  void Wait();
  // REQUIRES: Wait() returned. The call's status, and what the node reported (kUnknown when
  // the call failed).
  const grpc::Status& status() const { return status_; }
  ServingStatus serving() const { return serving_; }

 private:
  // Declared first, destroyed last: the channel goes after the context that refers to it.
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_, response_;
  grpc::Status status_;
  ServingStatus serving_ = ServingStatus::kUnknown;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
};

// A HealthCheck, waited for: returns the serving status and stores the call's status in
// `status` when given.
ServingStatus CheckHealth(std::shared_ptr<grpc::Channel> channel, const std::string& service,
                          std::chrono::system_clock::time_point deadline,
                          grpc::Status* status = nullptr);

// The wire forms, exposed for tests: HealthCheckRequest{service} and the status field of
// a HealthCheckResponse (kUnknown for an empty or malformed message).
std::string EncodeHealthRequest(const std::string& service);
ServingStatus DecodeHealthResponse(const std::string& bytes);

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_HEALTH_CHECK_H_
