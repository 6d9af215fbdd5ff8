#include "node/openai_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace pice {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;

struct Url {
  bool https = false;
  std::string host, port, path;  // path without a trailing '/'
};

absl::StatusOr<Url> ParseUrl(const std::string& s) {
  Url u;
  std::string rest;
  if (absl::StartsWith(s, "http://")) {
    rest = s.substr(7);
  } else if (absl::StartsWith(s, "https://")) {
    u.https = true;
    rest = s.substr(8);
  } else {
    return absl::InvalidArgumentError("expected http://HOST[:PORT][/PATH] or https://...");
  }
  const size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  u.path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  if (hostport.empty()) return absl::InvalidArgumentError("no host");
  size_t colon = hostport.rfind(':');
  if (!hostport.empty() && hostport[0] == '[') {  // [v6]:port
    const size_t close = hostport.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError("unclosed [ in the host");
    u.host = hostport.substr(1, close - 1);
    colon = hostport.size() > close + 1 && hostport[close + 1] == ':' ? close + 1 : std::string::npos;
  } else {
    u.host = hostport.substr(0, colon);
  }
  u.port = colon == std::string::npos ? (u.https ? "443" : "80") : hostport.substr(colon + 1);
  int port = 0;
  if (!absl::SimpleAtoi(u.port, &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port \"", u.port, "\""));
  }
  return u;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The remote's error message from an OpenAI error body, or the body itself (cut).
std::string RemoteMessage(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const json& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) {
      return e["message"].get<std::string>();
    }
    if (e.is_string()) return e.get<std::string>();
  }
  return body.substr(0, 200);
}

}  // namespace

absl::StatusOr<RemoteModelOptions> ReadRemoteModelOptions(const ConfigNode& n) {
  RemoteModelOptions o;
  PICE_RETURN_IF_ERROR(n.CheckKeys({"kind", "base_url", "model", "api_key_env", "api", "timeout",
                                    "max_retries", "max_concurrency", "logprobs", "ca_file"}));
  std::string kind;
  PICE_RETURN_IF_ERROR(n.Require("kind"));
  PICE_RETURN_IF_ERROR(n.ReadEnum("kind", &kind, {"openai"}));
  PICE_RETURN_IF_ERROR(n.Require("base_url"));
  PICE_RETURN_IF_ERROR(n.ReadString("base_url", &o.base_url, false));
  if (auto u = ParseUrl(o.base_url); !u.ok()) {
    return n.ChildError("base_url", absl::StrCat(u.status().message(), ", got \"", o.base_url, "\""));
  }
  PICE_RETURN_IF_ERROR(n.Require("model"));
  PICE_RETURN_IF_ERROR(n.ReadString("model", &o.model, false));
  PICE_RETURN_IF_ERROR(n.ReadString("api_key_env", &o.api_key_env));
  PICE_RETURN_IF_ERROR(n.ReadEnum("api", &o.api, {"auto", "completions", "chat"}));
  PICE_RETURN_IF_ERROR(n.ReadSeconds("timeout", &o.timeout_s, 0.01, 3600));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_retries", &o.max_retries, 0, 10));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_concurrency", &o.max_concurrency, 1, 100000));
  PICE_RETURN_IF_ERROR(n.ReadBool("logprobs", &o.logprobs));
  PICE_RETURN_IF_ERROR(n.ReadPath("ca_file", &o.ca_file, /*allow_empty=*/true));
  return o;
}

absl::Status ReadModelOrBackend(const ConfigNode& n, std::string* model_path,
                                std::optional<RemoteModelOptions>* remote) {
  if (n.Has("model") == n.Has("backend")) {
    return n.Error("expected exactly one of `model` (a GGUF file) and `backend` (a remote model)");
  }
  if (n.Has("backend")) {
    ConfigNode b = n.Child("backend");
    if (!b.IsMap()) return b.Error("expected a mapping {kind: openai, base_url, model, ...}");
    PICE_ASSIGN_OR_RETURN(RemoteModelOptions o, ReadRemoteModelOptions(b));
    *remote = std::move(o);
    return absl::OkStatus();
  }
  PICE_RETURN_IF_ERROR(n.ReadPath("model", model_path));
  if (std::error_code ec; !std::filesystem::is_regular_file(*model_path, ec)) {
    return n.ChildError("model", absl::StrCat("no such file: ", *model_path));
  }
  return absl::OkStatus();
}

