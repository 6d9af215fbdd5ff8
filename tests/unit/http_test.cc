// The scheduler's OpenAI-compatible HTTP API (scheduler/http_server.h) in front of
// scripted nodes in this process: models and health, chat and completions, whole and
// streamed (SSE exactly as OpenAI clients parse it), every error with its status, 429
// with Retry-After at the limit, 503 while draining, and a client that disconnects
// mid-stream cancelling its query on the cloud.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <chrono>
#include <string>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/server.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/api_keys.h"
#include "scheduler/config.h"
#include "scheduler/service.h"

namespace pice::scheduler {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

class Edge final : public v1::Edge::Service {
 public:
  grpc::Status Expand(grpc::ServerContext*, const v1::ExpandRequest* req,
                      v1::ExpandResponse* resp) override {
    resp->set_node("edge-a");
    resp->set_agreement(1.0);
    resp->set_text("x(" + req->sketch(req->index()) + ")");
    return grpc::Status::OK;
  }
  grpc::Status Load(grpc::ServerContext*, const v1::LoadRequest*, v1::LoadResponse* r) override {
    r->set_node("edge-a");
    r->set_max_slots(4);
    r->set_free_slots(4);
    return grpc::Status::OK;
  }
};

// Sketch: two points. Generate: "full answer" in two deltas, or (hold) waits until the
// call is cancelled.
class Cloud final : public v1::Cloud::Service {
 public:
  std::atomic<bool> hold{false};
  std::atomic<int> cancelled{0};
  std::mutex mu;
  v1::GenerateRequest last_generate;  // guarded by mu
  grpc::Status Sketch(grpc::ServerContext*, const v1::SketchRequest*,
                      grpc::ServerWriter<v1::SketchEvent>* w) override {
    for (const char* p : {"p0", "p1"}) {
      v1::SketchEvent ev;
      ev.mutable_point()->set_text(p);
      w->Write(ev);
    }
    v1::SketchEvent done;
    done.mutable_done()->set_split(true);
    w->Write(done);
    return grpc::Status::OK;
  }
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateEvent>* w) override {
    {
      std::lock_guard<std::mutex> l(mu);
      last_generate = *req;
    }
    for (const char* t : {"full ", "answer"}) {
      v1::GenerateEvent ev;
      ev.mutable_delta()->set_text(t);
      ev.mutable_delta()->add_logprobs(-0.25f);
      w->Write(ev);
      while (hold && !ctx->IsCancelled()) std::this_thread::sleep_for(milliseconds(2));
      if (ctx->IsCancelled()) {
        ++cancelled;
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status Load(grpc::ServerContext*, const v1::LoadRequest*, v1::LoadResponse* r) override {
    r->set_node("cloud");
    r->add_models("big-model");
    r->set_max_slots(4);
    r->set_free_slots(4);
    return grpc::Status::OK;
  }
};

struct Reply {
  int status = 0;
  std::string headers, body;
};

std::string Dechunk(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t eol = s.find("\r\n", i);
    if (eol == std::string::npos) break;
    const size_t n = std::stoul(s.substr(i, eol - i), nullptr, 16);
    if (n == 0) break;
    out += s.substr(eol + 2, n);
    i = eol + 2 + n + 2;
  }
  return out;
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

// One request with Connection: close; the whole reply (a chunked body decoded).
Reply Call(int port, const std::string& method, const std::string& path,
           const std::string& body = "", const std::string& extra_headers = "") {
  const int fd = Connect(port);
  const std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n" +
                          "Content-Type: application/json\r\nConnection: close\r\n" +
                          extra_headers + "Content-Length: " + std::to_string(body.size()) +
                          "\r\n\r\n" + body;
  size_t sent = 0;
  while (sent < req.size()) {
    const ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer (413) and close before the body is in
    sent += size_t(n);
  }
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, size_t(n));
  close(fd);
  Reply r;
  const size_t end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || end == std::string::npos) return r;
  r.status = std::stoi(raw.substr(9, 3));
  r.headers = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  if (r.headers.find("Transfer-Encoding: chunked") != std::string::npos) r.body = Dechunk(r.body);
  return r;
}

// The `data:` payloads of an SSE body.
std::vector<std::string> Events(const std::string& body) {
  std::vector<std::string> out;
  size_t i = 0;
  while ((i = body.find("data: ", i)) != std::string::npos) {
    const size_t end = body.find("\n\n", i);
    out.push_back(body.substr(i + 6, end - i - 6));
    i = end;
  }
  return out;
}

class HttpTest : public ::testing::Test {
 protected:
  void Start(const std::string& extra = "") {
    ServerOptions o;
    auto es = GrpcServer::Start(o, {{v1::Edge::service_full_name(), &edge_}});
    auto cs = GrpcServer::Start(o, {{v1::Cloud::service_full_name(), &cloud_}});
    ASSERT_TRUE(es.ok() && cs.ok());
    es_ = *std::move(es);
    cs_ = *std::move(cs);
    auto root = ConfigNode::LoadString(
        "cloud: " + cs_->address() + "\nedges: [" + es_->address() +
            "]\npolicy: pice-arith\ntimeouts: {load_poll: 60s}\nhttp_max_body_bytes: 4096\n" +
            extra,
        "test.yaml");
    ASSERT_TRUE(root.ok()) << root.status();
    auto opts = ParseSchedulerOptions(*root);
    ASSERT_TRUE(opts.ok()) << opts.status();
    sched_ = Scheduler::Create(*opts);
    auto port = sched_->ServeHttp("127.0.0.1:0");
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }
  void TearDown() override {
    cloud_.hold = false;
    sched_.reset();
    for (auto* s : {&es_, &cs_}) {
      if (*s) (*s)->Shutdown(0);
    }
  }
  std::string Chat(const std::string& model, const std::string& extra = "") {
    return R"({"model": ")" + model +
           R"(", "messages": [{"role": "user", "content": "add 1 and 2"}])" + extra + "}";
  }
  Edge edge_;
  Cloud cloud_;
  std::unique_ptr<GrpcServer> es_, cs_;
  std::unique_ptr<Scheduler> sched_;
  int port_ = 0;
};

