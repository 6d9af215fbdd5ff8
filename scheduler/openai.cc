#include "scheduler/openai.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "scheduler/query.h"

namespace pice::scheduler::openai {
namespace {

using json = nlohmann::json;

Error Bad(std::string param, std::string message) {
  Error e;
  e.status = 400;
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

const char* RouteName(v1::Route r) {
  return r == v1::ROUTE_SKETCH ? "sketch" : r == v1::ROUTE_CLOUD ? "cloud" : "auto";
}

// The text of a message's `content`: a string, or a list of {type: "text", text} parts.
bool ContentText(const json& c, std::string* out) {
  if (c.is_string()) {
    *out = c.get<std::string>();
    return true;
  }
  if (!c.is_array()) return false;
  out->clear();
  for (const json& part : c) {
    if (!part.is_object() || !part.contains("text") || !part["text"].is_string()) return false;
    *out += part["text"].get<std::string>();
  }
  return true;
}

}  // namespace

json ErrorJson(const Error& e) {
  return json{{"error",
               {{"message", e.message},
                {"type", e.type},
                {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

Error FromStatus(const grpc::Status& s, int retry_after_ms) {
  Error e;
  e.message = s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT: {
      e.status = 400;
      // "params.temperature: must be ..." names the parameter before the colon.
      std::string field = e.message.substr(0, e.message.find(':'));
      if (field.rfind("params.", 0) == 0) field = field.substr(7);
      if (field == "max_tokens" || field == "temperature" || field == "top_p" ||
          field == "seed" || field.rfind("stop", 0) == 0 || field == "prompt") {
        e.param = field;
      } else if (field.rfind("history", 0) == 0) {
        e.param = "messages";
      }
      break;
    }
    case grpc::StatusCode::UNAUTHENTICATED:
      e.status = 401;
      e.type = "invalid_request_error";
      e.code = "invalid_api_key";
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      e.status = 429;
      e.type = "rate_limit_exceeded";
      e.code = "rate_limit_exceeded";
      e.retry_after_s = std::max(1, (retry_after_ms + 999) / 1000);
      break;
    case grpc::StatusCode::UNAVAILABLE:
      e.status = 503;
      e.type = "server_error";
      e.code = "unavailable";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      e.status = 504;
      e.type = "server_error";
      e.code = "timeout";
      break;
    default:
      e.status = 500;
      e.type = "server_error";
      break;
  }
  return e;
}

std::optional<Request> ParseRequest(Endpoint endpoint, const std::string& body, Error* error,
                                    const std::vector<std::string>& raw_models) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = Bad("", "the request body is not valid JSON (or not valid UTF-8)");
    return std::nullopt;
  }
  if (!j.is_object()) {
    *error = Bad("", "the request body must be a JSON object");
    return std::nullopt;
  }
  Request r;
  auto fail = [&](std::string param, std::string message) {
    *error = Bad(std::move(param), std::move(message));
    return std::nullopt;
  };
  if (!j.contains("model") || !j["model"].is_string()) return fail("model", "model: a string is required");
  r.model = j["model"].get<std::string>();
  if (r.model == "pice-sketch") {
    r.query.set_route(v1::ROUTE_SKETCH);
  } else if (r.model == "pice-cloud") {
    r.query.set_route(v1::ROUTE_CLOUD);
  } else if (std::find(raw_models.begin(), raw_models.end(), r.model) != raw_models.end()) {
    r.query.set_model(r.model);
    r.query.set_format(endpoint == Endpoint::kChat ? v1::PROMPT_RAW_CHAT : v1::PROMPT_RAW_TEXT);
  } else if (r.model != "pice-auto") {
    std::string known = "pice-auto, pice-sketch, pice-cloud";
    for (const std::string& m : raw_models) absl::StrAppend(&known, ", ", m);
    Error e = Bad("model", absl::StrCat("the model '", r.model, "' does not exist (", known, ")"));
    e.status = 404;
    e.code = "model_not_found";
    *error = e;
    return std::nullopt;
  }
  if (endpoint == Endpoint::kChat) {
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
      return fail("messages", "messages: a non-empty list of {role, content} is required");
    }
    const json& msgs = j["messages"];
    std::vector<std::pair<std::string, std::string>> turns;
    for (size_t i = 0; i < msgs.size(); ++i) {
      const std::string at = absl::StrCat("messages[", i, "]");
      const json& m = msgs[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        return fail(at + ".role", at + ".role: a string is required");
      }
      std::string text;
      if (!m.contains("content") || !ContentText(m["content"], &text)) {
        return fail(at + ".content", at + ".content: a string or a list of text parts is required");
      }
      turns.push_back({m["role"].get<std::string>(), text});
    }
    // The last turn is the question; the earlier ones go to the cloud as history,
    // rendered with the model's chat template ("developer" is OpenAI's newer "system").
    if (turns.back().first != "user") {
      return fail(absl::StrCat("messages[", turns.size() - 1, "].role"),
                  absl::StrCat("messages[", turns.size() - 1,
                               "].role: the last message must be the user's"));
    }
    r.query.set_prompt(turns.back().second);
    for (size_t i = 0; i + 1 < turns.size(); ++i) {
      const std::string& role = turns[i].first;
      if (role != "system" && role != "developer" && role != "user" && role != "assistant") {
        return fail(absl::StrCat("messages[", i, "].role"),
                    absl::StrCat("messages[", i, "].role: system, developer, user or assistant"));
      }
      v1::ChatTurn* t = r.query.add_history();
      t->set_role(role == "developer" ? "system" : role);
      t->set_content(turns[i].second);
    }
  } else {
    const json* p = j.contains("prompt") ? &j["prompt"] : nullptr;
    if (p && p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    if (!p || !p->is_string()) return fail("prompt", "prompt: a string is required");
    r.query.set_prompt(p->get<std::string>());
  }
  auto number = [&](const char* key, double* out) -> bool {
    if (!j.contains(key) || j[key].is_null()) return true;
    if (!j[key].is_number()) return false;
    *out = j[key].get<double>();
    return true;
  };
  v1::SamplingParams* params = r.query.mutable_params();
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0 || j[key].get<int64_t>() > (1 << 30)) {
      return fail(key, absl::StrCat(key, ": a non-negative integer is required"));
    }
    params->set_max_tokens(static_cast<int32_t>(j[key].get<int64_t>()));
    break;
  }
  double v = 0;
  if (!number("temperature", &v)) return fail("temperature", "temperature: a number is required");
  params->set_temperature(static_cast<float>(v));
  v = 0;
  if (!number("top_p", &v)) return fail("top_p", "top_p: a number is required");
  params->set_top_p(static_cast<float>(v));
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) return fail("seed", "seed: an integer is required");
    params->set_seed(static_cast<uint64_t>(j["seed"].get<int64_t>()));
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    if (j["stop"].is_string()) {
      params->add_stop(j["stop"].get<std::string>());
    } else if (j["stop"].is_array()) {
      for (const json& s : j["stop"]) {
        if (!s.is_string()) return fail("stop", "stop: a string or a list of strings is required");
        params->add_stop(s.get<std::string>());
      }
    } else {
      return fail("stop", "stop: a string or a list of strings is required");
    }
  }
  if (j.contains("n") && !j["n"].is_null() && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1)) {
    return fail("n", "n: only 1 is supported");
  }
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return fail("stream", "stream: a boolean is required");
    r.stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && j["stream_options"].is_object() &&
      j["stream_options"].contains("include_usage")) {
    r.include_usage = j["stream_options"]["include_usage"].is_boolean() &&
                      j["stream_options"]["include_usage"].get<bool>();
  }
  if (j.contains("logprobs") && !j["logprobs"].is_null()) {
    const json& lp = j["logprobs"];
    if (endpoint == Endpoint::kChat) {
      if (!lp.is_boolean()) return fail("logprobs", "logprobs: a boolean is required");
      r.logprobs = lp.get<bool>();
    } else {
      if (!lp.is_number_integer() || lp.get<int64_t>() < 0 || lp.get<int64_t>() > 20) {
        return fail("logprobs", "logprobs: an integer in [0, 20] is required");
      }
      r.logprobs = lp.get<int64_t>() > 0;
    }
  }
  if (j.contains("pice") && j["pice"].is_object() && j["pice"].contains("route")) {
    const json& route = j["pice"]["route"];
    const std::string name = route.is_string() ? route.get<std::string>() : "";
    if (name == "sketch") r.query.set_route(v1::ROUTE_SKETCH);
    else if (name == "cloud") r.query.set_route(v1::ROUTE_CLOUD);
    else if (name == "auto") r.query.set_route(v1::ROUTE_AUTO);
    else return fail("pice.route", "pice.route: one of auto, sketch, cloud is required");
  }
  if (j.contains("pice") && j["pice"].is_object() && j["pice"].contains("cache")) {
    if (!j["pice"]["cache"].is_boolean()) return fail("pice.cache", "pice.cache: true or false is required");
    r.query.set_no_cache(!j["pice"]["cache"].get<bool>());
  }
  return r;
}

