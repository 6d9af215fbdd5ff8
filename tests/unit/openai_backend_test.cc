// OpenAIBackend against a scripted HTTP server on loopback: what it sends (prompt or
// messages, parameters, key) and how it maps what comes back (SSE chunks, logprobs,
// usage) and every fault a remote can show (429 + Retry-After, 5xx with retry, 401, 400,
// a stream cut short, a stall, a malformed chunk, a refused connection), plus cancellation
// and stop strings. The scripted server is a test double: a real server (vLLM,
// llama-server) cannot be made to fail on cue; the real end to end is
// tests/integration/remote_backend_test.cc.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cloud/cloud_config.h"
#include "edge/edge_config.h"
#include "node/openai_backend.h"
#include "nlohmann/json.hpp"

namespace pice {
namespace {

using json = nlohmann::json;

// Accepts connections one at a time; reads a request (headers + Content-Length body) and
// hands the socket to the script for that connection (by connection number).
class ScriptedServer {
 public:
  using Script = std::function<void(int fd, int conn)>;
  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(fd_, 16);
    thread_ = std::thread([this] { Run(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  static void Send(int fd, const std::string& s) { (void)!write(fd, s.data(), s.size()); }
  // Stalls until the client closes the connection or `release` is set.
  static void StallUntilClosed(int fd, const std::atomic<bool>& release) {
    char c;
    while (!release) {
      const ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  static std::string Sse(const std::vector<json>& chunks, bool done = true) {
    std::string out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    for (const json& c : chunks) out += "data: " + c.dump() + "\n\n";
    if (done) out += "data: [DONE]\n\n";
    return out;
  }
  static std::string Status(int code, const std::string& body, const std::string& extra = "") {
    return "HTTP/1.1 " + std::to_string(code) + " X\r\nContent-Type: application/json\r\n" + extra +
           "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }

 private:
  void Run() {
    for (int conn = 0; !stop_; ++conn) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      size_t want = std::string::npos;
      while (true) {
        const size_t head = req.find("\r\n\r\n");
        if (head != std::string::npos && want == std::string::npos) {
          const size_t cl = req.find("Content-Length: ");
          want = head + 4 + (cl == std::string::npos ? 0 : std::atoi(req.c_str() + cl + 16));
        }
        if (want != std::string::npos && req.size() >= want) break;
        const ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, n);
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        requests_.push_back(req);
      }
      script_(c, conn);
      close(c);
    }
  }
  Script script_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

json Body(const std::string& request) {
  return json::parse(request.substr(request.find("\r\n\r\n") + 4));
}

json Chunk(const std::string& text, std::vector<float> lps = {}, const char* finish = nullptr) {
  json c = {{"index", 0}, {"text", text}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
  c["logprobs"] = lps.empty() ? json(nullptr) : json{{"token_logprobs", lps}};
  return {{"object", "text_completion"}, {"choices", json::array({c})}};
}

struct Outcome {
  absl::StatusOr<BackendResult> result = absl::UnknownError("no result");
  std::vector<std::string> pieces;
  double seconds = 0;
};

RemoteModelOptions Options(const ScriptedServer& s) {
  RemoteModelOptions o;
  o.base_url = s.url();
  o.model = "m";
  o.timeout_s = 2;
  o.max_retries = 1;
  return o;
}

BackendRequest Request() {
  BackendRequest r;
  r.prompt = {"Q: add 1 and 2\nS:", ""};
  r.options.max_tokens = 16;
  return r;
}

// Submits `r` and waits for on_done.
Outcome Generate(OpenAIBackend& b, BackendRequest r,
            std::function<bool(const std::string&)> on_piece = nullptr) {
  Outcome out;
  std::promise<void> done;
  const auto t0 = std::chrono::steady_clock::now();
  r.on_piece = [&](std::string_view p, const std::vector<float>&) {
    out.pieces.emplace_back(p);
    return on_piece ? on_piece(std::string(p)) : true;
  };
  r.on_done = [&](absl::StatusOr<BackendResult> res) {
    out.result = std::move(res);
    done.set_value();
  };
  absl::Status s = b.Submit(std::move(r));
  if (!s.ok()) {
    out.result = s;
    return out;
  }
  done.get_future().wait();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

TEST(OpenAIBackendTest, StreamsACompletionWithLogprobsAndUsage) {
  ScriptedServer server([](int fd, int) {
    json usage = {{"choices", json::array()},
                  {"usage", {{"prompt_tokens", 9}, {"completion_tokens", 3}}}};
    ScriptedServer::Send(fd, ScriptedServer::Sse({Chunk(" 1.", {-0.5f, -0.25f}),
                                                  Chunk(" 1+2", {-0.25f}, "stop"), usage}));
  });
  auto b = OpenAIBackend::Create(Options(server));
  ASSERT_TRUE(b.ok()) << b.status();
  BackendRequest r = Request();
  r.history = {{"user", "hi"}, {"assistant", "hello"}};
  r.options.stop = {"\n\n"};
  r.options.sampling.temperature = 0.5f;
  r.options.sampling.seed = 7;
  Outcome o = Generate(**b, std::move(r));
  ASSERT_TRUE(o.result.ok()) << o.result.status();
  EXPECT_EQ(o.result->text, " 1. 1+2");
  EXPECT_EQ(o.pieces, (std::vector<std::string>{" 1.", " 1+2"}));
  EXPECT_EQ(o.result->finish, FinishReason::kStop);
  EXPECT_EQ(o.result->prompt_tokens, 9);
  EXPECT_EQ(o.result->generated_tokens, 3);
  ASSERT_TRUE(o.result->mean_logprob.has_value());
  EXPECT_NEAR(*o.result->mean_logprob, -1.0 / 3, 1e-6);
  EXPECT_TRUE((*b)->Notes().empty());

  const std::string req = server.requests().at(0);
  EXPECT_EQ(req.rfind("POST /v1/completions HTTP/1.1", 0), 0u) << req;
  json body = Body(req);
  EXPECT_EQ(body["model"], "m");
  // The prompt exactly as the engine would tokenize it (PlainPromptText).
  EXPECT_EQ(body["prompt"], "user: hi\nassistant: hello\nQ: add 1 and 2\nS:");
  EXPECT_EQ(body["max_tokens"], 16);
  EXPECT_FLOAT_EQ(body["temperature"].get<float>(), 0.5f);
  EXPECT_EQ(body["seed"], 7);
  EXPECT_EQ(body["stop"], json::array({"\n\n"}));
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["logprobs"], 1);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
}

TEST(OpenAIBackendTest, ChatTemplatesSendMessagesAndAKey) {
  setenv("PICE_TEST_REMOTE_KEY", "sk-test-123", 1);
  ScriptedServer server([](int fd, int) {
    json c = {{"choices", json::array({{{"index", 0},
                                        {"delta", {{"content", " point"}}},
                                        {"logprobs", {{"content", json::array({{{"token", " point"}, {"logprob", -0.5}}})}}},
                                        {"finish_reason", "length"}}})}};
    ScriptedServer::Send(fd, ScriptedServer::Sse({c}));
  });
  RemoteModelOptions opts = Options(server);
  opts.api_key_env = "PICE_TEST_REMOTE_KEY";
  auto b = OpenAIBackend::Create(opts);
  ASSERT_TRUE(b.ok()) << b.status();
  BackendRequest r = Request();
  r.chat = true;
  r.system = "be brief";
  r.prompt = {"continue point 1", "1. a"};
  Outcome o = Generate(**b, std::move(r));
  ASSERT_TRUE(o.result.ok()) << o.result.status();
  EXPECT_EQ(o.result->text, " point");
  EXPECT_EQ(o.result->finish, FinishReason::kLength);
  EXPECT_NEAR(o.result->mean_logprob.value_or(0), -0.5, 1e-6);
  const std::string req = server.requests().at(0);
  EXPECT_EQ(req.rfind("POST /v1/chat/completions HTTP/1.1", 0), 0u) << req;
  EXPECT_NE(req.find("Bearer sk-test-123"), std::string::npos);
  json body = Body(req);
  ASSERT_EQ(body["messages"].size(), 3u);
  EXPECT_EQ(body["messages"][0]["role"], "system");
  EXPECT_EQ(body["messages"][1]["content"], "continue point 1");
  EXPECT_EQ(body["messages"][2]["role"], "assistant");
  EXPECT_EQ(body["messages"][2]["content"], "1. a");
  EXPECT_EQ(body["continue_final_message"], true);
  EXPECT_EQ(body["logprobs"], true);
}

TEST(OpenAIBackendTest, RateLimitIsResourceExhaustedWithItsRetryAfterAndNoRetry) {
  ScriptedServer server([](int fd, int) {
    ScriptedServer::Send(fd, ScriptedServer::Status(429, R"({"error":{"message":"slow down"}})",
                                                    "Retry-After: 3\r\n"));
  });
  auto b = OpenAIBackend::Create(Options(server));
  Outcome o = Generate(**b, Request());
  ASSERT_EQ(o.result.status().code(), absl::StatusCode::kResourceExhausted) << o.result.status();
  EXPECT_NE(o.result.status().message().find("slow down"), std::string::npos);
  EXPECT_EQ(RetryAfterMs(o.result.status()), 3000);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(OpenAIBackendTest, ServerErrorIsRetriedThenSucceeds) {
  ScriptedServer server([](int fd, int conn) {
    if (conn == 0) {
      ScriptedServer::Send(fd, ScriptedServer::Status(503, R"({"error":{"message":"warming up"}})"));
    } else {
      ScriptedServer::Send(fd, ScriptedServer::Sse({Chunk("ok", {}, "stop")}));
    }
  });
  auto b = OpenAIBackend::Create(Options(server));
  Outcome o = Generate(**b, Request());
  ASSERT_TRUE(o.result.ok()) << o.result.status();
  EXPECT_EQ(o.result->text, "ok");
  EXPECT_EQ(server.requests().size(), 2u);
  EXPECT_FALSE(o.result->mean_logprob.has_value());
  // An answer without logprobs: Load says what is missing.
  ASSERT_EQ((*b)->Notes().size(), 1u);
  EXPECT_NE((*b)->Notes()[0].find("no logprobs"), std::string::npos);
}

TEST(OpenAIBackendTest, ClientErrorsMapToTheirCodes) {
  for (auto [http, code] : {std::pair{401, absl::StatusCode::kUnavailable},
                            std::pair{404, absl::StatusCode::kUnavailable},
                            std::pair{400, absl::StatusCode::kInvalidArgument},
                            std::pair{500, absl::StatusCode::kUnavailable}}) {
    const int status = http;
    ScriptedServer server([status](int fd, int) {
      ScriptedServer::Send(fd, ScriptedServer::Status(status, R"({"error":{"message":"nope"}})"));
    });
    auto b = OpenAIBackend::Create(Options(server));
    Outcome o = Generate(**b, Request());
    EXPECT_EQ(o.result.status().code(), code) << http << ": " << o.result.status();
    EXPECT_NE(o.result.status().message().find("HTTP " + std::to_string(http)), std::string::npos)
        << o.result.status();
  }
}

TEST(OpenAIBackendTest, AStreamCutShortIsUnavailableAndNotRetried) {
  ScriptedServer server([](int fd, int) {
    ScriptedServer::Send(fd, ScriptedServer::Sse({Chunk("half")}, /*done=*/false));
  });
  auto b = OpenAIBackend::Create(Options(server));
  Outcome o = Generate(**b, Request());
  EXPECT_EQ(o.result.status().code(), absl::StatusCode::kUnavailable) << o.result.status();
  EXPECT_NE(o.result.status().message().find("closed the stream"), std::string::npos);
  EXPECT_EQ(o.pieces, std::vector<std::string>{"half"});
  EXPECT_EQ(server.requests().size(), 1u);  // text was already delivered
}

TEST(OpenAIBackendTest, AStallMidStreamIsCutByTheTimeout) {
  std::atomic<bool> release{false};
  ScriptedServer server([&](int fd, int) {
    std::string s = ScriptedServer::Sse({Chunk("one")}, /*done=*/false);
    ScriptedServer::Send(fd, s);
    ScriptedServer::StallUntilClosed(fd, release);
  });
  RemoteModelOptions opts = Options(server);
  opts.timeout_s = 0.3;
  auto b = OpenAIBackend::Create(opts);
  Outcome o = Generate(**b, Request());
  release = true;
  EXPECT_EQ(o.result.status().code(), absl::StatusCode::kDeadlineExceeded) << o.result.status();
  EXPECT_LT(o.seconds, 2.0);
}

TEST(OpenAIBackendTest, AMalformedChunkIsUnavailable) {
  ScriptedServer server([](int fd, int) {
    ScriptedServer::Send(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: {not json\n\n");
  });
  auto b = OpenAIBackend::Create(Options(server));
  Outcome o = Generate(**b, Request());
  EXPECT_EQ(o.result.status().code(), absl::StatusCode::kUnavailable) << o.result.status();
  EXPECT_NE(o.result.status().message().find("malformed"), std::string::npos);
}

TEST(OpenAIBackendTest, ARefusedConnectionIsUnavailableAfterRetries) {
  int port = 0;
  {
    ScriptedServer gone([](int, int) {});
    port = std::atoi(gone.url().c_str() + std::string("http://127.0.0.1:").size());
  }
  RemoteModelOptions o;
  o.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  o.model = "m";
  o.max_retries = 2;
  auto b = OpenAIBackend::Create(o);
  Outcome out = Generate(**b, Request());
  EXPECT_EQ(out.result.status().code(), absl::StatusCode::kUnavailable) << out.result.status();
  EXPECT_NE(out.result.status().message().find("unreachable"), std::string::npos);
}

TEST(OpenAIBackendTest, CancellingAndStoppingEndTheStreamKeepingTheText) {
  std::atomic<bool> release{false};
  ScriptedServer server([&](int fd, int) {
    ScriptedServer::Send(fd, ScriptedServer::Sse({Chunk("a b"), Chunk(" STOP c")}, false));
    ScriptedServer::StallUntilClosed(fd, release);
  });
  auto b = OpenAIBackend::Create(Options(server));
  // A stop string the server did not apply cuts the text here.
  BackendRequest r = Request();
  r.options.stop = {"STOP"};
  Outcome o = Generate(**b, std::move(r));
  ASSERT_TRUE(o.result.ok()) << o.result.status();
  EXPECT_EQ(o.result->text, "a b ");
  EXPECT_EQ(o.result->finish, FinishReason::kStop);
  // The consumer stops it (on_piece false): finish kCancelled, the text so far.
  o = Generate(**b, Request(), [](const std::string&) { return false; });
  ASSERT_TRUE(o.result.ok()) << o.result.status();
  EXPECT_EQ(o.result->finish, FinishReason::kCancelled);
  EXPECT_EQ(o.result->text, "a b");
  // The caller's cancel flag, while the server stalls.
  BackendRequest c = Request();
  c.cancelled = std::make_shared<std::atomic<bool>>(false);
  auto flag = c.cancelled;
  std::thread t([flag] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    *flag = true;
  });
  o = Generate(**b, std::move(c));
  t.join();
  release = true;
  ASSERT_TRUE(o.result.ok()) << o.result.status();
  EXPECT_EQ(o.result->finish, FinishReason::kCancelled);
  EXPECT_LT(o.seconds, 1.5);
  // A call leaves the in-flight count just after its on_done returns.
  for (int i = 0; i < 200 && (*b)->Stats().active != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ((*b)->Stats().active, 0);
}

TEST(OpenAIBackendTest, ConfigErrorsNameTheKey) {
  auto read = [](const std::string& yaml) -> absl::Status {
    auto root = ConfigNode::LoadString(yaml, "cloud.yaml");
    if (!root.ok()) return root.status();
    std::string path;
    std::optional<RemoteModelOptions> remote;
    return ReadModelOrBackend(*root, &path, &remote);
  };
  EXPECT_NE(read("model: a.gguf\nbackend: {kind: openai, base_url: http://x/v1, model: m}\n")
                .message().find("exactly one of `model`"), std::string::npos);
  EXPECT_NE(read("backend: {kind: vllm, base_url: http://x/v1, model: m}\n").message().find("backend.kind"),
            std::string::npos);
  EXPECT_NE(read("backend: {kind: openai, base_url: ftp://x, model: m}\n").message().find("backend.base_url"),
            std::string::npos);
  EXPECT_NE(read("backend: {kind: openai, base_url: http://x:99999/v1, model: m}\n").message().find("bad port"),
            std::string::npos);
  EXPECT_NE(read("backend: {kind: openai, base_url: http://x/v1}\n").message().find("backend.model"),
            std::string::npos);
  EXPECT_NE(read("backend: {kind: openai, base_url: http://x/v1, model: m, timeout: -1}\n")
                .message().find("backend.timeout"), std::string::npos);
  EXPECT_TRUE(read("backend: {kind: openai, base_url: https://gpu:8443/v1, model: m, timeout: 30s}\n").ok());
  // A path the OS refuses (a component over 255 bytes) is "no such file", not a throw
  // (the config fuzzer found the abort).
  EXPECT_NE(read("model: /" + std::string(300, 'a') + "/x.gguf\n").message().find("no such file"),
            std::string::npos);
  RemoteModelOptions o;
  o.base_url = "http://127.0.0.1:1/v1";
  o.model = "m";
  o.api_key_env = "PICE_TEST_SURELY_UNSET_KEY";
  auto b = OpenAIBackend::Create(o);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("PICE_TEST_SURELY_UNSET_KEY"), std::string::npos);
}

// The examples in deploy/remote/ parse (the GPU servers they name are not contacted).
TEST(OpenAIBackendTest, DeployExamplesParse) {
  const std::string dir = std::string(PICE_SOURCE_DIR) + "/deploy/remote/";
  for (const char* f : {"cloud-vllm.yaml", "cloud-llama-server.yaml", "cloud-ollama.yaml"}) {
    setenv("VLLM_API_KEY", "x", 1);
    auto o = LoadCloudOptions(dir + f);
    ASSERT_TRUE(o.ok()) << f << ": " << o.status();
    ASSERT_TRUE(o->remote.has_value()) << f;
    EXPECT_FALSE(o->remote->model.empty());
  }
  // The mixed edge names a model to download: stand the bundled one in for it.
  std::ifstream in(dir + "edge-mixed.yaml");
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string wanted = "../../models/qwen2.5-0.5b-instruct-q8_0.gguf";
  for (size_t at; (at = yaml.find(wanted)) != std::string::npos;) {
    yaml.replace(at, wanted.size(), std::string(PICE_SOURCE_DIR) + "/models/pice-arith/arith-edge-a.gguf");
  }
  auto root = ConfigNode::LoadString(yaml, "edge-mixed.yaml", dir);
  ASSERT_TRUE(root.ok()) << root.status();
  auto e = ParseEdgeOptions(*root);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->members.size(), 3u);
  EXPECT_FALSE(e->members[0].remote.has_value());
  ASSERT_TRUE(e->members[2].remote.has_value());
  EXPECT_EQ(e->members[2].remote->base_url, "http://edge-gpu:8000/v1");
}

}  // namespace
}  // namespace pice