// ---- one request: connect, send, read the SSE stream ------------------------------------

class OpenAIBackend::Impl {
 public:
  Impl(RemoteModelOptions o, Url url, std::string key)
      : o_(std::move(o)), url_(std::move(url)), key_(std::move(key)),
        ssl_ctx_(ssl::context::tls_client), guard_(net::make_work_guard(ioc_)) {}

  absl::Status Init() {
    if (url_.https) {
      beast::error_code ec;
      if (o_.ca_file.empty()) {
        ssl_ctx_.set_default_verify_paths(ec);
      } else {
        ssl_ctx_.load_verify_file(o_.ca_file, ec);
      }
      if (ec) return absl::InvalidArgumentError(absl::StrCat("backend.ca_file: ", ec.message()));
      ssl_ctx_.set_verify_mode(ssl::verify_peer);
    }
    thread_ = std::thread([this] { ioc_.run(); });
    return absl::OkStatus();
  }

  ~Impl() { Stop(); }

  absl::Status Submit(BackendRequest r);
  void Stop();
  BackendStats Stats() const {
    std::lock_guard<std::mutex> l(mu_);
    BackendStats s;
    s.active = live_;
    s.max_batch = o_.max_concurrency;
    s.tokens_per_s = tokens_per_s_;
    return s;
  }
  std::vector<std::string> Notes() const {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::string> out;
    if (!o_.logprobs) {
      out.push_back(absl::StrCat(o_.model, ": logprobs off (backend.logprobs): confidence unknown"));
    } else if (answers_ > 0 && answers_with_logprobs_ == 0) {
      out.push_back(absl::StrCat(o_.model, " at ", o_.base_url,
                                 ": the server returns no logprobs: confidence unknown"));
    }
    return out;
  }
  const std::string& name() const { return o_.model; }

  class Call;

  // A call's answer, before its on_done (so Load's notes know it by then).
  void Answered(double seconds, int64_t tokens, bool had_logprobs) {
    std::lock_guard<std::mutex> l(mu_);
    ++answers_;
    if (had_logprobs) ++answers_with_logprobs_;
    if (seconds > 0 && tokens > 0) {
      const double rate = tokens / seconds;
      tokens_per_s_ = tokens_per_s_ == 0 ? rate : 0.9 * tokens_per_s_ + 0.1 * rate;
    }
  }
  // Called by a call once, after its on_done returned.
  void Ended(const std::shared_ptr<Call>& call) {
    std::lock_guard<std::mutex> l(mu_);
    calls_.erase(call);
    --live_;
    cv_.notify_all();
  }

  RemoteModelOptions o_;
  Url url_;
  std::string key_;
  net::io_context ioc_;
  ssl::context ssl_ctx_;
  net::executor_work_guard<net::io_context::executor_type> guard_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  int live_ = 0;
  std::set<std::shared_ptr<Call>> calls_;  // live calls, for Stop
  double tokens_per_s_ = 0;
  int64_t answers_ = 0, answers_with_logprobs_ = 0;
};

class OpenAIBackend::Impl::Call : public std::enable_shared_from_this<Call> {
 public:
  Call(Impl* backend, BackendRequest r)
      : b_(backend), r_(std::move(r)), resolver_(b_->ioc_), timer_(b_->ioc_) {}

  void Start() {
    start_ = Now();
    body_ = BuildBody();
    Attempt();
    Tick();
  }

  // On the loop: stop now, keep what was generated (finish kCancelled).
  void Cancel() {
    if (done_) return;
    Finish(Cancelled());
  }

 private:
  bool chat() const {
    return b_->o_.api == "chat" || (b_->o_.api == "auto" && r_.chat);
  }

