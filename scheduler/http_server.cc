#include "scheduler/http_server.h"

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "scheduler/openai.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

std::string Chunked(const std::string& data) {
  return absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n");
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(const HttpOptions& o, PiceService* service)
      : options_(o), service_(service), ioc_(std::max(1, o.threads)), acceptor_(ioc_) {}

  absl::Status Listen();
  void Stop();
  int port() const { return port_; }

  // The queries of HTTP clients, from before PiceService::Start until their finish
  // callback (the last time a query touches the server): Stop cancels them and waits for
  // the set to empty before the event loop their callbacks post to goes away.
  uint64_t Begin() {
    std::lock_guard<std::mutex> l(mu_);
    const uint64_t id = next_id_++;
    running_[id] = nullptr;
    return id;
  }
  void SetCancel(uint64_t id, std::function<void()> cancel) {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = running_.find(id); it != running_.end()) it->second = std::move(cancel);
  }
  void End(uint64_t id) {
    std::lock_guard<std::mutex> l(mu_);
    running_.erase(id);
    ended_.notify_all();
  }

  const HttpOptions& options() const { return options_; }
  PiceService* service() const { return service_; }

 private:
  void Accept();

  HttpOptions options_;
  PiceService* service_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::once_flag stop_once_;
  std::mutex mu_;
  std::condition_variable ended_;
  std::map<uint64_t, std::function<void()>> running_;  // guarded by mu_
  uint64_t next_id_ = 1;                               // guarded by mu_
};

namespace {

// One connection: requests one after the other (keep-alive); while a query runs, a read
// watches for the client going away.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : stream_(std::move(socket)), server_(server) {}

  void Run() { ReadRequest(); }

