// A grpc.health.v1.Health/Check client on a generic stub (Debian's gRPC ships no
// generated health client): asks whether a node serves a service, without blocking.
#ifndef PICE_SCHEDULER_HEALTH_CHECK_H_
#define PICE_SCHEDULER_HEALTH_CHECK_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"

namespace pice::scheduler {

// What Health/Check answered.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// Calls Health/Check(`service`) on `channel` with `deadline`; `done` runs once, on a gRPC
// thread, with the call's status and the reported serving status (kUnknown when the call
// failed). `service` "" asks about the server as a whole.
void CheckHealthAsync(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                      std::chrono::system_clock::time_point deadline,
                      std::function<void(const grpc::Status&, ServingStatus)> done);

// The wire forms, exposed for tests: HealthCheckRequest{service} and the status field of
// a HealthCheckResponse (kUnknown for an empty or malformed message).
std::string EncodeHealthRequest(const std::string& service);
ServingStatus DecodeHealthResponse(const std::string& bytes);

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_HEALTH_CHECK_H_