TEST_F(HttpTest, ModelsAndHealth) {
  Start();
  Reply m = Call(port_, "GET", "/v1/models");
  ASSERT_EQ(m.status, 200) << m.body;
  json j = json::parse(m.body);
  ASSERT_EQ(j["data"].size(), 4u);
  EXPECT_EQ(j["data"][1]["id"], "pice-sketch");
  EXPECT_EQ(j["data"][3]["id"], "big-model");  // the cloud's model: raw completions
  EXPECT_EQ(Call(port_, "GET", "/health").status, 200);
  sched_->service()->SetDraining();
  EXPECT_EQ(Call(port_, "GET", "/health").status, 503);
  Reply refused = Call(port_, "POST", "/v1/chat/completions", Chat("pice-auto"));
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(json::parse(refused.body)["error"]["code"], "unavailable");
}

TEST_F(HttpTest, ChatAndCompletionsWholeAndStreamedAgree) {
  Start();
  Reply whole = Call(port_, "POST", "/v1/chat/completions", Chat("pice-sketch"));
  ASSERT_EQ(whole.status, 200) << whole.body;
  json w = json::parse(whole.body);
  EXPECT_EQ(w["object"], "chat.completion");
  const std::string content = w["choices"][0]["message"]["content"];
  EXPECT_EQ(content, "x(p0)\nx(p1)");  // the scheduler's default separator
  EXPECT_EQ(w["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(w["pice"]["route"], "sketch");
  EXPECT_EQ(w["pice"]["points"].size(), 2u);
  EXPECT_TRUE(w["usage"].contains("total_tokens"));

  Reply streamed = Call(port_, "POST", "/v1/chat/completions",
                        Chat("pice-sketch", R"(, "stream": true, "stream_options": {"include_usage": true})"));
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_NE(streamed.headers.find("text/event-stream"), std::string::npos);
  std::vector<std::string> events = Events(streamed.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  bool usage = false, finished = false;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json c = json::parse(events[i]);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    if (c["choices"].empty()) {
      usage = c.contains("usage");
      continue;
    }
    const json& d = c["choices"][0]["delta"];
    if (d.contains("content")) text += d["content"].get<std::string>();
    if (!c["choices"][0]["finish_reason"].is_null()) finished = true;
  }
  EXPECT_EQ(text, content);  // the same answer, in sketch order
  EXPECT_TRUE(usage);
  EXPECT_TRUE(finished);

  Reply comp = Call(port_, "POST", "/v1/completions",
                    R"({"model": "pice-cloud", "prompt": "add 1 and 2", "max_tokens": 16})");
  ASSERT_EQ(comp.status, 200) << comp.body;
  json c = json::parse(comp.body);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "full answer");
  EXPECT_EQ(c["pice"]["route"], "cloud");
}

// The cloud's own model by name: a raw completion (no sketch, no template), as
// llama-server serves it; logprobs when asked. What a pice-cloud with this stack as its
// backend relies on.
TEST_F(HttpTest, TheCloudModelByNameIsARawCompletionWithLogprobs) {
  Start();
  Reply comp = Call(port_, "POST", "/v1/completions",
                    R"({"model": "big-model", "prompt": "Q: x\nS:", "logprobs": 1, "max_tokens": 9})");
  ASSERT_EQ(comp.status, 200) << comp.body;
  json c = json::parse(comp.body);
  EXPECT_EQ(c["choices"][0]["text"], "full answer");
  EXPECT_EQ(c["choices"][0]["logprobs"]["token_logprobs"], json::array({-0.25, -0.25}));
  EXPECT_EQ(c["pice"]["route"], "cloud");
  {
    std::lock_guard<std::mutex> l(cloud_.mu);
    EXPECT_EQ(cloud_.last_generate.format(), v1::PROMPT_RAW_TEXT);
    EXPECT_EQ(cloud_.last_generate.question(), "Q: x\nS:");
    EXPECT_EQ(cloud_.last_generate.params().max_tokens(), 9);
  }
  Reply chat = Call(port_, "POST", "/v1/chat/completions",
                    R"({"model": "big-model", "stream": true, "logprobs": true, "messages": [)"
                    R"({"role": "system", "content": "s"}, {"role": "user", "content": "u"}]})");
  ASSERT_EQ(chat.status, 200) << chat.body;
  int with_logprobs = 0;
  for (const std::string& e : Events(chat.body)) {
    if (e == "[DONE]") continue;
    json j = json::parse(e);
    if (!j["choices"].empty() && j["choices"][0]["logprobs"].is_object()) {
      EXPECT_EQ(j["choices"][0]["logprobs"]["content"][0]["logprob"], -0.25);
      ++with_logprobs;
    }
  }
  EXPECT_EQ(with_logprobs, 2);
  {
    std::lock_guard<std::mutex> l(cloud_.mu);
    EXPECT_EQ(cloud_.last_generate.format(), v1::PROMPT_RAW_CHAT);
    ASSERT_EQ(cloud_.last_generate.history_size(), 1);
    EXPECT_EQ(cloud_.last_generate.history(0).role(), "system");
  }
  Reply unknown = Call(port_, "POST", "/v1/completions", R"({"model": "nope", "prompt": "x"})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.body.find("big-model"), std::string::npos) << unknown.body;
  // gRPC: a model the cloud does not serve is NOT_FOUND; a raw format needs a model.
  v1::QueryRequest q;
  q.set_prompt("x");
  q.set_model("nope");
  grpc::Status s = sched_->service()->Start("k", q, std::chrono::system_clock::now() + std::chrono::seconds(5),
                                            [](v1::QueryEvent) {}, [](grpc::Status) {}, nullptr, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  q.clear_model();
  q.set_format(v1::PROMPT_RAW_TEXT);
  s = sched_->service()->Start("k", q, std::chrono::system_clock::now() + std::chrono::seconds(5),
                               [](v1::QueryEvent) {}, [](grpc::Status) {}, nullptr, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("format"), std::string::npos);
}

// A conversation: the last user message is the question, the earlier turns reach the
// cloud as history (system/developer, user, assistant), in order.
TEST_F(HttpTest, EarlierMessagesReachTheCloudAsHistory) {
  Start();
  Reply r = Call(port_, "POST", "/v1/chat/completions", R"({"model": "pice-cloud", "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": "add 1 and 2"},
      {"role": "assistant", "content": [{"type": "text", "text": "1+2=3."}]},
      {"role": "user", "content": "and 3 and 4?"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  std::lock_guard<std::mutex> l(cloud_.mu);
  EXPECT_EQ(cloud_.last_generate.question(), "and 3 and 4?");
  ASSERT_EQ(cloud_.last_generate.history_size(), 3);
  EXPECT_EQ(cloud_.last_generate.history(0).role(), "system");
  EXPECT_EQ(cloud_.last_generate.history(1).content(), "add 1 and 2");
  EXPECT_EQ(cloud_.last_generate.history(2).role(), "assistant");
  EXPECT_EQ(cloud_.last_generate.history(2).content(), "1+2=3.");
}

TEST_F(HttpTest, BadRequestsGetOpenAIErrorsWithTheirStatus) {
  Start();
  struct Case {
    std::string method, path, body;
    int status;
    std::string param;  // "" = null
  };
  const std::string big(5000, 'a');
  const std::vector<Case> cases = {
      {"POST", "/v1/chat/completions", "{not json", 400, ""},
      {"POST", "/v1/chat/completions", "[1, 2]", 400, ""},
      {"POST", "/v1/chat/completions", R"({"messages": []})", 400, "model"},
      {"POST", "/v1/chat/completions", R"({"model": "pice-auto"})", 400, "messages"},
      {"POST", "/v1/chat/completions", R"({"model": "pice-auto", "messages": [{"role": "user", "content": 5}]})", 400, "messages[0].content"},
      {"POST", "/v1/chat/completions", Chat("pice-auto", R"(, "n": 2)"), 400, "n"},
      {"POST", "/v1/chat/completions", R"({"model": "pice-auto", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})", 400, "messages[1].role"},
      {"POST", "/v1/chat/completions", R"({"model": "pice-auto", "messages": [{"role": "tool", "content": "q"}, {"role": "user", "content": "a"}]})", 400, "messages[0].role"},
      {"POST", "/v1/chat/completions", Chat("pice-auto", R"(, "temperature": "hot")"), 400, "temperature"},
      {"POST", "/v1/chat/completions", Chat("pice-auto", R"(, "temperature": 500)"), 400, "temperature"},
      {"POST", "/v1/chat/completions", Chat("pice-auto", R"(, "max_tokens": -1)"), 400, "max_tokens"},
      {"POST", "/v1/chat/completions", Chat("pice-auto", R"(, "stop": [1])"), 400, "stop"},
      {"POST", "/v1/chat/completions", Chat("pice-auto", R"(, "pice": {"route": "sideways"})"), 400, "pice.route"},
      {"POST", "/v1/chat/completions", "{\"model\": \"pice-auto\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}", 400, ""},
      {"POST", "/v1/chat/completions", Chat("gpt-4"), 404, "model"},
      {"POST", "/v1/completions", R"({"model": "pice-auto", "prompt": ")" + big + "\"}", 413, ""},
      {"GET", "/v1/chat/completions", "", 405, ""},
      {"GET", "/v1/nothing", "", 404, ""},
  };
  for (const Case& c : cases) {
    Reply r = Call(port_, c.method, c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body.substr(0, 80) << ": " << r.body;
    json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_EQ(j["error"]["param"].is_null() ? "" : j["error"]["param"].get<std::string>(), c.param)
        << c.body.substr(0, 80);
  }
}

// Keep-alive: several queries one after the other on one connection (the disconnect
// watch of a finished query must not eat the next request; the openai SDK found that).
TEST_F(HttpTest, OneConnectionCarriesQueryAfterQuery) {
  Start();
  const int fd = Connect(port_);
  for (int i = 0; i < 3; ++i) {
    const std::string body = Chat(i % 2 ? "pice-cloud" : "pice-sketch");
    const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
    std::string got;
    char buf[4096];
    size_t need = std::string::npos;
    while (need == std::string::npos || got.size() < need) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      ASSERT_GT(n, 0) << "request " << i << ": connection closed after " << got;
      got.append(buf, size_t(n));
      const size_t end = got.find("\r\n\r\n");
      const size_t cl = got.find("Content-Length: ");
      if (end != std::string::npos && cl != std::string::npos) {
        need = end + 4 + std::stoul(got.substr(cl + 16));
      }
    }
    EXPECT_EQ(got.substr(9, 3), "200") << got;
    EXPECT_EQ(json::parse(got.substr(got.find("\r\n\r\n") + 4))["object"], "chat.completion");
  }
  close(fd);
}

// 256 connections each in the middle of a request (the body not all sent yet) hold no
// thread: a new client is still answered at once.
TEST_F(HttpTest, ManyHeldConnectionsDoNotStarveANewOne) {
  Start();
  std::vector<int> held;
  for (int i = 0; i < 256; ++i) {
    const int fd = Connect(port_);
    const std::string partial =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\"";
    ASSERT_EQ(send(fd, partial.data(), partial.size(), MSG_NOSIGNAL), ssize_t(partial.size()));
    held.push_back(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  Reply r = Call(port_, "GET", "/v1/models");
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  Reply q = Call(port_, "POST", "/v1/chat/completions", Chat("pice-sketch"));
  EXPECT_EQ(q.status, 200) << q.body;
  for (int fd : held) close(fd);
}

// 256 streaming answers in flight at once (each has its first content and waits for the
// rest) while a new client is still served at once: the event loop holds connections,
// not threads.
TEST_F(HttpTest, TwoHundredFiftySixStreamingQueriesHeldWhileANewOneIsServed) {
  Start("limits: {max_concurrent_queries: 300, max_queries_per_client: 0}\n");
  cloud_.hold = true;
  const std::string body = Chat("pice-cloud", R"(, "stream": true)");
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  std::vector<int> held;
  for (int i = 0; i < 256; ++i) {
    const int fd = Connect(port_);
    ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
    held.push_back(fd);
  }
  // Every stream has started: its first content ("full ") arrived.
  for (int fd : held) {
    std::string got;
    char buf[4096];
    while (got.find("full ") == std::string::npos) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      ASSERT_GT(n, 0);
      got.append(buf, size_t(n));
    }
  }
  EXPECT_EQ(sched_->service()->in_flight(), 256);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Call(port_, "GET", "/v1/models").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  cloud_.hold = false;
  Reply q = Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud"));
  EXPECT_EQ(q.status, 200) << q.body;
  // The held streams end with [DONE].
  int done = 0;
  for (int fd : held) {
    std::string got;
    char buf[4096];
    for (ssize_t n; got.find("[DONE]") == std::string::npos && (n = recv(fd, buf, sizeof buf, 0)) > 0;) {
      got.append(buf, size_t(n));
    }
    done += got.find("[DONE]") != std::string::npos;
    close(fd);
  }
  EXPECT_EQ(done, 256);
}

// With an API keys file: no key or a wrong one is 401 (one message for both), a listed
// key works as Bearer or x-api-key, its qpm limit is a 429 with Retry-After; gRPC gets
// UNAUTHENTICATED the same way.
TEST_F(HttpTest, ApiKeysAre401WithoutAValidKeyAndCarryTheirLimits) {
  char name[] = "/tmp/pice_http_keys_XXXXXX";
  const int fd = mkstemp(name);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(name) << "alice " << Sha256Hex("sk-alice") << " qpm=2\n";
  Start(std::string("api_keys_file: ") + name + "\n");
  Reply none = Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud"));
  Reply wrong = Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud"),
                     "Authorization: Bearer sk-mallory\r\n");
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  EXPECT_EQ(json::parse(none.body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(json::parse(none.body)["error"]["message"], json::parse(wrong.body)["error"]["message"]);
  EXPECT_EQ(none.body.find("alice"), std::string::npos);
  Reply bearer = Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud"),
                      "Authorization: Bearer sk-alice\r\n");
  EXPECT_EQ(bearer.status, 200) << bearer.body;
  Reply header = Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud"), "x-api-key: sk-alice\r\n");
  EXPECT_EQ(header.status, 200) << header.body;
  Reply limited = Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud"), "x-api-key: sk-alice\r\n");
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_NE(limited.headers.find("Retry-After: "), std::string::npos) << limited.headers;
  EXPECT_EQ(limited.body.find("sk-alice"), std::string::npos);  // the key never shows
  // gRPC: the same service, the same rule.
  v1::QueryRequest q;
  q.set_prompt("add 1 and 2");
  grpc::Status s = sched_->service()->Start(PiceService::ClientKey("sk-mallory", "127.0.0.1"), q,
                                            std::chrono::system_clock::now() + std::chrono::seconds(5),
                                            [](v1::QueryEvent) {}, [](grpc::Status) {}, nullptr, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = sched_->service()->Start(PiceService::ClientKey("", "127.0.0.1"), q,
                               std::chrono::system_clock::now() + std::chrono::seconds(5),
                               [](v1::QueryEvent) {}, [](grpc::Status) {}, nullptr, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::remove(name);
}

TEST_F(HttpTest, AtTheLimitA429CarriesRetryAfter) {
  Start("limits: {max_concurrent_queries: 1}\n");
  cloud_.hold = true;
  std::thread first([&] { Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud")); });
  for (int i = 0; i < 500 && sched_->service()->in_flight() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(2));
  }
  Reply r = Call(port_, "POST", "/v1/chat/completions", Chat("pice-cloud"));
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_NE(r.headers.find("Retry-After: "), std::string::npos) << r.headers;
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "rate_limit_exceeded");
  cloud_.hold = false;
  first.join();
}

TEST_F(HttpTest, AClientThatLeavesMidStreamCancelsItsQuery) {
  Start();
  cloud_.hold = true;
  const int fd = Connect(port_);
  const std::string body = Chat("pice-cloud", R"(, "stream": true)");
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
  // Read until the first content arrives ("full "), then hang up.
  std::string got;
  char buf[4096];
  while (got.find("full ") == std::string::npos) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    got.append(buf, size_t(n));
  }
  close(fd);
  for (int i = 0; i < 500 && (cloud_.cancelled == 0 || sched_->service()->in_flight() > 0); ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(cloud_.cancelled.load(), 1) << "the cloud's Generate was cancelled";
  EXPECT_EQ(sched_->service()->in_flight(), 0);
}

}  // namespace
}  // namespace pice::scheduler