  std::string BuildBody() const {
    const GenerateOptions& g = r_.options;
    json j;
    j["model"] = b_->o_.model;
    if (chat()) {
      json msgs = json::array();
      if (!r_.system.empty()) msgs.push_back({{"role", "system"}, {"content", r_.system}});
      for (const ChatMessage& m : r_.history) msgs.push_back({{"role", m.role}, {"content", m.content}});
      msgs.push_back({{"role", "user"}, {"content", r_.prompt.user}});
      if (!r_.prompt.response_prefix.empty()) {
        // vLLM continues a final assistant message with these two; servers that do not
        // know them ignore them (then the prefix is a finished turn: say so in the docs).
        msgs.push_back({{"role", "assistant"}, {"content", r_.prompt.response_prefix}});
        j["continue_final_message"] = true;
        j["add_generation_prompt"] = false;
      }
      j["messages"] = std::move(msgs);
      if (b_->o_.logprobs) j["logprobs"] = true;
    } else {
      j["prompt"] = PlainPromptText(r_.prompt, r_.history);
      if (b_->o_.logprobs) j["logprobs"] = 1;
    }
    j["max_tokens"] = g.max_tokens;
    j["temperature"] = g.sampling.temperature;
    if (g.sampling.top_p < 1) j["top_p"] = g.sampling.top_p;
    if (g.sampling.top_k > 0) j["top_k"] = g.sampling.top_k;
    if (g.sampling.min_p > 0) j["min_p"] = g.sampling.min_p;
    if (g.sampling.repeat_penalty != 1) j["repetition_penalty"] = g.sampling.repeat_penalty;
    j["seed"] = g.sampling.seed;
    if (!g.stop.empty()) {
      // OpenAI itself takes at most 4; every stop string is also applied here.
      json stops = json::array();
      for (size_t i = 0; i < g.stop.size() && i < 4; ++i) stops.push_back(g.stop[i]);
      j["stop"] = std::move(stops);
    }
    j["stream"] = true;
    j["stream_options"] = {{"include_usage", true}};
    return j.dump();
  }

  std::string Where() const { return absl::StrCat("the remote model at ", b_->o_.base_url); }

