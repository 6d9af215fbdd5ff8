// pice query: sends one question to a scheduler and prints the events as they arrive.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/query_options.h"
#include "common/status.h"

namespace pice::cli {

absl::StatusOr<QueryFlags> ParseQueryFlags(const Args& a) {
  QueryFlags q;
  v1::QueryRequest& r = q.request;
  q.api_key = a.Str("api-key");
  if (const char* env = std::getenv("PICE_API_KEY"); q.api_key.empty() && env != nullptr) q.api_key = env;
  const std::string route = a.Str("route", "auto");
  if (route == "auto") {
    r.set_route(v1::ROUTE_AUTO);
  } else if (route == "cloud" || route == "cloud_full") {
    r.set_route(v1::ROUTE_CLOUD);
  } else if (route == "sketch") {
    r.set_route(v1::ROUTE_SKETCH);
  } else {
    return absl::InvalidArgumentError("--route: expected auto, cloud or sketch, got '" + route + "'");
  }
  auto max_tokens = a.Int("max-tokens", 0, 0, 1 << 20);
  if (!max_tokens.ok()) return max_tokens.status();
  auto temperature = a.Float("temperature", 0, 0, 100);
  if (!temperature.ok()) return temperature.status();
  auto top_p = a.Float("top-p", 0, 0, 1);
  if (!top_p.ok()) return top_p.status();
  auto top_k = a.Int("top-k", 0, 0, 1 << 20);
  if (!top_k.ok()) return top_k.status();
  auto seed = a.Int("seed", 0, 0, INT64_MAX);
  if (!seed.ok()) return seed.status();
  auto max_points = a.Int("max-points", 0, 0, 1 << 20);
  if (!max_points.ok()) return max_points.status();
  auto timeout = a.Float("timeout", 120, 0, 1e6);
  if (!timeout.ok()) return timeout.status();
  r.mutable_params()->set_max_tokens(static_cast<int>(*max_tokens));
  r.mutable_params()->set_temperature(static_cast<float>(*temperature));
  r.mutable_params()->set_top_p(static_cast<float>(*top_p));
  r.mutable_params()->set_top_k(static_cast<int>(*top_k));
  r.mutable_params()->set_seed(static_cast<uint64_t>(*seed));
  if (a.Has("stop")) r.mutable_params()->add_stop(a.Str("stop"));
  r.set_max_points(static_cast<int>(*max_points));
  r.set_category(a.Str("category"));
  r.set_request_id(a.Str("request-id"));
  r.set_prompt(absl::StrJoin(a.positional(), " "));
  auto tls = ParseClientTlsFlags(a);
  if (!tls.ok()) return tls.status();
  q.tls = *std::move(tls);
  q.json = a.Flag("json");
  q.timeout_s = *timeout;
  return q;
}

int SendQuery(const std::string& cmd, const std::string& target, const QueryFlags& q) {
  // protobuf cannot carry invalid UTF-8 in a string field, so the server would never see
  // it: refuse it here the way the scheduler refuses bad fields.
  if (absl::Status s = ValidateUtf8(q.request.prompt(), "prompt"); !s.ok()) {
    std::fprintf(stderr, "pice %s: INVALID_ARGUMENT: %s\n", cmd.c_str(),
                 std::string(s.message()).c_str());
    return 1;
  }
  auto stub = v1::Pice::NewStub(MakeClientChannel(target, q.tls));
  EventPrinter printer(stdout, q.json);
  bool answered = false;
  grpc::Status s = RunQuery(stub.get(), q.request, q.timeout_s, q.api_key, [&](const v1::QueryEvent& ev) {
    answered = answered || ev.has_answer();
    printer.Print(ev);
  });
  if (!s.ok()) {
    // A refused handshake reads as UNAVAILABLE like a server that is down: say what to check.
    std::string hint;
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      hint = q.tls.enabled ? " (or the TLS handshake failed: is the server's certificate from "
                             "the CA given, for this address or --server-name, and does the "
                             "server accept this client certificate?)"
                           : " (or it serves TLS: give --tls-dir DIR or --ca FILE)";
    }
    std::fprintf(stderr, "pice %s: %s: %s%s\n", cmd.c_str(), StatusCodeName(s.error_code()).c_str(),
                 s.error_message().c_str(), hint.c_str());
    return 1;
  }
  if (!answered) {
    std::fprintf(stderr, "pice %s: the stream ended without an answer\n", cmd.c_str());
    return 1;
  }
  return 0;
}

int RunQueryCommand(const std::vector<std::string>& args) {
  auto a = Args::Parse(args, QueryValueFlags({"target"}), {"json"});
  if (!a.ok()) return Fail("query", std::string(a.status().message()), 2);
  if (a->positional().empty()) return Fail("query", "give the question, e.g. pice query \"add 3 and 4\"", 2);
  auto q = ParseQueryFlags(*a);
  if (!q.ok()) return Fail("query", std::string(q.status().message()), 2);
  return SendQuery("query", a->Str("target", "127.0.0.1:50051"), *q);
}

}  // namespace pice::cli
