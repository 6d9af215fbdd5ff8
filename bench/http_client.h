// A minimal blocking HTTP/1.1 client for the benchmarks: one keep-alive connection,
// requests with a body, replies with Content-Length (what the scheduler's HTTP API sends
// for non-streamed answers). Not for hostile servers.
#ifndef PICE_BENCH_HTTP_CLIENT_H_
#define PICE_BENCH_HTTP_CLIENT_H_

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace pice::bench {

class HttpClient {
 public:
  HttpClient(std::string host, int port) : host_(std::move(host)), port_(port) {}
  ~HttpClient() { Close(); }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POSTs `body` to `path`; returns the status (0 when the connection failed) and fills
  // *reply with the body. Reconnects once when the kept connection was closed.
  int Post(const std::string& path, const std::string& body, std::string* reply) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0 && !Connect()) return 0;
      const std::string req = "POST " + path + " HTTP/1.1\r\nHost: " + host_ +
                              "\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
      if (SendAll(req)) {
        const int status = ReadReply(reply);
        if (status > 0) return status;
      }
      Close();
    }
    return 0;
  }

 private:
  bool Connect() {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res) != 0) return false;
    fd_ = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    const bool ok = fd_ >= 0 && connect(fd_, res->ai_addr, res->ai_addrlen) == 0;
    freeaddrinfo(res);
    if (!ok) Close();
    return ok;
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    pending_.clear();
  }
  bool SendAll(const std::string& s) {
    size_t sent = 0;
    while (sent < s.size()) {
      const ssize_t n = send(fd_, s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += size_t(n);
    }
    return true;
  }
  int ReadReply(std::string* body) {
    size_t need = std::string::npos, header_end = std::string::npos;
    char buf[8192];
    while (need == std::string::npos || pending_.size() < need) {
      if (header_end == std::string::npos) {
        header_end = pending_.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          const size_t cl = pending_.find("Content-Length: ");
          if (cl == std::string::npos || cl > header_end) return 0;
          need = header_end + 4 + std::stoul(pending_.substr(cl + 16));
          continue;
        }
      }
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return 0;
      pending_.append(buf, size_t(n));
    }
    const int status = std::stoi(pending_.substr(9, 3));
    *body = pending_.substr(header_end + 4, need - header_end - 4);
    pending_.erase(0, need);
    return status;
  }

  std::string host_;
  int port_;
  int fd_ = -1;
  std::string pending_;
};

}  // namespace pice::bench

#endif  // PICE_BENCH_HTTP_CLIENT_H_
