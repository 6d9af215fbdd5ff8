// The testbed's emulated link (bench/relay.h) against a real TCP echo server on loopback:
// the round trip takes the configured RTT, a bulk transfer its bandwidth, jitter never
// reorders bytes, and a lost segment costs an RTO.
#include "bench/relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace pice::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Echoes every connection's bytes back until it closes.
class EchoServer {
 public:
  EchoServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[65536];
      for (ssize_t n; (n = ::recv(c, buf, sizeof buf, 0)) > 0;) {
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::send(c, buf + off, size_t(n - off), MSG_NOSIGNAL);
          if (w <= 0) break;
          off += w;
        }
      }
      ::close(c);
    });
  }
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1, port_ = 0;
  std::thread thread_;
};

int Connect(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(std::stoi(address.substr(address.rfind(':') + 1))));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

std::string ReadN(int fd, size_t n) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    const ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, size_t(r));
  }
  return out;
}

// An echo server behind a relay with `link`, and a client connected through it.
struct Relayed {
  Relayed(const LinkSpec& link, uint64_t seed) {
    auto r = LinkRelay::Start(echo.address(), link, seed);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return;
    relay = *std::move(r);
    fd = Connect(relay->address());
  }
  ~Relayed() {
    if (fd >= 0) ::close(fd);
  }
  EchoServer echo;
  std::unique_ptr<LinkRelay> relay;
  int fd = -1;
};

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

TEST(LinkRelayTest, ARoundTripTakesTheRtt) {
  LinkSpec l;
  l.rtt_ms = 40;  // 20 ms each way
  Relayed r(l, 1);
  ASSERT_NE(r.relay, nullptr);
  const int fd = r.fd;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    ASSERT_EQ(::send(fd, "ping", 4, 0), 4);
    EXPECT_EQ(ReadN(fd, 4), "ping");
    const double ms = MsSince(t0);
    EXPECT_GE(ms, 40.0 - 1) << "out and back: one round trip of the link";
    EXPECT_LT(ms, 40.0 + 40);
  }
}

TEST(LinkRelayTest, BandwidthPacesABulkTransferAndJitterNeverReorders) {
  LinkSpec l;
  l.mbit = 40;
  l.jitter_ms = 3;
  Relayed r(l, 2);
  ASSERT_NE(r.relay, nullptr);
  const int fd = r.fd;
  std::string data(1 << 20, '\0');  // 1 MiB: 0.21 s each way at 40 Mbit/s
  for (size_t i = 0; i < data.size(); ++i) data[i] = char(i * 131 % 251);
  const auto t0 = Clock::now();
  std::thread writer([&] {
    for (size_t off = 0; off < data.size();) {
      const ssize_t w = ::send(fd, data.data() + off, std::min<size_t>(4096, data.size() - off), 0);
      ASSERT_GT(w, 0);
      off += size_t(w);
    }
  });
  const std::string back = ReadN(fd, data.size());
  writer.join();
  const double ms = MsSince(t0);
  EXPECT_TRUE(back == data) << "bytes reordered or lost";
  EXPECT_GE(ms, 8.0 * data.size() / 40e6 * 1e3 * 0.95);
  EXPECT_EQ(r.relay->bytes(), 2 * data.size());
}

TEST(LinkRelayTest, ALostSegmentCostsAnRto) {
  LinkSpec l;
  l.loss = 0.5;
  l.rto_ms = 100;
  Relayed r(l, 3);
  ASSERT_NE(r.relay, nullptr);
  const int fd = r.fd;
  double slowest = 0;
  for (int i = 0; i < 8; ++i) {
    const auto t0 = Clock::now();
    ASSERT_EQ(::send(fd, "x", 1, 0), 1);
    EXPECT_EQ(ReadN(fd, 1), "x");
    slowest = std::max(slowest, MsSince(t0));
  }
  EXPECT_GT(r.relay->stalls(), 0u);
  EXPECT_GE(slowest, 100.0 - 1);
}

}  // namespace
}  // namespace pice::bench
