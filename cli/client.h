// Client side of pice.v1.Pice shared by `pice query`, `pice local` and `pice bench`:
// running one query as a stream of events, printing events for a person or as JSON lines,
// and gRPC status code names.
#ifndef PICE_CLI_CLIENT_H_
#define PICE_CLI_CLIENT_H_

#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "pice/v1/pice.grpc.pb.h"

namespace pice::cli {

// "INVALID_ARGUMENT", "UNAVAILABLE", ...
std::string StatusCodeName(grpc::StatusCode code);
std::string RouteName(v1::Route r);         // "auto", "cloud", "sketch"
std::string FinishName(v1::FinishReason f);  // "stop", "length", "cancelled", "error"

// One event as a JSON object whose "type" is route, sketch_point, expansion, delta or answer.
nlohmann::json EventToJson(const v1::QueryEvent& ev);

// Prints events for a person as they arrive: the route, the sketch points, expansions
// as they land, deltas inline, then the answer with its timings. Not thread-safe.
class EventPrinter {
 public:
  explicit EventPrinter(std::FILE* out, bool json) : out_(out), json_(json) {}
  void Print(const v1::QueryEvent& ev);

 private:
  std::FILE* out_;
  bool json_;
  bool in_delta_ = false;
};

std::shared_ptr<grpc::Channel> MakeClientChannel(const std::string& target);

// Runs one query and calls `on_event` for each event (on the calling thread). Returns the
// call's final status. `timeout_s` <= 0: no deadline. `api_key` (when not empty) goes as
// `authorization: Bearer KEY`.
grpc::Status RunQuery(v1::Pice::Stub* stub, const v1::QueryRequest& request, double timeout_s,
                      const std::string& api_key,
                      const std::function<void(const v1::QueryEvent&)>& on_event);

}  // namespace pice::cli

#endif  // PICE_CLI_CLIENT_H_