json ModelsJson(int64_t created, const std::vector<std::string>& raw_models) {
  json data = json::array();
  for (const char* m : kModels) {
    data.push_back({{"id", m}, {"object", "model"}, {"created", created}, {"owned_by", "pice"}});
  }
  for (const std::string& m : raw_models) {
    data.push_back({{"id", m}, {"object", "model"}, {"created", created}, {"owned_by", "pice-cloud"}});
  }
  return json{{"object", "list"}, {"data", data}};
}

Response::Response(Endpoint endpoint, std::string id, std::string model, int64_t created,
                   const SchedulerOptions* options, bool logprobs)
    : endpoint_(endpoint), id_(std::move(id)), model_(std::move(model)), created_(created),
      options_(options), logprobs_(logprobs) {}

json Response::LogprobsJson(const std::vector<float>& logprobs) const {
  if (endpoint_ == Endpoint::kChat) {
    json content = json::array();
    for (float v : logprobs) content.push_back({{"logprob", v}});
    return json{{"content", std::move(content)}};
  }
  return json{{"token_logprobs", logprobs}};
}

json Response::Chunk(json delta_or_text, const char* finish,
                     const std::vector<float>* logprobs) const {
  json choice = {{"index", 0}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
  json lp = logprobs && logprobs_ ? LogprobsJson(*logprobs) : json(nullptr);
  if (endpoint_ == Endpoint::kChat) {
    choice["delta"] = std::move(delta_or_text);
    choice["logprobs"] = std::move(lp);
    return json{{"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_},
                {"model", model_}, {"choices", json::array({choice})}};
  }
  choice["text"] = std::move(delta_or_text);
  choice["logprobs"] = std::move(lp);
  return json{{"id", id_}, {"object", "text_completion"}, {"created", created_},
              {"model", model_}, {"choices", json::array({choice})}};
}

std::string Response::NextText() {
  std::string out;
  while (next_part_ < parts_.size() && parts_[next_part_]) out += *parts_[next_part_++];
  return out;
}

std::vector<json> Response::Chunks(const v1::QueryEvent& ev) {
  std::vector<json> out;
  auto content = [&](const std::string& text, json pice,
                     const std::vector<float>* logprobs = nullptr) {
    json delta = json::object();
    if (endpoint_ == Endpoint::kChat && !role_sent_) {
      delta["role"] = "assistant";
      role_sent_ = true;
    }
    if (!text.empty()) delta["content"] = text;
    sent_ += text;
    json c = Chunk(endpoint_ == Endpoint::kChat ? delta : json(text), nullptr, logprobs);
    if (!pice.is_null()) c["pice"] = std::move(pice);
    out.push_back(std::move(c));
  };
  if (ev.has_route()) {
    pice_["route"] = RouteName(ev.route().route());
    pice_["reason"] = ev.route().reason();
    if (ev.route().degraded()) pice_["degraded"] = true;
    content("", {{"route", RouteName(ev.route().route())},
                 {"reason", ev.route().reason()},
                 {"degraded", ev.route().degraded()}});
  } else if (ev.has_sketch_point()) {
    const int i = ev.sketch_point().index();
    if (i >= 0 && i < 1024) {
      if (points_.size() <= size_t(i)) points_.resize(i + 1);
      points_[i] = ev.sketch_point().text();
      if (parts_.size() < points_.size()) parts_.resize(points_.size());
    }
    pice_["points"] = points_;
    content("", {{"sketch_point", {{"index", i}, {"text", ev.sketch_point().text()}}}});
  } else if (ev.has_expansion()) {
    const v1::ExpansionEvent& x = ev.expansion();
    const int i = x.index();
    if (i >= 0 && i < 1024) {
      if (parts_.size() <= size_t(i)) parts_.resize(i + 1);
      parts_[i] = AnswerPart(*options_, size_t(i), size_t(i) < points_.size() ? points_[i] : "",
                             x.text());
    }
    json e = {{"index", i}, {"node", x.node()}, {"model", x.model()},
              {"agreement", x.agreement()}, {"escalated", x.escalated()},
              {"failed_over", x.failed_over()}};
    pice_["expansions"].push_back(e);
    content(NextText(), {{"expansion", e}});
  } else if (ev.has_delta()) {
    const std::vector<float> lp(ev.delta().logprobs().begin(), ev.delta().logprobs().end());
    all_logprobs_.insert(all_logprobs_.end(), lp.begin(), lp.end());
    content(ev.delta().text(), nullptr, &lp);
  } else if (ev.has_answer()) {
    const v1::AnswerEvent& a = ev.answer();
    answer_ = a.text();
    finish_ = a.finish_reason() == v1::LENGTH ? "length" : "stop";
    if (a.cached()) pice_["cached"] = true;
    for (const auto& t : a.tokens()) {
      prompt_tokens_ += t.prompt_tokens();
      completion_tokens_ += t.generated_tokens();
    }
    // Whatever of the answer was not streamed yet (e.g. the rest after a point that
    // arrived out of order), when what was streamed is its beginning.
    if (answer_.size() > sent_.size() && answer_.compare(0, sent_.size(), sent_) == 0) {
      content(answer_.substr(sent_.size()), nullptr);
    }
  }
  return out;
}

std::vector<json> Response::FinalChunks(bool include_usage) const {
  std::vector<json> out;
  out.push_back(Chunk(endpoint_ == Endpoint::kChat ? json::object() : json(""), finish_.c_str()));
  out.back()["pice"] = pice_;
  if (include_usage) {
    json u = {{"id", id_}, {"object", endpoint_ == Endpoint::kChat ? "chat.completion.chunk"
                                                                    : "text_completion"},
              {"created", created_}, {"model", model_}, {"choices", json::array()},
              {"usage", {{"prompt_tokens", prompt_tokens_},
                         {"completion_tokens", completion_tokens_},
                         {"total_tokens", prompt_tokens_ + completion_tokens_}}}};
    out.push_back(std::move(u));
  }
  return out;
}

json Response::Whole() const {
  json usage = {{"prompt_tokens", prompt_tokens_},
                {"completion_tokens", completion_tokens_},
                {"total_tokens", prompt_tokens_ + completion_tokens_}};
  json choice = {{"index", 0}, {"finish_reason", finish_},
                 {"logprobs", logprobs_ ? LogprobsJson(all_logprobs_) : json(nullptr)}};
  if (endpoint_ == Endpoint::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", answer_}};
    return json{{"id", id_}, {"object", "chat.completion"}, {"created", created_},
                {"model", model_}, {"choices", json::array({choice})}, {"usage", usage},
                {"pice", pice_}};
  }
  choice["text"] = answer_;
  return json{{"id", id_}, {"object", "text_completion"}, {"created", created_},
              {"model", model_}, {"choices", json::array({choice})}, {"usage", usage},
              {"pice", pice_}};
}

}  // namespace pice::scheduler::openai