  // Every 50 ms: the caller's cancel flag.
  void Tick() {
    timer_.expires_after(std::chrono::milliseconds(50));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->done_) return;
      if (self->r_.cancelled && self->r_.cancelled->load()) {
        self->Cancel();
        return;
      }
      self->Tick();
    });
  }

  void Expire() {
    beast::get_lowest_layer(*Stream()).expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(b_->o_.timeout_s * 1000)));
  }
  beast::tcp_stream* Stream() { return ssl_ ? &ssl_->next_layer() : tcp_.get(); }

  template <typename F>
  void WithStream(F&& f) {
    if (ssl_) f(*ssl_);
    else f(*tcp_);
  }

  void Attempt() {
    tcp_.reset();
    ssl_.reset();
    if (b_->url_.https) {
      ssl_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(b_->ioc_, b_->ssl_ctx_);
      SSL_set_tlsext_host_name(ssl_->native_handle(), b_->url_.host.c_str());
      ssl_->set_verify_callback(ssl::host_name_verification(b_->url_.host));
    } else {
      tcp_ = std::make_unique<beast::tcp_stream>(b_->ioc_);
    }
    buffer_.clear();
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    resolver_.async_resolve(
        b_->url_.host, b_->url_.port,
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type res) {
          if (self->done_) return;
          if (ec) return self->Retry(self->Unreachable("resolve", ec));
          self->Expire();
          self->Stream()->async_connect(res, [self](beast::error_code ec, const tcp::endpoint&) {
            if (self->done_) return;
            if (ec) return self->Retry(self->Unreachable("connect", ec));
            if (self->ssl_) {
              self->Expire();
              self->ssl_->async_handshake(ssl::stream_base::client, [self](beast::error_code ec) {
                if (self->done_) return;
                if (ec) return self->Retry(self->Unreachable("TLS handshake", ec));
                self->Send();
              });
            } else {
              self->Send();
            }
          });
        });
  }

  void Send() {
    req_ = {};
    req_.method(http::verb::post);
    req_.target(b_->url_.path + (chat() ? "/chat/completions" : "/completions"));
    req_.version(11);
    const bool default_port = b_->url_.port == (b_->url_.https ? "443" : "80");
    const std::string host = b_->url_.host.find(':') != std::string::npos
                                 ? "[" + b_->url_.host + "]"  // IPv6 literal
                                 : b_->url_.host;
    req_.set(http::field::host, default_port ? host : host + ":" + b_->url_.port);
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::accept, "text/event-stream");
    req_.set(http::field::user_agent, "pice-node");
    if (!b_->key_.empty()) req_.set(http::field::authorization, "Bearer " + b_->key_);
    req_.body() = body_;
    req_.prepare_payload();
    Expire();
    WithStream([&](auto& s) {
      http::async_write(s, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
        if (self->done_) return;
        if (ec) return self->Retry(self->Unreachable("send", ec));
        self->Expire();
        self->WithStream([&](auto& s) {
          http::async_read_header(s, self->buffer_, *self->parser_,
                                  [self](beast::error_code ec, size_t) { self->OnHeader(ec); });
        });
      });
    });
  }

  void OnHeader(beast::error_code ec) {
    if (done_) return;
    if (ec == beast::error::timeout) return Retry(Silent("an answer"));
    if (ec) return Retry(Unreachable("read", ec));
    const int status = static_cast<int>(parser_->get().result_int());
    if (status != 200) {
      // Read the (small) error body, then map the status.
      Expire();
      WithStream([&](auto& s) {
        http::async_read(s, buffer_, *parser_, [self = shared_from_this(), status](beast::error_code, size_t) {
          if (self->done_) return;
          self->OnHttpError(status);
        });
      });
      return;
    }
    ReadSome();
  }

  void OnHttpError(int status) {
    const std::string msg = RemoteMessage(parser_->get().body());
    const std::string what = absl::StrCat(Where(), " answered HTTP ", status, ": ", msg);
    if (status == 429) {
      absl::Status s = absl::ResourceExhaustedError(what);
      int retry_s = 1;
      auto it = parser_->get().find(http::field::retry_after);
      if (it != parser_->get().end()) {
        int v = 0;
        if (absl::SimpleAtoi(std::string(it->value()), &v) && v >= 0) retry_s = v;
      }
      SetRetryAfterMs(&s, std::clamp(retry_s, 0, 600) * 1000);
      return Finish(s);
    }
    if (status == 400 || status == 413 || status == 422) {
      return Finish(absl::InvalidArgumentError(what));
    }
    if (status >= 500) return Retry(absl::UnavailableError(what));
    Finish(absl::UnavailableError(what));  // 401, 403, 404: the operator's configuration
  }

  void ReadSome() {
    Expire();
    WithStream([&](auto& s) {
      http::async_read_some(s, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->OnData(ec);
                            });
    });
  }

  void OnData(beast::error_code ec) {
    if (done_) return;
    std::string& body = parser_->get().body();
    if (!body.empty()) {
      pending_ += body;
      body.clear();
      if (!Consume()) return;  // finished inside
    }
    if (ec == http::error::end_of_stream || (!ec && parser_->is_done())) {
      if (saw_finish_ || saw_done_) return Finish(Result());
      return Finish(absl::UnavailableError(
          absl::StrCat(Where(), " closed the stream before the answer ended")));
    }
    if (ec == beast::error::timeout) return Finish(Silent("the next chunk"));
    if (ec) {
      return Finish(absl::UnavailableError(
          absl::StrCat(Where(), " cut the stream: ", ec.message())));
    }
    ReadSome();
  }

  // Parses complete SSE lines; false when the call finished.
  bool Consume() {
    size_t at = 0;
    while (true) {
      const size_t nl = pending_.find('\n', at);
      if (nl == std::string::npos) break;
      std::string_view line(pending_.data() + at, nl - at);
      at = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.substr(0, 5) != "data:") continue;  // comments, event names, blank lines
      line.remove_prefix(5);
      if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      if (line == "[DONE]") {
        saw_done_ = true;
        Finish(Result());
        return false;
      }
      if (!OnChunk(line)) return false;
    }
    pending_.erase(0, at);
    return true;
  }

  bool OnChunk(std::string_view data) {
    json j = json::parse(data, nullptr, false);
    if (!j.is_object()) {
      Finish(absl::UnavailableError(absl::StrCat(Where(), " sent a malformed chunk: ",
                                                 std::string(data.substr(0, 120)))));
      return false;
    }
    if (j.contains("error")) {
      Finish(absl::UnavailableError(
          absl::StrCat(Where(), " failed mid-stream: ", RemoteMessage(std::string(data)))));
      return false;
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const json& u = j["usage"];
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer()) {
        prompt_tokens_ = u["prompt_tokens"].get<int64_t>();
      }
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer()) {
        completion_tokens_ = u["completion_tokens"].get<int64_t>();
      }
    }
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return true;
    const json& c = j["choices"][0];
    if (!c.is_object()) return true;
    std::string piece;
    if (chat()) {
      if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content") &&
          c["delta"]["content"].is_string()) {
        piece = c["delta"]["content"].get<std::string>();
      }
    } else if (c.contains("text") && c["text"].is_string()) {
      piece = c["text"].get<std::string>();
    }
    std::vector<float> lps;
    if (c.contains("logprobs") && c["logprobs"].is_object()) {
      const json& lp = c["logprobs"];
      auto take = [&](const json& v) {
        if (v.is_number()) lps.push_back(v.get<float>());
      };
      if (lp.contains("token_logprobs") && lp["token_logprobs"].is_array()) {
        for (const json& v : lp["token_logprobs"]) take(v);
      } else if (lp.contains("content") && lp["content"].is_array()) {
        for (const json& t : lp["content"]) {
          if (t.is_object() && t.contains("logprob")) take(t["logprob"]);
        }
      }
    }
    for (float v : lps) logprob_sum_ += v;
    logprob_count_ += lps.size();
    ++chunks_;
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) {
      saw_finish_ = true;
      finish_ = c["finish_reason"].get<std::string>() == "length" ? FinishReason::kLength
                                                                   : FinishReason::kStop;
    }
    if (!piece.empty() || !lps.empty()) {
      received_ = true;
      // Stop strings are applied here too (a server may ignore some).
      const size_t before = text_.size();
      text_ += piece;
      size_t cut = std::string::npos;
      for (const std::string& s : r_.options.stop) {
        if (s.empty()) continue;
        const size_t from = before >= s.size() ? before - s.size() + 1 : 0;
        const size_t f = text_.find(s, from);
        if (f != std::string::npos) cut = std::min(cut, f);
      }
      if (cut != std::string::npos) {
        std::string_view kept = std::string_view(text_).substr(before, cut > before ? cut - before : 0);
        if (!kept.empty() && r_.on_piece) r_.on_piece(kept, lps);
        text_.resize(cut);
        finish_ = FinishReason::kStop;
        saw_finish_ = true;
        Finish(Result());
        return false;
      }
      if (r_.on_piece && !r_.on_piece(piece, lps)) {
        Finish(Cancelled());
        return false;
      }
    }
    return true;
  }

  absl::StatusOr<BackendResult> Result() const {
    BackendResult out;
    out.text = text_;
    out.finish = finish_;
    out.prompt_tokens = prompt_tokens_;
    out.generated_tokens = completion_tokens_ > 0 ? completion_tokens_
                           : logprob_count_ > 0    ? static_cast<int64_t>(logprob_count_)
                                                   : static_cast<int64_t>(chunks_);
    if (logprob_count_ > 0) out.mean_logprob = logprob_sum_ / static_cast<double>(logprob_count_);
    return out;
  }
  absl::StatusOr<BackendResult> Cancelled() const {
    auto r = Result();
    r->finish = FinishReason::kCancelled;
    return r;
  }

  absl::Status Unreachable(const char* step, beast::error_code ec) const {
    return absl::UnavailableError(absl::StrCat(Where(), " is unreachable (", step, "): ", ec.message()));
  }
  absl::Status Silent(const char* what) const {
    return absl::DeadlineExceededError(absl::StrCat(Where(), " sent nothing for ", b_->o_.timeout_s,
                                                    " s while waiting for ", what, " (backend.timeout)"));
  }

  // Retries a request nothing was received for, after 100 ms, 200 ms, 400 ms...
  void Retry(absl::Status why) {
    if (received_ || attempt_ >= b_->o_.max_retries) return Finish(std::move(why));
    spdlog::debug("{}: retrying: {}", b_->o_.model, why.ToString());
    auto backoff = std::make_shared<net::steady_timer>(b_->ioc_);
    backoff->expires_after(std::chrono::milliseconds(100 << std::min(attempt_, 6)));
    ++attempt_;
    CloseStream();
    backoff->async_wait([self = shared_from_this(), backoff](beast::error_code) {
      if (!self->done_) self->Attempt();
    });
  }

  void CloseStream() {
    beast::error_code ec;
    if (tcp_ || ssl_) Stream()->socket().close(ec);
  }

  void Finish(absl::StatusOr<BackendResult> r) {
    if (done_) return;
    done_ = true;
    timer_.cancel();
    resolver_.cancel();
    CloseStream();
    if (r.ok()) b_->Answered(Now() - start_, r->generated_tokens, logprob_count_ > 0);
    if (r_.on_done) r_.on_done(std::move(r));
    b_->Ended(shared_from_this());
  }

  Impl* b_;
  BackendRequest r_;
  tcp::resolver resolver_;
  net::steady_timer timer_;
  std::unique_ptr<beast::tcp_stream> tcp_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> ssl_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::string body_;
  std::string pending_;  // SSE bytes not yet parsed
  std::string text_;
  FinishReason finish_ = FinishReason::kStop;
  bool saw_finish_ = false, saw_done_ = false, received_ = false, done_ = false;
  int attempt_ = 0;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  double logprob_sum_ = 0;
  size_t logprob_count_ = 0, chunks_ = 0;
  double start_ = 0;
};