 private:
  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(server_->options().max_body_bytes);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(std::chrono::minutes(5));  // idle keep-alive connections
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->OnRequest(ec);
                     });
  }

  void OnRequest(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      openai::Error e;
      e.status = 413;
      e.message = absl::StrCat("the request body is larger than ",
                               server_->options().max_body_bytes, " bytes");
      return SendError(e);
    }
    if (ec) return Close();
    stream_.expires_never();
    http::request<http::string_body> req = parser_->release();
    keep_alive_ = req.keep_alive();
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    if (path == "/health") {
      if (req.method() != http::verb::get) return SendError(MethodNotAllowed());
      const bool draining = server_->service()->draining();
      return SendJson(draining ? 503 : 200, json{{"status", draining ? "draining" : "ok"}});
    }
    if (path == "/v1/models") {
      if (req.method() != http::verb::get) return SendError(MethodNotAllowed());
      return SendJson(200, openai::ModelsJson(Now(), server_->service()->registry()->CloudModels()));
    }
    if (path == "/v1/chat/completions" || path == "/v1/completions") {
      if (req.method() != http::verb::post) return SendError(MethodNotAllowed());
      return StartQuery(path == "/v1/chat/completions" ? openai::Endpoint::kChat
                                                       : openai::Endpoint::kCompletions,
                        req);
    }
    openai::Error e;
    e.status = 404;
    e.message = absl::StrCat("no such path: ", path);
    e.code = "not_found";
    SendError(e);
  }

  static openai::Error MethodNotAllowed() {
    openai::Error e;
    e.status = 405;
    e.message = "method not allowed";
    return e;
  }

  static int64_t Now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  }

  // The API key (`Authorization: Bearer K` or `x-api-key`) and the peer's address: the
  // client a query counts against, as for gRPC (PiceService::ClientKey).
  std::string ClientKey(const http::request<http::string_body>& req) {
    std::string key;
    auto auth = req.find(http::field::authorization);
    if (auth != req.end() && auth->value().starts_with("Bearer ") && auth->value().size() > 7) {
      key = std::string(auth->value().substr(7));
    } else if (auto k = req.find("x-api-key"); k != req.end()) {
      key = std::string(k->value());
    }
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    return PiceService::ClientKey(key, ec ? "unknown" : ep.address().to_string());
  }

  void StartQuery(openai::Endpoint endpoint, const http::request<http::string_body>& req) {
    openai::Error error;
    auto parsed = openai::ParseRequest(endpoint, req.body(), &error,
                                       server_->service()->registry()->CloudModels());
    if (!parsed) return SendError(error);
    stream_mode_ = parsed->stream;
    include_usage_ = parsed->include_usage;
    HttpServer::Impl* server = server_;
    query_id_ = server->Begin();
    const std::string id = absl::StrCat(
        endpoint == openai::Endpoint::kChat ? "chatcmpl-" : "cmpl-", query_id_);
    response_.emplace(endpoint, id, parsed->model, Now(), &server_->service()->options(),
                      parsed->logprobs);
    std::weak_ptr<Session> weak = shared_from_this();
    auto strand = stream_.get_executor();
    std::function<void()> cancel;
    int retry_ms = 0;
    grpc::Status s = server_->service()->Start(
        ClientKey(req), parsed->query, std::chrono::system_clock::time_point::max(),
        [weak, strand](v1::QueryEvent ev) {
          if (auto self = weak.lock()) {
            net::post(strand, [self, ev = std::move(ev)] { self->OnEvent(ev); });
          }
        },
        [weak, strand, server, qid = query_id_](grpc::Status st) {
          if (auto self = weak.lock()) {
            net::post(strand, [self, st = std::move(st)] { self->OnFinish(st); });
          }
          server->End(qid);  // the last touch of the server by this query
        },
        &cancel, &retry_ms);
    if (!s.ok()) {
      server->End(query_id_);
      return SendError(openai::FromStatus(s, retry_ms));
    }
    cancel_ = cancel;
    server->SetCancel(query_id_, cancel);
    if (stream_mode_) {
      Write(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n",
                         keep_alive_ ? "" : "Connection: close\r\n", "\r\n"));
    }
    WatchDisconnect();
  }

  // While the query runs the client should send nothing; a read that ends means it left.
  // Bytes that do arrive (a pipelined request) are kept in buffer_ for the parser. The
  // read is cancelled before the next request is read (NextOrClose).
  void WatchDisconnect() {
    watching_ = true;
    stream_.socket().async_read_some(
        buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
          self->watching_ = false;
          if (ec == net::error::operation_aborted) {
            if (self->read_after_watch_) {
              self->read_after_watch_ = false;
              self->ReadRequest();
            }
            return;
          }
          if (ec) {
            if (self->cancel_) {
              spdlog::info("http: client left; cancelling its query");
              self->gone_ = true;
              self->cancel_();
            }
            return;
          }
          self->buffer_.commit(n);
          if (self->read_after_watch_) {
            self->read_after_watch_ = false;
            self->ReadRequest();
          } else if (self->buffer_.size() < 64 * 1024) {
            self->WatchDisconnect();
          }
        });
  }

  void OnEvent(const v1::QueryEvent& ev) {
    if (gone_) return;
    for (const json& chunk : response_->Chunks(ev)) {
      if (stream_mode_) Write(Chunked("data: " + chunk.dump() + "\n\n"));
    }
  }

  void OnFinish(const grpc::Status& st) {
    cancel_ = nullptr;
    if (gone_) return Close();
    if (stream_mode_) {
      if (st.ok()) {
        for (const json& chunk : response_->FinalChunks(include_usage_)) {
          Write(Chunked("data: " + chunk.dump() + "\n\n"));
        }
      } else {
        Write(Chunked("data: " + openai::ErrorJson(openai::FromStatus(st)).dump() + "\n\n"));
      }
      Write(Chunked("data: [DONE]\n\n"));
      Write("0\r\n\r\n");
      AfterResponse();
      return;
    }
    if (!st.ok()) return SendError(openai::FromStatus(st));
    SendJson(200, response_->Whole());
  }

  void SendError(const openai::Error& e) {
    SendJson(e.status, openai::ErrorJson(e),
             e.retry_after_s > 0 ? absl::StrCat("Retry-After: ", e.retry_after_s, "\r\n") : "");
  }

  void SendJson(int status, const json& body, const std::string& extra_headers = "") {
    const std::string b = body.dump();
    Write(absl::StrCat("HTTP/1.1 ", status, " ", Reason(status),
                       "\r\nContent-Type: application/json\r\nContent-Length: ", b.size(),
                       "\r\n", extra_headers, keep_alive_ ? "" : "Connection: close\r\n",
                       "\r\n", b));
    AfterResponse();
  }

  // The response is queued: read the next request, or close once it is written.
  void AfterResponse() {
    response_done_ = true;
    if (!writing_) NextOrClose();
  }

  void NextOrClose() {
    response_done_ = false;
    if (!keep_alive_) return Close();
    if (watching_) {
      // The disconnect watch still reads: stop it, then read the next request.
      read_after_watch_ = true;
      beast::error_code ec;
      stream_.socket().cancel(ec);
      return;
    }
    ReadRequest();
  }

  void Write(std::string data) {
    out_.push_back(std::move(data));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (out_.empty()) {
      writing_ = false;
      if (response_done_) NextOrClose();
      return;
    }
    writing_ = true;
    net::async_write(stream_.socket(), net::buffer(out_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->out_.pop_front();
                       if (ec) {
                         self->out_.clear();
                         self->writing_ = false;
                         if (self->cancel_) {
                           self->gone_ = true;
                           self->cancel_();
                         }
                         return self->Close();
                       }
                       self->WriteNext();
                     });
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  HttpServer::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  bool stream_mode_ = false;
  bool include_usage_ = false;
  std::optional<openai::Response> response_;
  uint64_t query_id_ = 0;
  std::function<void()> cancel_;
  bool gone_ = false;
  bool watching_ = false;          // the disconnect watch's read is pending
  bool read_after_watch_ = false;  // read the next request once it has ended
  std::deque<std::string> out_;
  bool writing_ = false;
  bool response_done_ = false;
};

}  // namespace

