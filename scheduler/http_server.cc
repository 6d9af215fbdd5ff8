#include "scheduler/http_server.h"

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <deque>
#include <fstream>
#include <type_traits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "common/server.h"
#include "common/tls_reload.h"
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
  // The TLS context for a new connection: rebuilt when the checked copies of the files
  // change (common/tls_reload.h), looked at no more than once a second. Error: why not.
  absl::StatusOr<std::shared_ptr<net::ssl::context>> TlsContext();

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
  // TLS (options_.tls.enabled()): used by the accept handler only (one accept at a time).
  TlsSnapshot tls_copy_;
  std::shared_ptr<net::ssl::context> tls_ctx_;
  std::string tls_seen_;  // the copies' contents tls_ctx_ was built from
  std::chrono::steady_clock::time_point tls_checked_;
};

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One connection: requests one after the other (keep-alive); while a query runs, a read
// watches for the client going away. Stream: beast::tcp_stream, or TlsStream over it.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  Session(tcp::socket socket, HttpServer::Impl* server) requires(!kTls)
      : stream_(std::move(socket)), server_(server) {}
  Session(tcp::socket socket, HttpServer::Impl* server, std::shared_ptr<net::ssl::context> tls)
    requires(kTls)
      : tls_(std::move(tls)), stream_(std::move(socket), *tls_), server_(server) {}

  void Run() {
    if constexpr (kTls) {
      Lowest().expires_after(std::chrono::seconds(30));
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->Close();
                                self->ReadRequest();
                              });
    } else {
      ReadRequest();
    }
  }

 private:
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(server_->options().max_body_bytes);
    parser_->header_limit(64 * 1024);
    Lowest().expires_after(std::chrono::minutes(5));  // idle keep-alive connections
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
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
    Lowest().expires_never();
    http::request<http::string_body> req = parser_->release();
    keep_alive_ = req.keep_alive();
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    if (path == "/metrics") {
      // The process's Prometheus metrics, on this port's TLS when it has it.
      if (req.method() != http::verb::get) return SendError(MethodNotAllowed());
      const std::string text = Metrics::Get().Text();
      Write(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         "Content-Length: ", text.size(), "\r\n",
                         keep_alive_ ? "" : "Connection: close\r\n", "\r\n", text));
      return AfterResponse();
    }
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
    auto ep = Lowest().socket().remote_endpoint(ec);
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
    std::weak_ptr<Session> weak = this->shared_from_this();
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
    stream_.async_read_some(
        buffer_.prepare(4096), [self = this->shared_from_this()](beast::error_code ec, size_t n) {
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
      Lowest().socket().cancel(ec);
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
    net::async_write(stream_, net::buffer(out_.front()),
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
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
    if constexpr (kTls) {
      // close_notify first (a TLS client tells a clean end from a cut one), briefly.
      if (!closing_ && Lowest().socket().is_open()) {
        closing_ = true;
        Lowest().expires_after(std::chrono::seconds(2));
        return stream_.async_shutdown(
            [self = this->shared_from_this()](beast::error_code) { self->CloseSocket(); });
      }
    }
    CloseSocket();
  }
  void CloseSocket() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().socket().close(ec);
  }

  std::shared_ptr<net::ssl::context> tls_;  // kept for the connection's life
  Stream stream_;
  bool closing_ = false;
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
  if (options_.tls.enabled()) {
    auto copy = WatchTlsFiles(options_.tls.cert, options_.tls.key, options_.tls.client_ca);
    if (!copy.ok()) return absl::InvalidArgumentError(absl::StrCat("tls: ", copy.status().message()));
    tls_copy_ = *copy;
    auto ctx = TlsContext();
    if (!ctx.ok()) return ctx.status();
  }
  Accept();
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
  spdlog::info("http: OpenAI API on {}:{} ({})", host, port_,
               !options_.tls.enabled()          ? "plaintext"
               : options_.tls.client_ca.empty() ? "https"
                                                : "https, client certificates required");
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<net::ssl::context>> HttpServer::Impl::TlsContext() {
  const auto now = std::chrono::steady_clock::now();
  if (tls_ctx_ && now - tls_checked_ < std::chrono::seconds(1)) return tls_ctx_;
  tls_checked_ = now;
  std::string identity, ca;
  auto read = [](const std::string& path, std::string* out) {
    std::ifstream in(path, std::ios::binary);
    out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return static_cast<bool>(in) || in.eof();
  };
  if (!read(tls_copy_.identity, &identity) || (!tls_copy_.ca.empty() && !read(tls_copy_.ca, &ca))) {
    if (tls_ctx_) return tls_ctx_;
    return absl::UnavailableError("tls: cannot read the certificate copies");
  }
  if (tls_ctx_ && identity + ca == tls_seen_) return tls_ctx_;
  auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
  beast::error_code ec;
  ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                       net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                       net::ssl::context::no_tlsv1_1,
                   ec);
  // One PEM file holds the key and the chain (the PEM readers skip the other blocks).
  if (!ec) ctx->use_certificate_chain(net::buffer(identity), ec);
  if (!ec) ctx->use_private_key(net::buffer(identity), net::ssl::context::pem, ec);
  if (!ec && !ca.empty()) {
    ctx->add_certificate_authority(net::buffer(ca), ec);
    if (!ec) {
      ctx->set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert, ec);
    }
  }
  if (ec) {
    spdlog::warn("http: tls: the new certificates do not load ({}); keeping the previous ones",
                 ec.message());
    if (tls_ctx_) return tls_ctx_;
    return absl::InvalidArgumentError(absl::StrCat("tls: ", ec.message()));
  }
  if (tls_ctx_) spdlog::info("http: tls: certificates reloaded");
  tls_ctx_ = std::move(ctx);
  tls_seen_ = identity + ca;
  return tls_ctx_;
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
    if (ec == net::error::operation_aborted) return;
    if (!ec && !options_.tls.enabled()) {
      std::make_shared<Session<beast::tcp_stream>>(std::move(s), this)->Run();
    } else if (!ec) {
      auto ctx = TlsContext();
      if (ctx.ok()) std::make_shared<Session<TlsStream>>(std::move(s), this, *ctx)->Run();
    }
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