absl::Status OpenAIBackend::Impl::Submit(BackendRequest r) {
  if (r.options.max_tokens <= 0) {
    return absl::InvalidArgumentError("params.max_tokens: must be > 0 for a remote model");
  }
  std::shared_ptr<Call> call;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_) return absl::UnavailableError("the node is shutting down");
    if (live_ >= o_.max_concurrency) {
      absl::Status s = absl::ResourceExhaustedError(absl::StrCat(
          "the remote model ", o_.model, " has ", live_, " requests in flight (backend.max_concurrency)"));
      SetRetryAfterMs(&s, 100);
      return s;
    }
    ++live_;
    call = std::make_shared<Call>(this, std::move(r));
    calls_.insert(call);
  }
  net::post(ioc_, [call] { call->Start(); });
  return absl::OkStatus();
}

void OpenAIBackend::Impl::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_ && !thread_.joinable()) return;
    stopped_ = true;
  }
  if (!thread_.joinable()) return;
  net::post(ioc_, [this] {
    std::vector<std::shared_ptr<Call>> calls;
    {
      std::lock_guard<std::mutex> l(mu_);
      calls.assign(calls_.begin(), calls_.end());
    }
    for (auto& c : calls) c->Cancel();
  });
  {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return live_ == 0; });
  }
  guard_.reset();
  ioc_.stop();
  thread_.join();
}