absl::Status HttpServer::Impl::Listen() {
  const size_t colon = options_.listen.rfind(':');
  if (auto s = ValidateListenAddress(options_.listen, "http_listen"); !s.ok()) return s;
  std::string host = options_.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = 0;
  (void)absl::SimpleAtoi(options_.listen.substr(colon + 1), &port);
  beast::error_code ec;
  auto address = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("http_listen: bad host '", host, "'"));
  tcp::endpoint ep(address, static_cast<uint16_t>(port));
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("http_listen: cannot listen on ", options_.listen, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  Accept();
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
  spdlog::info("http: OpenAI API on {}:{}", host, port_);
  return absl::OkStatus();
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
    if (ec == net::error::operation_aborted) return;
    if (!ec) std::make_shared<Session>(std::move(s), this)->Run();
    Accept();
  });
}

void HttpServer::Impl::Stop() {
  std::call_once(stop_once_, [this] {
    net::post(ioc_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    std::vector<std::function<void()>> cancels;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [id, cancel] : running_) {
        if (cancel) cancels.push_back(cancel);
      }
    }
    for (auto& cancel : cancels) cancel();  // outside mu_: a cancel may finish at once
    // Cancelled queries end once their node calls have.
    std::unique_lock<std::mutex> l(mu_);
    if (!ended_.wait_for(l, std::chrono::seconds(30), [this] { return running_.empty(); })) {
      spdlog::warn("http: {} queries still running at stop", running_.size());
    }
    l.unlock();
    ioc_.stop();
    for (auto& t : threads_) t.join();
  });
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Stop(); }
int HttpServer::port() const { return impl_->port(); }
void HttpServer::Stop() { impl_->Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpOptions& options,
                                                             PiceService* service) {
  auto impl = std::make_unique<Impl>(options, service);
  if (absl::Status s = impl->Listen(); !s.ok()) return s;
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

}  // namespace pice::scheduler
