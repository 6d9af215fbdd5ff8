// Client side of pice.v1.Pice shared by `pice query`, `pice local` and `pice bench`:
// running one query as a stream of events, printing events for a person or as JSON lines,
// and gRPC status code names.
#ifndef PICE_CLI_CLIENT_H_
#define PICE_CLI_CLIENT_H_

#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "common/args.h"
#include "common/tls.h"
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

// A channel to `target`: plaintext, or TLS as `tls` says (common/tls.h).
std::shared_ptr<grpc::Channel> MakeClientChannel(const std::string& target,
                                                 const ClientTls& tls = {});

// The client TLS flags every command that talks to a scheduler takes:
//   --tls-dir DIR     DIR/ca.pem verifies the server, DIR/client.pem + client-key.pem are
//                     presented (what scripts/dev-certs.sh writes)
//   --ca FILE         verify the server against FILE (TLS without a client certificate)
//   --cert FILE --key FILE   a client certificate (with --ca or the system roots)
//   --server-name NAME       the name the server's certificate must carry
// None of them: plaintext. Errors name the flag and the file.
inline constexpr const char* kClientTlsFlags[] = {"tls-dir", "ca", "cert", "key", "server-name"};
absl::StatusOr<ClientTls> ParseClientTlsFlags(const Args& a);
// `flags` plus the TLS flags above.
inline std::set<std::string> WithClientTlsFlags(std::set<std::string> flags) {
  for (const char* f : kClientTlsFlags) flags.insert(f);
  return flags;
}

// Runs one query and calls `on_event` for each event (on the calling thread). Returns the
// call's final status. `timeout_s` <= 0: no deadline. `api_key` (when not empty) goes as
// `authorization: Bearer KEY`.
grpc::Status RunQuery(v1::Pice::Stub* stub, const v1::QueryRequest& request, double timeout_s,
                      const std::string& api_key,
                      const std::function<void(const v1::QueryEvent&)>& on_event);

}  // namespace pice::cli

#endif  // PICE_CLI_CLIENT_H_