// ---- the public face ----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<OpenAIBackend>> OpenAIBackend::Create(const RemoteModelOptions& o) {
  auto url = ParseUrl(o.base_url);
  if (!url.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend.base_url: ", url.status().message(), ", got \"", o.base_url, "\""));
  }
  std::string key;
  if (!o.api_key_env.empty()) {
    const char* v = std::getenv(o.api_key_env.c_str());
    if (v == nullptr || *v == '\0') {
      return absl::InvalidArgumentError(absl::StrCat(
          "backend.api_key_env: the environment variable ", o.api_key_env, " is not set"));
    }
    key = v;
  }
  auto impl = std::make_unique<Impl>(o, *std::move(url), std::move(key));
  PICE_RETURN_IF_ERROR(impl->Init());
  spdlog::info("remote model {} at {} (api {}, logprobs {})", o.model, o.base_url, o.api,
               o.logprobs ? "on" : "off");
  return std::unique_ptr<OpenAIBackend>(new OpenAIBackend(std::move(impl)));
}

OpenAIBackend::OpenAIBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OpenAIBackend::~OpenAIBackend() { impl_->Stop(); }
absl::Status OpenAIBackend::Submit(BackendRequest request) { return impl_->Submit(std::move(request)); }
void OpenAIBackend::Stop() { impl_->Stop(); }
BackendStats OpenAIBackend::Stats() const { return impl_->Stats(); }
const std::string& OpenAIBackend::name() const { return impl_->name(); }
std::vector<std::string> OpenAIBackend::Notes() const { return impl_->Notes(); }

}  // namespace pice
