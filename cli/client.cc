#include "cli/client.h"

#include <chrono>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace pice::cli {

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return absl::StrFormat("CODE_%d", static_cast<int>(code));
  }
}

std::string RouteName(v1::Route r) {
  switch (r) {
    case v1::ROUTE_AUTO: return "auto";
    case v1::ROUTE_CLOUD: return "cloud";
    case v1::ROUTE_SKETCH: return "sketch";
    default: return "unknown";
  }
}

std::string FinishName(v1::FinishReason f) {
  switch (f) {
    case v1::STOP: return "stop";
    case v1::LENGTH: return "length";
    case v1::CANCELLED: return "cancelled";
    case v1::ERROR: return "error";
    default: return "unspecified";
  }
}

nlohmann::json EventToJson(const v1::QueryEvent& ev) {
  nlohmann::json j;
  j["request_id"] = ev.request_id();
  if (ev.has_route()) {
    j["type"] = "route";
    j["route"] = RouteName(ev.route().route());
    j["reason"] = ev.route().reason();
    j["degraded"] = ev.route().degraded();
  } else if (ev.has_sketch_point()) {
    j["type"] = "sketch_point";
    j["index"] = ev.sketch_point().index();
    j["text"] = ev.sketch_point().text();
  } else if (ev.has_expansion()) {
    const v1::ExpansionEvent& x = ev.expansion();
    j["type"] = "expansion";
    j["index"] = x.index();
    j["text"] = x.text();
    j["node"] = x.node();
    j["model"] = x.model();
    j["confidence"] = x.confidence();
    j["agreement"] = x.agreement();
    j["selection"] = x.selection();
    j["escalated"] = x.escalated();
    j["attempts"] = x.attempts();
    j["candidates"] = nlohmann::json::array();
    for (const v1::Candidate& c : x.candidates()) {
      j["candidates"].push_back({{"model", c.model()},
                                 {"text", c.text()},
                                 {"mean_logprob", c.mean_logprob()},
                                 {"consensus", c.consensus()},
                                 {"score", c.score()},
                                 {"tokens", c.tokens()},
                                 {"selected", c.selected()}});
    }
  } else if (ev.has_delta()) {
    j["type"] = "delta";
    j["text"] = ev.delta().text();
  } else if (ev.has_answer()) {
    const v1::AnswerEvent& a = ev.answer();
    j["type"] = "answer";
    j["text"] = a.text();
    j["route"] = RouteName(a.route());
    j["finish_reason"] = FinishName(a.finish_reason());
    j["degraded"] = a.degraded();
    j["cached"] = a.cached();
    j["points"] = std::vector<std::string>(a.points().begin(), a.points().end());
    j["expansions"] = std::vector<std::string>(a.expansions().begin(), a.expansions().end());
    j["tokens"] = nlohmann::json::array();
    for (const v1::NodeTokens& t : a.tokens()) {
      j["tokens"].push_back({{"node", t.node()},
                             {"prompt_tokens", t.prompt_tokens()},
                             {"generated_tokens", t.generated_tokens()}});
    }
    j["timings"] = {{"first_event_ms", a.timings().first_event_ms()},
                    {"sketch_done_ms", a.timings().sketch_done_ms()},
                    {"total_ms", a.timings().total_ms()}};
  } else {
    j["type"] = "unknown";
  }
  return j;
}

void EventPrinter::Print(const v1::QueryEvent& ev) {
  if (json_) {
    std::fprintf(out_, "%s\n", EventToJson(ev).dump().c_str());
    std::fflush(out_);
    return;
  }
  if (in_delta_ && !ev.has_delta()) {
    std::fputc('\n', out_);
    in_delta_ = false;
  }
  if (ev.has_route()) {
    std::fprintf(out_, "route: %s%s  (%s)\n", RouteName(ev.route().route()).c_str(),
                 ev.route().degraded() ? " [degraded]" : "", ev.route().reason().c_str());
  } else if (ev.has_sketch_point()) {
    std::fprintf(out_, "  point %d: %s\n", ev.sketch_point().index() + 1,
                 ev.sketch_point().text().c_str());
  } else if (ev.has_expansion()) {
    const v1::ExpansionEvent& x = ev.expansion();
    std::vector<std::string> votes;
    for (const v1::Candidate& c : x.candidates()) {
      votes.push_back(absl::StrFormat("%s%s=%s", c.selected() ? "*" : "", c.model(), c.text()));
    }
    std::fprintf(out_, "  expansion %d: %s   [%s%s, agreement %.2f; %s]\n", x.index() + 1,
                 x.text().c_str(), x.node().c_str(), x.escalated() ? ", escalated" : "",
                 x.agreement(), absl::StrJoin(votes, " ").c_str());
  } else if (ev.has_delta()) {
    if (!in_delta_) std::fputs("  ", out_);
    std::fputs(ev.delta().text().c_str(), out_);
    in_delta_ = true;
  } else if (ev.has_answer()) {
    const v1::AnswerEvent& a = ev.answer();
    std::vector<std::string> toks;
    for (const v1::NodeTokens& t : a.tokens()) {
      toks.push_back(absl::StrFormat("%s %d+%d", t.node(), t.prompt_tokens(), t.generated_tokens()));
    }
    std::fprintf(out_,
                 "answer (%s, %s%s): %s\n  first event %.1f ms, sketch %.1f ms, total %.1f ms; "
                 "tokens prompt+generated: %s\n",
                 RouteName(a.route()).c_str(), FinishName(a.finish_reason()).c_str(),
                 a.cached() ? ", cached" : "", a.text().c_str(), a.timings().first_event_ms(), a.timings().sketch_done_ms(),
                 a.timings().total_ms(), absl::StrJoin(toks, ", ").c_str());
  }
  std::fflush(out_);
}

std::shared_ptr<grpc::Channel> MakeClientChannel(const std::string& target, const ClientTls& tls) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  auto credentials = MakeChannelCredentials(tls, &args);
  return grpc::CreateCustomChannel(target, credentials, args);
}

absl::StatusOr<ClientTls> ParseClientTlsFlags(const Args& a) {
  ClientTls tls;
  if (a.Has("tls-dir")) tls = ClientTlsFromDir(a.Str("tls-dir"));
  if (a.Has("ca")) tls.ca = a.Str("ca");
  if (a.Has("cert")) tls.cert = a.Str("cert");
  if (a.Has("key")) tls.key = a.Str("key");
  tls.server_name = a.Str("server-name");
  tls.enabled = a.Has("tls-dir") || a.Has("ca") || a.Has("cert") || a.Has("key") ||
                a.Has("server-name");
  if (absl::Status s = CheckClientTls(tls, a.Has("tls-dir") ? "--tls-dir" : "--");
      !s.ok()) {
    return s;
  }
  return tls;
}

grpc::Status RunQuery(v1::Pice::Stub* stub, const v1::QueryRequest& request, double timeout_s,
                      const std::string& api_key,
                      const std::function<void(const v1::QueryEvent&)>& on_event) {
  grpc::ClientContext ctx;
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  if (timeout_s > 0) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
  }
  auto reader = stub->Query(&ctx, request);
  v1::QueryEvent ev;
  while (reader->Read(&ev)) on_event(ev);
  return reader->Finish();
}

}  // namespace pice::cli
